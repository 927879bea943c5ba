"""WebhookReceiver: collects what notifiers POST (Apprise json:// and jsons://) on 127.0.0.1.

    with WebhookReceiver() as hook:
        apprise_url = hook.apprise_url("/alerts")      # json://127.0.0.1:PORT/alerts
        hook.fail_next(2, status=500)                  # two failures, then success
        hook.fail_next(1, status=429, retry_after="120")  # rate limited, with Retry-After
        ...
        [delivered] = hook.wait_for(1)
        assert delivered.json["title"] == "..."

``WebhookReceiver(tls=True)`` serves HTTPS with a throw-away self-signed certificate
(made with the openssl command) for ``jsons://...?verify=no``. ``set_down(True)`` keeps
the port open and answers 503, like a receiver behind a proxy whose backend is down;
``stop()`` refuses connections instead, like a receiver that is not running.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from requests.structures import CaseInsensitiveDict

from .hostile import tls_files
from .httpbase import LocalHTTPServer, QuietHandler
from .net import wait_until


@dataclass(frozen=True)
class WebhookRequest:
    """One request the receiver answered, failed ones included."""

    time: float  # time.time() when the request was answered
    method: str
    path: str
    status: int  # what the receiver answered
    headers: CaseInsensitiveDict[str]
    body: bytes

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@cache
def self_signed_context() -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1, from the certificate ``tls_files`` makes once
    per process with the openssl CLI (callers skip where ``shutil.which("openssl")`` is
    None)."""
    cert, key = tls_files()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class WebhookReceiver(LocalHTTPServer):
    """Records every request; answers 200 unless told to fail (see the module docstring)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, tls: bool = False) -> None:
        super().__init__(port=port, host=host, tls=self_signed_context() if tls else None)
        self._lock = threading.Lock()
        self._log: list[WebhookRequest] = []
        self._fail_queue: list[tuple[int, int, str | None]] = []  # (left, status, R-A)
        self._down_status: int | None = None
        self._down_retry_after: str | None = None
        self._delay = 0.0
        self._in_flight = 0
        self.max_in_flight = 0  # most requests being answered at one moment

    # addresses -----------------------------------------------------------------------

    def apprise_url(self, path: str = "/hook", **params: str) -> str:
        """The Apprise URL posting JSON here: json://, or jsons://...?verify=no with TLS."""
        if not path.startswith("/"):
            path = "/" + path
        query = dict(params)
        if self._tls is not None:
            query.setdefault("verify", "no")
        scheme = "jsons" if self._tls is not None else "json"
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{scheme}://{self.host}:{self.port}{path}" + (f"?{qs}" if qs else "")

    # programmed failures -------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, retry_after: str | None = None) -> None:
        """The next ``n`` requests get ``status`` (with a ``Retry-After: retry_after``
        header if given); queued after earlier fail_next calls."""
        with self._lock:
            self._fail_queue.append((n, status, retry_after))

    def set_down(
        self, down: bool = True, status: int = 503, retry_after: str | None = None
    ) -> None:
        """While down, every request gets ``status`` (and ``Retry-After: retry_after``);
        fail_next still counts first."""
        with self._lock:
            self._down_status = status if down else None
            self._down_retry_after = retry_after

    def set_delay(self, seconds: float) -> None:
        """Wait before answering each request, for notifier timeout tests."""
        with self._lock:
            self._delay = seconds

    # what arrived --------------------------------------------------------------------

    @property
    def requests(self) -> list[WebhookRequest]:
        """Every request, failed ones included, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def received(self) -> list[WebhookRequest]:
        """The requests answered with 2xx, i.e. the notifications actually delivered."""
        return [r for r in self.requests if r.accepted]

    @property
    def bodies(self) -> list[Any]:
        """Parsed JSON bodies of the delivered notifications."""
        return [r.json for r in self.received]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    def wait_for(
        self, count: int, timeout: float = 5.0, *, include_failed: bool = False
    ) -> list[WebhookRequest]:
        """Wait until ``count`` notifications were delivered (or requested at all, with
        ``include_failed``) and return them; TimeoutError says what did arrive."""

        def seen() -> list[WebhookRequest]:
            return self.requests if include_failed else self.received

        wait_until(
            lambda: len(seen()) >= count,
            timeout=timeout,
            message=lambda: (
                f"expected {count} webhook request(s) within {timeout}s, got "
                f"{[(r.status, r.path, r.text[:80]) for r in self.requests]}"
            ),
        )
        return seen()

    # serving -------------------------------------------------------------------------

    def _decide(self) -> tuple[int, str | None, float]:
        with self._lock:
            if self._fail_queue:
                remaining, status, retry_after = self._fail_queue[0]
                if remaining <= 1:
                    self._fail_queue.pop(0)
                else:
                    self._fail_queue[0] = (remaining - 1, status, retry_after)
                return status, retry_after, self._delay
            if self._down_status is not None:
                return self._down_status, self._down_retry_after, self._delay
            return 200, None, self._delay

    def handle(self, handler: QuietHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        if len(body) < length:
            # The sender hung up inside its body (a process killed mid-send): a real
            # service answers nothing and delivers nothing either.
            return
        status, retry_after, delay = self._decide()
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if delay > 0:
                time.sleep(delay)
        finally:
            with self._lock:
                self._in_flight -= 1
        record = WebhookRequest(
            time=time.time(),
            method=handler.command,
            path=handler.path,
            status=status,
            headers=CaseInsensitiveDict(handler.headers.items()),
            body=body,
        )
        with self._lock:
            self._log.append(record)
        reply = b'{"ok": true}' if record.accepted else b'{"ok": false}'
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        handler.send_body(status, headers, reply, head=False)


class _WebhookHandler(QuietHandler):
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self.owner.handle(self)

    do_PUT = do_POST
    do_PATCH = do_POST
    do_DELETE = do_POST
    do_GET = do_POST


WebhookReceiver.handler_class = _WebhookHandler
