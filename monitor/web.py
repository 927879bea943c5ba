"""HTTP endpoint: /healthz and /metrics, bound to 127.0.0.1 by default."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.metrics import Metrics

log = logging.getLogger("monitor.web")


class WebServer:
    """Serves health and metrics in a background thread."""

    def __init__(self, host: str, port: int, metrics: Metrics,
                 health: Callable[[], list[str]]) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    try:
                        problems = health()
                    except Exception as e:  # a check that broke is a reason too
                        log.exception("health check failed")
                        problems = [f"health check failed: {e.__class__.__name__}"]
                    body = json.dumps({"status": "fail" if problems else "ok",
                                       "problems": problems}, ensure_ascii=False).encode()
                    self._send(503 if problems else 200, "application/json", body)
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("http: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="web",
                                       daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()
        log.info("health and metrics on http://%s:%d/ (/healthz, /metrics)", *self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
