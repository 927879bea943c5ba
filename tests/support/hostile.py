"""Hostile HTTP endpoints on 127.0.0.1: what the real web does to a feed poller.

    with HostileServer() as server:
        server.drip("/drip", b"<rss>...", every=1.0)       # body one byte a second
        server.drip_headers("/slow-headers", every=1.0)   # status line and headers, ditto
        server.endless("/endless")                        # a body that never ends
        server.static("/bomb", gzip_bomb(), {"Content-Encoding": "gzip"})
        server.slow("/slow", rss, delay=0.3)              # answers late; see max_in_flight
        server.hang("/hang", released)                    # no answer until the Event is set
        server.visits("/drip")                            # who came, how long they stayed

``HostileServer(tls=True)`` serves HTTPS with a self-signed certificate for 127.0.0.1 and
localhost; ``tls_files()[0]`` is the CA a client must trust.

FeedServer covers the well-behaved cases and status codes; these endpoints stream,
stall or never finish, so they need their own handler. Every handler ends when the
client hangs up (its next write fails) or the server stops.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .httpbase import LocalHTTPServer, QuietHandler

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
BOMB_CACHE = Path(tempfile.gettempdir()) / "feed-monitor-tests"


def gzip_bomb(inflated: int = 1100 * 2**20) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (default 1100 MiB, past 1 GB), about
    1 MB compressed. Built by compressing zeros a chunk at a time (never the whole
    gigabyte in memory) and cached in the temporary directory: it takes seconds."""
    path = BOMB_CACHE / f"gzip-bomb-{inflated}.gz"
    if path.is_file():
        return path.read_bytes()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(2**20)
    parts = []
    left = inflated
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(compressor.flush())
    data = b"".join(parts)
    BOMB_CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a parallel run never reads half a file
    return data


@functools.cache
def tls_files() -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, self-signed with the openssl CLI
    (callers skip where it is missing); the certificate doubles as the client's CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed for a TLS test server")
    folder = Path(tempfile.mkdtemp(prefix="feed-monitor-hostile-tls-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def fixture(name: str) -> bytes:
    """A file of tests/fixtures/feeds (the parser's hostile and encoding fixtures)."""
    return (FIXTURES / name).read_bytes()


@dataclass
class Visit:
    """One request as a hostile endpoint served it."""

    path: str
    start: float  # time.monotonic()
    end: float | None = None  # None while still being served
    sent: int = 0  # body bytes written
    ended: str = ""  # "complete", "client gone", "server stopped"

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


class _Gone(Exception):
    """The client hung up or the server is stopping."""


Behaviour = Callable[["_HostileHandler", Visit], None]


class HostileServer(LocalHTTPServer):
    """Endpoints that stream slowly, forever or enormously; see the module docstring."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, tls: bool = False) -> None:
        context = None
        if tls:  # HTTPS with tls_files(): clients verify against that certificate
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls_files())
        super().__init__(port=port, host=host, tls=context)
        self._lock = threading.Lock()
        self._routes: dict[str, Behaviour] = {}
        self._visits: list[Visit] = []
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._connections = 0  # requests being served now, every path (HTTP/1.0: one each)
        self.max_connections = 0
        self.stopping = threading.Event()

    def start(self) -> HostileServer:
        self.stopping.clear()
        return super().start()

    def stop(self) -> None:
        self.stopping.set()
        super().stop()

    # endpoints -----------------------------------------------------------------------

    def static(
        self, path: str, body: bytes, headers: dict[str, str] | None = None, status: int = 200
    ) -> None:
        """A complete response with Content-Length."""

        def serve(h: _HostileHandler, visit: Visit) -> None:
            h.head(
                status,
                {
                    "Content-Type": "application/rss+xml",
                    **(headers or {}),
                    "Content-Length": str(len(body)),
                },
            )
            h.write(visit, body)

        self._route(path, serve)

    def drip(
        self,
        path: str,
        body: bytes,
        every: float = 1.0,
        content_type: str = "application/rss+xml; charset=utf-8",
    ) -> None:
        """Headers at once (with the full Content-Length), then the body one byte every
        ``every`` seconds: a client without a total deadline stays len(body) seconds."""

        def serve(h: _HostileHandler, visit: Visit) -> None:
            h.head(200, {"Content-Type": content_type, "Content-Length": str(len(body))})
            for i in range(len(body)):
                h.write(visit, body[i : i + 1])
                h.pause(every)

        self._route(path, serve)

    def drip_headers(self, path: str, every: float = 1.0, length: int = 600) -> None:
        """The status line and then headers, one byte every ``every`` seconds, never
        reaching the body: each single read succeeds, so only a deadline ends it."""

        def serve(h: _HostileHandler, visit: Visit) -> None:
            head = b"HTTP/1.0 200 OK\r\n" + b"".join(
                b"X-Padding-%d: %s\r\n" % (i, b"x" * 40) for i in range(length // 50)
            )
            for i in range(len(head)):
                h.raw(visit, head[i : i + 1])
                h.pause(every)

        self._route(path, serve)

    def endless(self, path: str, chunk: bytes | None = None) -> None:
        """A 200 whose body never ends (no Content-Length), written as fast as the client
        reads: an open RSS channel followed by items forever."""
        item = chunk or (
            b"<item><title>\xe4\xb8\xad\xe4\xbf\x84</title>"
            b"<link>https://example.com/x</link></item>\n" * 512
        )

        def serve(h: _HostileHandler, visit: Visit) -> None:
            h.head(200, {"Content-Type": "application/rss+xml; charset=utf-8"})
            h.write(visit, b'<?xml version="1.0"?><rss version="2.0"><channel>')
            while True:
                h.write(visit, item)

        self._route(path, serve)

    def slow(
        self,
        path: str,
        body: bytes,
        delay: float,
        content_type: str = "application/rss+xml; charset=utf-8",
    ) -> None:
        """Answers after ``delay`` seconds; max_in_flight(path) tells how many requests
        were inside at once."""

        def serve(h: _HostileHandler, visit: Visit) -> None:
            h.pause(delay)
            h.head(200, {"Content-Type": content_type, "Content-Length": str(len(body))})
            h.write(visit, body)

        self._route(path, serve)

    def hang(self, path: str, released: threading.Event) -> None:
        """Reads the request and answers nothing until ``released`` is set (or the server
        stops), then closes: a route of a server that hangs."""

        def serve(h: _HostileHandler, visit: Visit) -> None:
            while not released.wait(0.05):
                if self.stopping.is_set():
                    raise _Gone("server stopped")

        self._route(path, serve)

    def _route(self, path: str, behaviour: Behaviour) -> None:
        with self._lock:
            self._routes[path] = behaviour

    # records -------------------------------------------------------------------------

    def visits(self, path: str | None = None) -> list[Visit]:
        with self._lock:
            return [v for v in self._visits if path is None or v.path == path]

    def max_in_flight(self, path: str) -> int:
        with self._lock:
            return self._max_in_flight.get(path, 0)

    # serving -------------------------------------------------------------------------

    def handle(self, handler: _HostileHandler) -> None:
        path = handler.path.split("?", 1)[0]
        visit = Visit(path, time.monotonic())
        with self._lock:
            behaviour = self._routes.get(path)
            self._visits.append(visit)
            n = self._in_flight[path] = self._in_flight.get(path, 0) + 1
            self._max_in_flight[path] = max(self._max_in_flight.get(path, 0), n)
            self._connections += 1
            self.max_connections = max(self.max_connections, self._connections)
        try:
            if behaviour is None:
                handler.head(404, {"Content-Length": "0"})
            else:
                behaviour(handler, visit)
            visit.ended = "complete"
        except _Gone as e:
            visit.ended = str(e)
        finally:
            with self._lock:
                self._in_flight[path] -= 1
                self._connections -= 1
                visit.end = time.monotonic()


class _HostileHandler(QuietHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.owner.handle(self)

    def head(self, status: int, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
        except OSError:
            raise _Gone("client gone") from None

    def raw(self, visit: Visit, data: bytes) -> None:
        if self.owner.stopping.is_set():
            raise _Gone("server stopped")
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            raise _Gone("client gone") from None

    def write(self, visit: Visit, data: bytes) -> None:
        self.raw(visit, data)
        visit.sent += len(data)

    def pause(self, seconds: float) -> None:
        if self.owner.stopping.wait(seconds):
            raise _Gone("server stopped")


HostileServer.handler_class = _HostileHandler
