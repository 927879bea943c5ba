"""HTTP fetching that survives the real web: bounded in time and size, polite, and
careful about where it connects.

One ``requests.Session`` per Fetcher, shared by the poll workers. Every fetch:

- is conditional (ETag / Last-Modified) and follows redirects itself, at most
  ``max_redirects`` hops, each hop checked again: only http and https, and every
  address the host name resolves to goes through the address policy;
- connects only to an address it has checked: the check runs inside the
  connection's own ``_new_conn``, on the very addresses the socket then connects
  to, so DNS cannot answer differently between the check and the connection;
- has connect and read timeouts and one total deadline. A watchdog shuts the
  fetch's sockets down when the deadline passes, so a server dripping its headers
  one byte a second cannot hold a worker either; the body loop reads with
  ``read1`` and checks the deadline between reads;
- decompresses the body itself (gzip, deflate) in bounded steps and stops at
  ``max_bytes`` of decompressed data, so a gzip bomb costs at most the cap;
- waits for one of ``per_host`` slots of its host name first (counted within the
  deadline), so many feeds on one server are not all fetched at once;
- gives its connection back to the pool (keep-alive) only when the response was read
  to its end (a 304, or a whole body); any other response's connection is closed.

Foreign errors (requests, urllib3, sockets, zlib) become FeedError here, with an
outcome that classifies them for logs and status: ``timeout``, ``http-error``,
``too-large``, ``connection-error``, ``refused``.

Limits: name resolution (``getaddrinfo``) cannot be interrupted, so a hanging DNS
server can exceed the deadline by the resolver's own timeout. Proxies from the
environment are not used (``trust_env`` is off): the address check must see the
address the socket really connects to (a CA bundle named by ``REQUESTS_CA_BUNDLE`` or
``CURL_CA_BUNDLE`` is still honoured).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_auth_from_url
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from monitor import __version__
from monitor.errors import FeedError
from monitor.schedule import politeness
from monitor.types import FetchResult

USER_AGENT = f"feed-monitor/{__version__} (+https://pypi.org/project/feed-monitor/)"
_CHUNK = 64 * 1024  # compressed bytes read per step
_INFLATE_STEP = 256 * 1024  # decompressed bytes produced per step
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 30.0  # whole fetch: waiting for a host slot, redirects, headers, body
    max_bytes: int = 15 * 2**20  # body after decompression
    max_redirects: int = 5
    per_host: int = 2  # requests to one host name at once, across all workers
    allow_private: bool = False  # private, loopback, link-local ... addresses allowed
    allowed_networks: tuple[str, ...] = ()  # CIDR ranges allowed even though not public


# --- the address policy -------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressPolicy:
    """Which addresses a feed may be fetched from: public ones, unless the config says more.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4, NAT64
    ``64:ff9b::/96``) are judged by the IPv4 address inside.
    """

    _NAT64 = ipaddress.ip_network("64:ff9b::/96")

    def __init__(self, allow_private: bool = False, allowed_networks: tuple[str, ...] = ()):
        self.allow_private = allow_private
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    @classmethod
    def unwrap(cls, ip: IPAddress) -> IPAddress:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return ip.ipv4_mapped
            if ip.sixtofour is not None:
                return ip.sixtofour
            if ip in cls._NAT64:
                return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        return ip

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` is refused ("loopback", "private", ...), or None when it is allowed."""
        inner = self.unwrap(ip)
        if any(inner.version == n.version and inner in n for n in self.networks) or any(
                ip.version == n.version and ip in n for n in self.networks):
            return None
        if inner.is_multicast:
            return "multicast"
        if inner.is_unspecified:
            return "unspecified"
        if self.allow_private:
            return None
        for kind in ("loopback", "link_local", "private", "reserved"):
            if getattr(inner, f"is_{kind}"):
                return kind.replace("_", "-")
        if not inner.is_global:
            return "non-public"
        return None


class AddressRefused(Exception):
    """Raised inside a connection attempt; deliberately not an OSError, so neither
    urllib3 nor requests retries or rewraps it."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if host.strip("[]") == address:  # an address literal in the URL
            super().__init__(f"{address} is a {reason} address")
        else:
            super().__init__(f"{host} resolves to {address}, a {reason} address")


# --- one fetch in progress: deadline, watchdog, sockets -------------------------------------


class _Attempt:
    """The state of one fetch that connections made on its thread report to."""

    def __init__(self, limits: FetchLimits, policy: AddressPolicy, deadline: float) -> None:
        self.limits = limits  # as they were when the fetch began
        self.policy = policy
        self.deadline = deadline  # time.monotonic()
        self.expired = False
        self.done = False  # the fetch has returned: the watchdog leaves it alone
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []  # duplicates we may shut down

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Remember a socket this fetch uses, so the watchdog can cut it."""
        if sock is None:
            return
        try:
            # A duplicate descriptor: shutdown() acts on the connection itself, so it
            # also reaches the TLS socket that wraps (and detaches) the original. Made
            # with os.dup: SSLSocket has no dup(), and the blocking mode, shared by both
            # descriptors, is left as it is.
            fd = sock.fileno()
            if fd < 0:
                return
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        with self._lock:
            self._socks.append(dup)
            expired = self.expired
        if expired:
            _cut(dup)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for s in socks:
            _cut(s)

    def close(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class _Watchdog:
    """One thread for every fetch's deadline: a heap of (deadline, attempt), not a timer
    thread per fetch. A finished fetch is only marked; its entry is dropped when due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: _Attempt) -> None:
        with self._cond:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0][2] is attempt:  # sooner than what the thread waits for
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        attempt = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            if not attempt.done:
                attempt.expire()


_watchdog = _Watchdog()


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_local = threading.local()
_STRICT = AddressPolicy()


def _current() -> _Attempt | None:
    return getattr(_local, "attempt", None)


def _connect(conn: HTTPConnection) -> socket.socket:
    """``_new_conn`` for our connections: resolve, check every address, connect to an
    allowed one. Errors are raised the way urllib3's own ``_new_conn`` raises them."""
    attempt = _current()
    policy = attempt.policy if attempt is not None else _STRICT
    host = conn._dns_host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameResolutionError(conn.host, conn, e) from e
    allowed = []
    refused: tuple[str, str] | None = None
    for info in infos:
        address = str(info[4][0])
        reason = policy.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason is None:
            allowed.append(info)
        elif refused is None:
            refused = (address, reason)
    if not allowed:
        assert refused is not None
        raise AddressRefused(conn.host, *refused)
    timeout = conn.timeout
    err: OSError | None = None
    for family, kind, proto, _, address in allowed:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if attempt is not None:
                attempt.watch(sock)
                left = max(attempt.left(), 0.01)
                timeout = left if timeout in (None, _DEFAULT_TIMEOUT) else min(timeout, left)
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            sock.connect(address)
        except OSError as e:
            err = e
            sock.close()
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(err, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})") from err
    raise NewConnectionError(conn, f"Failed to establish a new connection: {err}") from err


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempt = _current()
        if attempt is not None:  # a kept-alive connection: the watchdog must know it too
            attempt.watch(self.sock)
        return super().request(*args, **kwargs)


class _CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempt = _current()
        if attempt is not None:
            attempt.watch(self.sock)
        return super().request(*args, **kwargs)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool,
                                                   "https": _CheckedHTTPSPool}


# --- decompression --------------------------------------------------------------------------


class _Inflater:
    """gzip / deflate decoding in bounded steps (never more than one step of output at
    once, whatever the compression ratio)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._started = False
        self._done = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and not self._done:
            try:
                out = self._d.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                # "deflate" is often sent raw, without the zlib header (browsers accept
                # both); the header is in the first bytes, so this is the first call.
                self._started = True
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._started = True
            if out:
                yield out
            data = self._d.unconsumed_tail
            if self._d.eof:
                rest = self._d.unused_data.lstrip(b"\0")
                if self._gzip and rest:
                    # Another gzip member follows (concatenated gzip files are one stream).
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                else:
                    self._done = True  # trailing bytes after the stream are ignored


class _Body:
    """Decodes a Content-Encoding chain into a size-capped list of chunks."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        self.inflaters: list[_Inflater] = []
        for coding in reversed(codings):  # applied in order, so undone in reverse
            if coding == "identity":
                continue
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise ValueError(f"unsupported Content-Encoding {coding!r}")
            self.inflaters.append(_Inflater(coding))

    def decode(self, data: bytes) -> Iterator[bytes]:
        chunks: Iterator[bytes] = iter((data,))
        for inflater in self.inflaters:
            chunks = _chain(inflater, chunks)
        yield from chunks


def _chain(inflater: _Inflater, chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield from inflater.feed(chunk)


# --- the fetcher ----------------------------------------------------------------------------


class Fetcher:
    """Polls feed URLs; thread-safe (one Session shared by the poll workers)."""

    def __init__(self, limits: FetchLimits | None = None, user_agent: str | None = None,
                 pool_size: int = 16) -> None:
        self.limits = limits or FetchLimits()
        self.policy = AddressPolicy(self.limits.allow_private, self.limits.allowed_networks)
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._hosts_lock = threading.Lock()
        self._urls: dict[str, str] = {}
        self.session = requests.Session()
        # No proxies or .netrc from the environment: the address check must see the
        # address we connect to, and credentials must not leak into feed requests. A CA
        # bundle named there (a company's own CA) is still used, as requests would.
        self.session.trust_env = False
        self.session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                               or os.environ.get("CURL_CA_BUNDLE") or True)
        self.session.headers["User-Agent"] = user_agent or USER_AGENT
        self.session.headers["Accept"] = (
            "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
        # Only what _Body decodes in bounded steps.
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        adapter = _CheckedAdapter(pool_connections=pool_size, pool_maxsize=pool_size,
                                  max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def set_limits(self, limits: FetchLimits) -> None:
        """Apply changed limits (a config reload) to the fetches that start from now on."""
        if limits == self.limits:
            return
        with self._hosts_lock:
            if limits.per_host != self.limits.per_host:
                # Fetches in progress release the semaphores they took; new ones queue on
                # new semaphores of the new size.
                self._hosts = {}
            self.policy = AddressPolicy(limits.allow_private, limits.allowed_networks)
            self.limits = limits

    def close(self) -> None:
        self.session.close()

    def fetch(self, feed_id: str, url: str, etag: str | None = None,
              last_modified: str | None = None) -> FetchResult:
        """GET ``url`` conditionally; raise FeedError for anything but 200 or 304."""
        with self._hosts_lock:
            lim, policy = self.limits, self.policy
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        start = time.monotonic()
        attempt = _Attempt(lim, policy, start + lim.deadline)
        _watchdog.watch(attempt)
        _local.attempt = attempt
        try:
            return self._follow(feed_id, url, headers, attempt, start)
        finally:
            attempt.done = True
            _local.attempt = None
            attempt.close()

    def _follow(self, feed_id: str, url: str, headers: dict[str, str], attempt: _Attempt,
                start: float) -> FetchResult:
        lim = attempt.limits
        current = url
        origin = urlsplit(url)
        auth = get_auth_from_url(url)
        for hop in range(lim.max_redirects + 1):
            parts = self._checked(feed_id, url, current, hop)
            same_origin = (parts.hostname, parts.port) == (origin.hostname, origin.port)
            with self._host_slot(feed_id, url, parts.hostname or "", attempt):
                resp = self._get(feed_id, url, current, headers, attempt,
                                 auth if same_origin and any(auth) else None)
                done = False  # the response read to its end: its connection can be reused
                try:
                    if resp.status_code in _REDIRECTS:
                        target = self.session.get_redirect_target(resp)
                        if not target:
                            raise FeedError(feed_id, url, "http-error",
                                            f"HTTP {resp.status_code} without a Location",
                                            status=resp.status_code)
                        try:
                            current = urljoin(current, target)
                        except ValueError:
                            raise FeedError(feed_id, url, "http-error",
                                            f"invalid redirect Location {target[:200]!r}",
                                            status=resp.status_code) from None
                        continue
                    if resp.status_code == 304:  # never has a body
                        done = True
                        return FetchResult(304, None, dict(resp.headers), headers.get(
                            "If-None-Match"), headers.get("If-Modified-Since"), current,
                            time.monotonic() - start)
                    if resp.status_code != 200:
                        raise FeedError(
                            feed_id, url, "http-error",
                            f"HTTP {resp.status_code} {resp.reason or ''}".strip(),
                            retry_after=politeness.retry_after_s(
                                resp.status_code, resp.headers.get("Retry-After"), time.time()),
                            status=resp.status_code)
                    body = self._read_body(feed_id, url, resp, attempt)
                    done = True
                    return FetchResult(200, body, dict(resp.headers), resp.headers.get("ETag"),
                                       resp.headers.get("Last-Modified"), current,
                                       time.monotonic() - start)
                finally:
                    # A response read to its end gives its connection back to the pool
                    # (keep-alive: the next poll of this host skips the TCP and TLS
                    # handshakes); anything else closes it, unread bytes and all.
                    if done and not attempt.expired:
                        resp.raw.release_conn()
                    else:
                        resp.close()
        raise FeedError(feed_id, url, "http-error", f"too many redirects (more than "
                        f"{lim.max_redirects}), last to {_shown(current)}")

    def _checked(self, feed_id: str, url: str, current: str, hop: int) -> SplitResult:
        try:
            parts = urlsplit(current)
        except ValueError as e:
            raise FeedError(feed_id, url, "refused",
                            f"invalid URL {_shown(current)!r}: {e}") from None
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            what = "redirect to" if hop else "URL"
            raise FeedError(feed_id, url, "refused",
                            f"{what} {_shown(current)!r} refused: only http and https URLs")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as e:
            raise FeedError(feed_id, url, "refused",
                            f"invalid URL {_shown(current)!r}: {e}") from None
        return parts

    @contextmanager
    def _host_slot(self, feed_id: str, url: str, host: str,
                   attempt: _Attempt) -> Iterator[None]:
        with self._hosts_lock:
            slots = self._hosts.get(host.lower())
            if slots is None:
                slots = self._hosts[host.lower()] = threading.BoundedSemaphore(
                    attempt.limits.per_host)
        if not slots.acquire(timeout=max(attempt.left(), 0)):
            raise FeedError(feed_id, url, "timeout",
                            f"{attempt.limits.per_host} requests to {host} already running; "
                            f"none finished within {attempt.limits.deadline:g} s")
        try:
            yield
        finally:
            slots.release()

    def _get(self, feed_id: str, url: str, current: str, headers: dict[str, str],
             attempt: _Attempt, auth: tuple[str, str] | None) -> requests.Response:
        lim = attempt.limits
        left = attempt.left()
        if left <= 0:
            raise FeedError(feed_id, url, "timeout", f"no response within {lim.deadline:g} s")
        connect, read = min(lim.connect_timeout, left), min(lim.read_timeout, left)
        try:
            return self.session.send(
                self._prepare(current, headers, auth), stream=True, allow_redirects=False,
                timeout=(connect, read), verify=self.session.verify, cert=self.session.cert,
                proxies={})
        except ValueError as e:  # a URL that urllib3 or http.client cannot take apart
            raise FeedError(feed_id, url, "refused",
                            f"invalid URL {_shown(current)!r}: {e}") from None
        except AddressRefused as e:
            where = "" if current == url else f" (redirected to {_shown(current)})"
            raise FeedError(feed_id, url, "refused",
                            f"{e}{where}; not allowed by defaults.allowed_networks or "
                            "defaults.allow_private_addresses") from None
        except requests.RequestException as e:
            if attempt.expired or (isinstance(e, requests.Timeout) and attempt.left() <= 0.05):
                raise FeedError(feed_id, url, "timeout",
                                f"no complete response within {lim.deadline:g} s") from e
            if isinstance(e, requests.ConnectTimeout):
                raise FeedError(feed_id, url, "timeout",
                                f"cannot connect within {connect:g} s") from e
            if isinstance(e, requests.Timeout):
                raise FeedError(feed_id, url, "timeout", f"no answer within {read:g} s") from e
            if isinstance(e, requests.ConnectionError):
                raise FeedError(feed_id, url, "connection-error", _reason(e)) from e
            raise FeedError(feed_id, url, "http-error", _reason(e)) from e

    def _prepare(self, url: str, headers: dict[str, str],
                 auth: tuple[str, str] | None) -> requests.PreparedRequest:
        """The request ``session.get(url, headers=headers, auth=auth)`` would send.

        Built here rather than by the session: Session.request merges its settings anew
        on every call (copies of the cookie jar, header dicts), which cost more CPU than
        the rest of a 304 poll. Headers are still validated (an ETag comes from the
        server), cookies still come from the session's jar, which send() fills."""
        req = requests.PreparedRequest()
        req.method = "GET"
        req.url = self._url(url)
        merged = dict(self.session.headers)
        merged.update(headers)
        req.prepare_headers(merged)
        req.prepare_cookies(self.session.cookies)
        req.body = None
        req.prepare_auth(auth, "")
        req.hooks = {"response": []}
        return req

    def _url(self, url: str) -> str:
        """``url`` as requests prepares it (IDNA host, quoted path), cached: feeds are polled
        at the same few URLs over and over."""
        prepared = self._urls.get(url)
        if prepared is None:
            scratch = requests.PreparedRequest()
            scratch.prepare_url(url, None)
            prepared = scratch.url
            assert prepared is not None
            if len(self._urls) >= 16384:  # bounded: a config reload may change every URL
                self._urls.clear()
            self._urls[url] = prepared
        return prepared

    def _read_body(self, feed_id: str, url: str, resp: requests.Response,
                   attempt: _Attempt) -> bytes:
        lim = attempt.limits
        try:
            body = _Body(resp.headers.get("Content-Encoding", ""))
        except ValueError as e:
            raise FeedError(feed_id, url, "http-error", str(e), status=resp.status_code) \
                from None
        parts: list[bytes] = []
        size = 0
        raw = resp.raw
        read = lim.read_timeout
        try:
            while True:
                left = attempt.left()
                if left <= 0 or attempt.expired:
                    raise FeedError(feed_id, url, "timeout",
                                    f"body not complete within {lim.deadline:g} s")
                read = min(lim.read_timeout, left)
                _set_read_timeout(raw, read)
                # read1 returns what has arrived instead of waiting for a full chunk,
                # so a server dripping bytes cannot hold us past the deadline.
                chunk = raw.read1(_CHUNK, decode_content=False)
                if not chunk:
                    break
                for piece in body.decode(chunk):
                    size += len(piece)
                    if size > lim.max_bytes:
                        raise FeedError(feed_id, url, "too-large",
                                        f"body larger than {lim.max_bytes} bytes"
                                        + (" after decompression" if body.inflaters else ""))
                    parts.append(piece)
        except FeedError:
            raise
        except zlib.error as e:
            raise FeedError(feed_id, url, "http-error",
                            f"body is not valid {resp.headers.get('Content-Encoding')}: {e}",
                            status=resp.status_code) from None
        except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, OSError
            timed_out = "timed out" in str(e).lower()
            if attempt.expired or (timed_out and attempt.left() <= 0.05):
                raise FeedError(feed_id, url, "timeout",
                                f"body not complete within {lim.deadline:g} s") from e
            if timed_out:
                raise FeedError(feed_id, url, "timeout",
                                f"body stalled: no data for {read:g} s") from e
            raise FeedError(feed_id, url, "connection-error", _reason(e)) from e
        if attempt.expired:  # the watchdog's shutdown can look like a normal end of body
            raise FeedError(feed_id, url, "timeout",
                            f"body not complete within {lim.deadline:g} s")
        return b"".join(parts)


def _shown(url: str) -> str:
    """A URL for a message: without user:password, and not endless."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:200]
    if parts.username is not None or parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        url = parts._replace(netloc=host).geturl()
    return url[:200]


def _set_read_timeout(raw: object, seconds: float) -> None:
    fp = getattr(raw, "_fp", None)
    sock = getattr(getattr(fp, "fp", None), "raw", None)
    sock = getattr(sock, "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.01))
        except OSError:
            pass


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
