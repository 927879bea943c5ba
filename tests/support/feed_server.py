"""FeedServer: serves feeds on 127.0.0.1 with conditional GET and programmable misbehaviour.

    with FeedServer() as server:
        server.set_feed("/cn/rss", rss_feed(rfi_like_items(5, start_ms)))
        fetch(server.url("/cn/rss"))
        server.set_status("/cn/rss", 429, headers={"Retry-After": "120"}, times=1)
        assert server.count("/cn/rss") == 1

Everything a test can set (feeds, overrides, delays) may change while a daemon polls;
all state sits behind one lock, and each request reads a consistent snapshot of it.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Literal

from requests.structures import CaseInsensitiveDict

from .httpbase import LocalHTTPServer, QuietHandler

RSS_CONTENT_TYPE = "application/rss+xml; charset=utf-8"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it: for asserting on polls, validators, User-Agent."""

    time: float  # time.time() when the response was sent
    method: str
    path: str  # the request target as sent, query string included
    status: int
    headers: CaseInsensitiveDict[str]  # request headers; lookups ignore case

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class _Feed:
    body: bytes
    content_type: str
    headers: dict[str, str]
    etag: str | None
    last_modified: float | None  # epoch seconds


@dataclass
class _Override:
    status: int
    headers: dict[str, str]
    body: bytes
    remaining: int | None  # None: until reset()


@dataclass
class _PathBehaviour:
    overrides: deque[_Override] = field(default_factory=deque)
    delay: float = 0.0
    gzip: Literal["off", "negotiate", "always"] = "off"


def _etag_of(body: bytes) -> str:
    return '"' + hashlib.sha1(body).hexdigest()[:16] + '"'


def _opaque(tag: str) -> str:
    """The opaque part of an entity tag: If-None-Match uses weak comparison (RFC 9110)."""
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _to_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


class FeedServer(LocalHTTPServer):
    """HTTP server for feeds at paths set at runtime; see the module docstring."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(port=port, host=host)
        self._lock = threading.Lock()
        self._feeds: dict[str, _Feed] = {}
        self._behaviours: dict[str, _PathBehaviour] = {}
        self._log: list[RequestRecord] = []
        self._in_flight = 0

    # content -------------------------------------------------------------------------

    def set_feed(
        self,
        path: str,
        body: bytes | str,
        content_type: str = RSS_CONTENT_TYPE,
        headers: dict[str, str] | None = None,
        *,
        etag: bool | str = True,
        last_modified: bool | float = True,
    ) -> None:
        """Serve ``body`` at ``path`` from now on (replacing what was there).

        ``etag``: True computes it from the body, a string is sent as is, False sends
        none. ``last_modified``: True is now, a float is that epoch time, False sends
        none. Servers without validators are common, so tests can ask for them.
        ``headers`` are extra response headers (e.g. Cache-Control) sent on 200 and 304.
        """
        data = _to_bytes(body)
        feed = _Feed(
            body=data,
            content_type=content_type,
            headers=dict(headers or {}),
            etag=(_etag_of(data) if etag is True else etag or None),
            last_modified=(
                time.time()
                if last_modified is True
                else None
                if last_modified is False
                else float(last_modified)
            ),
        )
        with self._lock:
            self._feeds[path] = feed

    def remove_feed(self, path: str) -> None:
        """Stop serving ``path`` (it answers 404 afterwards)."""
        with self._lock:
            self._feeds.pop(path, None)

    def etag(self, path: str) -> str | None:
        with self._lock:
            return self._feeds[path].etag

    # behaviours ----------------------------------------------------------------------

    def _behaviour(self, path: str) -> _PathBehaviour:
        return self._behaviours.setdefault(path, _PathBehaviour())

    def set_status(
        self,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | str = b"",
        times: int | None = None,
    ) -> None:
        """Answer ``status`` (with ``headers``, ``body``) instead of the feed.

        Overrides queue per path: each one applies to the next ``times`` requests
        (None: until reset()), then the next queued override or the feed itself
        answers. So ``set_status(p, 503, times=2); set_status(p, 429, times=1)`` gives
        503, 503, 429, then the feed.
        """
        override = _Override(status, dict(headers or {}), _to_bytes(body), times)
        with self._lock:
            self._behaviour(path).overrides.append(override)

    def set_redirect(
        self, path: str, to: str, status: int = 301, *, times: int | None = None
    ) -> None:
        """Redirect ``path`` to ``to`` (a path on this server or an absolute URL)."""
        location = to if "://" in to else self.url(to)
        self.set_status(path, status, headers={"Location": location}, times=times)

    def set_delay(self, path: str, seconds: float) -> None:
        """Wait ``seconds`` before answering each request for ``path`` (timeout tests)."""
        with self._lock:
            self._behaviour(path).delay = seconds

    def set_gzip(self, path: str, enabled: bool = True, *, always: bool = False) -> None:
        """Send ``path`` gzip-encoded: when the client accepts gzip, or ``always``."""
        with self._lock:
            self._behaviour(path).gzip = (
                "off" if not enabled else "always" if always else ("negotiate")
            )

    def reset(self, path: str | None = None) -> None:
        """Drop overrides, delays and gzip of ``path`` (of every path if None)."""
        with self._lock:
            if path is None:
                self._behaviours.clear()
            else:
                self._behaviours.pop(path, None)

    # access log ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the access log, oldest first."""
        with self._lock:
            return list(self._log)

    def requests_for(self, path: str) -> list[RequestRecord]:
        """Requests whose path (query string ignored) is ``path``."""
        return [r for r in self.requests if r.path.split("?", 1)[0] == path or r.path == path]

    def count(self, path: str | None = None) -> int:
        """Number of requests for ``path``, or in all if None."""
        return len(self.requests if path is None else self.requests_for(path))

    @property
    def in_flight(self) -> int:
        """Requests received but not yet answered (e.g. held by a delay)."""
        with self._lock:
            return self._in_flight

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # serving -------------------------------------------------------------------------

    def _lookup(self, target: str) -> tuple[_Feed | None, _PathBehaviour, _Override | None]:
        """Resolve the request target and take this request's override under the lock."""
        with self._lock:
            bare = target.split("?", 1)[0]
            known = target in self._feeds or target in self._behaviours
            key = target if known else bare
            feed = self._feeds.get(key)
            behaviour = self._behaviours.get(key, _PathBehaviour())
            override = None
            if behaviour.overrides:
                override = behaviour.overrides[0]
                if override.remaining is not None:
                    override.remaining -= 1
                    if override.remaining <= 0:
                        behaviour.overrides.popleft()
            # Copy what the handler reads after releasing the lock.
            return feed, _PathBehaviour(delay=behaviour.delay, gzip=behaviour.gzip), override

    def _record(self, handler: QuietHandler, status: int) -> None:
        record = RequestRecord(
            time=time.time(),
            method=handler.command,
            path=handler.path,
            status=status,
            headers=CaseInsensitiveDict(handler.headers.items()),
        )
        with self._lock:
            self._log.append(record)

    def handle(self, handler: QuietHandler, head: bool) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            feed, behaviour, override = self._lookup(handler.path)
            if behaviour.delay > 0:
                time.sleep(behaviour.delay)
            status, headers, body = self._response(handler, feed, behaviour, override)
            # Logged before the write so a test that saw the response also sees the record.
            self._record(handler, status)
        finally:
            with self._lock:
                self._in_flight -= 1
        handler.send_body(status, headers, body, head)

    @staticmethod
    def _not_modified(handler: QuietHandler, feed: _Feed) -> bool:
        inm = handler.headers.get("If-None-Match")
        if inm is not None:
            # When If-None-Match is present, If-Modified-Since is ignored (RFC 9110 13.2.2).
            tags = [_opaque(t) for t in inm.split(",")]
            return feed.etag is not None and ("*" in tags or _opaque(feed.etag) in tags)
        ims = handler.headers.get("If-Modified-Since")
        if ims is None or feed.last_modified is None:
            return False
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        # HTTP dates have one-second resolution.
        return int(feed.last_modified) <= since

    def _response(
        self,
        handler: QuietHandler,
        feed: _Feed | None,
        behaviour: _PathBehaviour,
        override: _Override | None,
    ) -> tuple[int, dict[str, str], bytes]:
        if override is not None:
            return override.status, override.headers, override.body
        if feed is None:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"no feed at this path\n"
        headers = dict(feed.headers)
        if feed.etag is not None:
            headers["ETag"] = feed.etag
        if feed.last_modified is not None:
            headers["Last-Modified"] = formatdate(feed.last_modified, usegmt=True)
        if self._not_modified(handler, feed):
            return 304, headers, b""
        body = feed.body
        accepts = "gzip" in (handler.headers.get("Accept-Encoding") or "").lower()
        if behaviour.gzip == "always" or (behaviour.gzip == "negotiate" and accepts):
            # mtime=0 keeps the compressed bytes stable between polls.
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        headers["Content-Type"] = feed.content_type
        return 200, headers, body


class _FeedHandler(QuietHandler):
    # HTTP/1.0: one request per connection, so stop() leaves no kept-alive connection
    # behind that could still answer a client after the server is "down".
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.owner.handle(self, head=False)

    def do_HEAD(self) -> None:
        self.owner.handle(self, head=True)


FeedServer.handler_class = _FeedHandler
