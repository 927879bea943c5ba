"""The HTTP server: a Flask application (the console, /healthz, /metrics) served by
waitress on its own threads, bound to 127.0.0.1 by default."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from waitress.server import create_server

from monitor.metrics import Metrics
from monitor.web.pages import ConsoleSource, console_app

log = logging.getLogger("monitor.web")


def make_app(
    metrics: Metrics, health: Callable[[], list[str]], console: ConsoleSource | None
) -> Flask:
    """/healthz and /metrics, and the console's pages when ``console`` is given."""
    app = console_app(console) if console is not None else Flask("monitor.web")
    registry = metrics.registry

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            problems = health()
        except Exception as e:  # a check that broke is a reason too, not a 500 page
            log.exception("health check failed")
            problems = [f"health check failed: {e.__class__.__name__}"]
        body = json.dumps(
            {"status": "fail" if problems else "ok", "problems": problems}, ensure_ascii=False
        )
        return Response(body, 503 if problems else 200, mimetype="application/json")

    @app.get("/metrics")
    def metrics_page() -> Response:
        return Response(generate_latest(registry), 200, content_type=CONTENT_TYPE_LATEST)

    return app


class WebServer:
    """Serves the application in a background thread until ``stop``."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        health: Callable[[], list[str]],
        console: ConsoleSource | None = None,
    ) -> None:
        self.app = make_app(metrics, health, console)
        self.console = console is not None
        # waitress: pure Python, no dependencies, a fixed pool of worker threads; it
        # binds here, so a taken port fails at once (OSError) as before.
        self.server = create_server(
            self.app,
            host=host,
            port=port,
            threads=4,
            ident="feed-monitor",
            clear_untrusted_proxy_headers=True,
        )
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return str(self.server.effective_host), int(self.server.effective_port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    def start(self) -> None:
        self.thread.start()
        log.info(
            "%shealth and metrics on %s (/healthz, /metrics)",
            "console, " if self.console else "",
            self.url,
        )

    def stop(self) -> None:
        server = self.server

        def close_all() -> None:  # runs in the server's own loop thread
            for channel in list(server._map.values()):
                channel.close()

        server.trigger.pull_trigger(close_all)
        self.thread.join(5.0)
        server.task_dispatcher.shutdown()
