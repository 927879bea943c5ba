"""HTTP fetching: one Session, conditional GET, timeouts, a total deadline, a size cap.

Foreign errors (requests, urllib3, sockets) become FeedError here, with an
outcome that classifies them for logs and status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests
from requests.adapters import HTTPAdapter

from monitor import __version__
from monitor.errors import FeedError
from monitor.types import FetchResult

USER_AGENT = f"feed-monitor/{__version__} (+https://pypi.org/project/feed-monitor/)"
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 30.0  # whole request, headers and body
    max_bytes: int = 15 * 2**20  # body after decompression
    max_redirects: int = 5


class Fetcher:
    """Polls feed URLs; thread-safe (one Session shared by the poll workers)."""

    def __init__(self, limits: FetchLimits | None = None, user_agent: str | None = None,
                 pool_size: int = 16) -> None:
        self.limits = limits or FetchLimits()
        self.session = requests.Session()
        self.session.max_redirects = self.limits.max_redirects
        self.session.headers["User-Agent"] = user_agent or USER_AGENT
        self.session.headers["Accept"] = (
            "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def fetch(self, feed_id: str, url: str, etag: str | None = None,
              last_modified: str | None = None) -> FetchResult:
        """GET ``url`` conditionally; raise FeedError for anything but 200 or 304."""
        lim = self.limits
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        start = time.monotonic()
        deadline = start + lim.deadline
        try:
            resp = self.session.get(url, headers=headers, stream=True, allow_redirects=True,
                                    timeout=(lim.connect_timeout, lim.read_timeout))
        except requests.TooManyRedirects as e:
            raise FeedError(feed_id, url, "http-error", "too many redirects") from e
        except requests.Timeout as e:
            raise FeedError(feed_id, url, "timeout", f"no answer in time ({_reason(e)})") from e
        except requests.ConnectionError as e:
            raise FeedError(feed_id, url, "connection-error", _reason(e)) from e
        except requests.RequestException as e:
            raise FeedError(feed_id, url, "http-error", _reason(e)) from e
        with resp:
            if resp.status_code == 304:
                return FetchResult(304, None, dict(resp.headers), etag, last_modified,
                                   resp.url, time.monotonic() - start)
            if resp.status_code != 200:
                raise FeedError(feed_id, url, "http-error",
                                f"HTTP {resp.status_code} {resp.reason or ''}".strip(),
                                retry_after=_retry_after(resp.headers.get("Retry-After")),
                                status=resp.status_code)
            body = self._read_body(feed_id, url, resp, deadline)
            return FetchResult(200, body, dict(resp.headers), resp.headers.get("ETag"),
                               resp.headers.get("Last-Modified"), resp.url,
                               time.monotonic() - start)

    def _read_body(self, feed_id: str, url: str, resp: requests.Response,
                   deadline: float) -> bytes:
        lim = self.limits
        parts: list[bytes] = []
        size = 0
        raw = resp.raw
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FeedError(feed_id, url, "timeout",
                                    f"body not complete within {lim.deadline:g} s")
                _set_read_timeout(raw, min(lim.read_timeout, left))
                # read1 returns what has arrived instead of waiting for a full chunk,
                # so a server dripping bytes cannot hold us past the deadline.
                chunk = raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > lim.max_bytes:
                    raise FeedError(feed_id, url, "too-large",
                                    f"body larger than {lim.max_bytes} bytes")
                parts.append(chunk)
        except FeedError:
            raise
        except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, DecodeError, OSError
            outcome = "timeout" if "timed out" in str(e).lower() else "connection-error"
            raise FeedError(feed_id, url, outcome, _reason(e)) from e
        return b"".join(parts)


def _set_read_timeout(raw: object, seconds: float) -> None:
    fp = getattr(raw, "_fp", None)
    sock = getattr(getattr(fp, "fp", None), "raw", None)
    sock = getattr(sock, "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.01))
        except OSError:
            pass


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _reason(e: BaseException) -> str:
    """The innermost readable cause, without the noise of urllib3's wrappers."""
    inner: BaseException | None = e
    while inner is not None:
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
            continue
        if inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
            continue
        break
    text = str(inner or e)
    if "Failed to establish a new connection:" in text:
        text = text.split("Failed to establish a new connection:", 1)[1].strip()
        text = text.split("] ", 1)[-1] if text.startswith("[Errno") else text
    if "Failed to resolve" in text or "Name or service not known" in text \
            or "NameResolutionError" in text or "Temporary failure in name resolution" in text:
        return "cannot resolve host name"
    return text[:300]
