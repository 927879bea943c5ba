"""A threaded HTTP server on 127.0.0.1 that starts in the background and stops cleanly.

The feed server and the webhook receiver build on it. What they share: an ephemeral
port kept across stop()/start() (so a test can take a server down and bring it back
where the daemon expects it), no per-request stderr logging, optional TLS, and a stop()
that also cuts connections still being served, the way a crashed server would.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self


class _Httpd(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and the connections it is serving."""

    daemon_threads = True
    # stop() must not wait for a handler that is sleeping through a programmed delay.
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        owner: LocalHTTPServer,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.owner = owner
        self.tls = tls
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            # The handshake runs on first read, in the handler's thread, so one slow or
            # broken client cannot block the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def cut_open_connections(self) -> None:
        with self.connections_lock:
            conns, self.open_connections = list(self.open_connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # Clients that time out or hang up mid-response are part of what these servers
        # are for (delays, stop() during a request); only real bugs deserve a traceback.
        # (ConnectionError, TimeoutError and ssl.SSLError are all OSErrors.)
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler base: no access log on stderr; servers keep their own records."""

    server: _Httpd
    server_version = "feed-monitor-test"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner

    def send_body(self, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        """Send a complete response with Content-Length (and no body for HEAD/1xx/204/304)."""
        self.send_response(status)
        sent = {k.lower() for k in headers}
        for name, value in headers.items():
            self.send_header(name, value)
        bodyless = head or status in (204, 304) or status < 200
        if "content-length" not in sent and status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not bodyless and body:
            self.wfile.write(body)


class LocalHTTPServer:
    """Base for the servers: context manager, start/stop/restart on one port, url()."""

    handler_class: ClassVar[type[QuietHandler]]

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self._port = port
        self._tls = tls
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen (on the port of the previous run, if any) and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} already running on port {self._port}")
        httpd = _Httpd((self.host, self._port), self.handler_class, self, self._tls)
        self._port = int(httpd.server_address[1])
        self._httpd = httpd
        # A short poll interval keeps stop() fast; the accept loop itself is event driven.
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut connections in progress; the port is kept for start()."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.cut_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError(f"{type(self).__name__} has no port before start()")
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """Absolute URL of ``path`` on this server (a leading slash is added if missing)."""
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = f"{self.host}:{self._port}" if self._port else self.host
        return f"<{type(self).__name__} {where} {state}>"
