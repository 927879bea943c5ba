"""The demo's two live feeds on 127.0.0.1: the shipped stories published over time (a
backlog at once, then one more every few seconds) as RSS at ``/cn/rss`` and ``/tw/rss``,
shaped like RFI's, with ETags so unchanged polls are answered 304."""

from __future__ import annotations

import hashlib
import html
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from monitor.archive.format import ArchiveEntry
from monitor.demo.articles import EDITIONS, Story
from monitor.types import Clock

log = logging.getLogger("monitor.demo")

FEED_TITLES = {"cn": "RFI 中文 (简体)", "tw": "RFI 中文 (繁體)"}


class Replay:
    """Which stories are out: ``start`` of them from the beginning, then one more every
    ``every`` seconds of ``clock.monotonic()``. ``on_publish(n)`` is told each new count.

    The count is worked out when a feed is read, so no timer runs; a reader sees every
    story that is due, however long it waited."""

    def __init__(
        self,
        stories: Sequence[Story],
        *,
        start: int,
        every: float,
        clock: Clock,
        on_publish: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.stories = tuple(stories)
        self.start = min(max(start, 0), len(self.stories))
        self.every = every
        self._clock = clock
        self._t0 = clock.monotonic()
        self._on_publish = on_publish
        self._lock = threading.Lock()
        self._told = self.start

    def published(self) -> int:
        """How many stories are out now (they come oldest first)."""
        steps = int((self._clock.monotonic() - self._t0) // self.every)
        n = min(self.start + max(steps, 0), len(self.stories))
        with self._lock:
            # Under the lock, so the counts are told once each and in order.
            for k in range(self._told + 1, n + 1):
                self._on_publish(k)
            self._told = max(self._told, n)
        return n

    def feed(self, edition: str, base_url: str) -> bytes:
        """The RSS document of ``edition`` as it stands now, newest first."""
        out = self.stories[: self.published()]
        return render_rss(edition, [s.edition(edition) for s in reversed(out)], base_url)


def render_rss(edition: str, entries: Sequence[ArchiveEntry], base_url: str) -> bytes:
    """An RSS 2.0 document like RFI's: title, link, guid, pubDate and the body as CDATA."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
        f"<title>{escape(FEED_TITLES[edition])}</title>",
        f"<link>{escape(base_url)}/{edition}/</link>",
        f"<description>{escape(FEED_TITLES[edition])}: feed-monitor demo replay</description>",
    ]
    for e in entries:
        pub = format_datetime(datetime.fromtimestamp(e.published_ms / 1000, UTC), usegmt=True)
        body = e.body.replace("]]>", "]]]]><![CDATA[>")
        parts.append(
            f"<item><title>{escape(html.unescape(e.title))}</title>"
            f'<link>{escape(e.url)}</link><guid isPermaLink="true">{escape(e.url)}</guid>'
            f"<pubDate>{pub}</pubDate><description><![CDATA[{body}]]></description></item>"
        )
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


class FeedServer:
    """Serves the replay's feeds on 127.0.0.1 from a thread of the demo's process."""

    def __init__(self, replay: Replay, host: str = "127.0.0.1", port: int = 0) -> None:
        self.replay = replay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                edition = self.path.split("?", 1)[0].removesuffix("/rss").strip("/")
                if edition not in EDITIONS:
                    self._send(404, {"Content-Type": "text/plain"}, b"not found\n")
                    return
                body = server.replay.feed(edition, server.base_url)
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self._send(304, {"ETag": etag}, b"")
                    return
                self._send(
                    200, {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": etag}, body
                )

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("demo feeds: " + format, *args)

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="demo-feeds", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{int(port)}"

    def url(self, edition: str) -> str:
        return f"{self.base_url}/{edition}/rss"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
