"""The Fetcher: conditional GET over one shared ``requests.Session``, redirects followed
and checked hop by hop, per-host slots (fetch/hosts.py), one total deadline; FeedError for
every failure."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from requests.utils import get_auth_from_url

from monitor import __version__
from monitor.clock import SYSTEM_CLOCK
from monitor.errors import FeedError
from monitor.fetch.addresses import AddressPolicy, AddressRefused, CheckedAdapter, this_thread
from monitor.fetch.body import ACCEPT_ENCODING, read_body
from monitor.fetch.deadline import Attempt, Watchdog
from monitor.fetch.describe import cause, shown_url
from monitor.fetch.hosts import ANSWERING_S, HostGate, Slot, literal_is_private
from monitor.schedule import politeness
from monitor.types import Clock, FetchResult, PollOutcome

USER_AGENT = f"feed-monitor/{__version__} (+https://pypi.org/project/feed-monitor/)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class FetchLimits:
    """What one fetch may cost and where it may connect; times in seconds."""

    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 30.0  # whole fetch: waiting for a host slot, redirects, headers, body
    max_bytes: int = 15 * 2**20  # body after decompression
    max_redirects: int = 5
    per_host: int = 2  # requests to one public host name at once, across all workers
    per_private_host: int = 16  # the same for a host on a non-public address we may reach
    hosts: tuple[tuple[str, int], ...] = ()  # (host name in lower case, limit): overrides
    stall: float = 2.0  # no response headers this long: the request gives its slot up
    allow_private: bool = False  # private, loopback, link-local ... addresses allowed
    allowed_networks: tuple[str, ...] = ()  # CIDR ranges allowed even though not public

    def host_limit(self, host: str, private: bool) -> int:
        """Requests to ``host`` at once: its own limit, else by the kind of address."""
        for name, limit in self.hosts:
            if name == host:
                return limit
        return self.per_private_host if private else self.per_host


class _Fetch(Attempt):
    """One fetch in progress, with the limits in force when it began."""

    def __init__(self, limits: FetchLimits, deadline: float, clock: Clock) -> None:
        super().__init__(deadline, clock)
        self.limits = limits


class Fetcher:
    """Polls feed URLs; thread-safe (one Session shared by the poll workers).

    ``clock`` gives the deadlines and elapsed times (``monotonic``) and the "now" that an
    HTTP-date Retry-After is counted from (``now_ms``).
    """

    def __init__(
        self,
        limits: FetchLimits | None = None,
        user_agent: str | None = None,
        pool_size: int = 16,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.limits = limits or FetchLimits()
        self.clock = clock
        self._watchdog = Watchdog(clock)
        self.policy = AddressPolicy(self.limits.allow_private, self.limits.allowed_networks)
        self._hosts: dict[str, HostGate] = {}
        self._private: set[str] = set()  # host names seen to resolve to non-public addresses
        self._stalled: set[str] = set()  # URLs whose last request got no answer in time
        self._hosts_lock = threading.Lock()
        self._urls: dict[str, str] = {}
        self.session = requests.Session()
        # No proxies or .netrc from the environment: the address check must see the
        # address we connect to, and credentials must not leak into feed requests. A CA
        # bundle named there (a company's own CA) is still used, as requests would.
        self.session.trust_env = False
        self.session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self.session.headers["User-Agent"] = user_agent or USER_AGENT
        self.session.headers["Accept"] = (
            "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
        )
        self.session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        # One connection pool per host (scheme, port), kept for up to 256 hosts, each
        # keeping up to ``pool_size`` idle connections for the next polls.
        adapter = CheckedAdapter(pool_connections=256, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def set_limits(self, limits: FetchLimits) -> None:
        """Apply changed limits (a config reload) to the fetches that start from now on."""
        if limits == self.limits:
            return
        with self._hosts_lock:
            old = self.limits
            if (limits.per_host, limits.per_private_host, limits.hosts) != (
                old.per_host,
                old.per_private_host,
                old.hosts,
            ):
                # Fetches in progress give back the slots they took to their old gates;
                # new ones queue at new gates of the new sizes.
                self._hosts = {}
            self.policy = AddressPolicy(limits.allow_private, limits.allowed_networks)
            self.limits = limits

    def close(self) -> None:
        self.session.close()

    def fetch(
        self, feed_id: str, url: str, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url`` conditionally; raise FeedError for anything but 200 or 304."""
        with self._hosts_lock:
            lim, policy = self.limits, self.policy
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        start = self.clock.monotonic()
        attempt = _Fetch(lim, start + lim.deadline, self.clock)
        self._watchdog.watch(attempt)
        this_thread.attempt, this_thread.policy = attempt, policy
        try:
            return self._follow(feed_id, url, headers, attempt, start)
        finally:
            attempt.done = True
            del this_thread.attempt, this_thread.policy  # back to the class defaults
            attempt.close()

    def _follow(
        self, feed_id: str, url: str, headers: dict[str, str], attempt: _Fetch, start: float
    ) -> FetchResult:
        lim = attempt.limits
        current = url
        origin = urlsplit(url)
        auth = get_auth_from_url(url)
        for hop in range(lim.max_redirects + 1):
            parts = self._checked(feed_id, url, current, hop)
            same_origin = (parts.hostname, parts.port) == (origin.hostname, origin.port)
            with self._host_slot(feed_id, url, current, parts.hostname or "", attempt) as slot:
                resp = self._get(
                    feed_id,
                    url,
                    current,
                    headers,
                    attempt,
                    auth if same_origin and any(auth) else None,
                )
                slot.answered()
                done = False  # the response read to its end: its connection can be reused
                try:
                    if resp.status_code in _REDIRECTS:
                        target = self.session.get_redirect_target(resp)
                        if not target:
                            raise FeedError(
                                feed_id,
                                url,
                                PollOutcome.HTTP_ERROR,
                                f"HTTP {resp.status_code} without a Location",
                                status=resp.status_code,
                            )
                        try:
                            current = urljoin(current, target)
                        except ValueError:
                            raise FeedError(
                                feed_id,
                                url,
                                PollOutcome.HTTP_ERROR,
                                f"invalid redirect Location {target[:200]!r}",
                                status=resp.status_code,
                            ) from None
                        continue
                    if resp.status_code == 304:  # never has a body
                        done = True
                        return FetchResult(
                            304,
                            None,
                            dict(resp.headers),
                            headers.get("If-None-Match"),
                            headers.get("If-Modified-Since"),
                            current,
                            self.clock.monotonic() - start,
                        )
                    if resp.status_code != 200:
                        raise FeedError(
                            feed_id,
                            url,
                            PollOutcome.HTTP_ERROR,
                            f"HTTP {resp.status_code} {resp.reason or ''}".strip(),
                            retry_after=politeness.retry_after_s(
                                resp.status_code,
                                resp.headers.get("Retry-After"),
                                self.clock.now_ms() / 1000,
                            ),
                            status=resp.status_code,
                        )
                    body = read_body(
                        feed_id, url, resp, attempt, lim.max_bytes, lim.read_timeout, lim.deadline
                    )
                    done = True
                    return FetchResult(
                        200,
                        body,
                        dict(resp.headers),
                        resp.headers.get("ETag"),
                        resp.headers.get("Last-Modified"),
                        current,
                        self.clock.monotonic() - start,
                    )
                finally:
                    # A response read to its end gives its connection back to the pool
                    # (keep-alive: the next poll of this host skips the TCP and TLS
                    # handshakes); anything else closes it, unread bytes and all.
                    if done and not attempt.expired:
                        resp.raw.release_conn()
                    else:
                        resp.close()
        raise FeedError(
            feed_id,
            url,
            PollOutcome.HTTP_ERROR,
            f"too many redirects (more than {lim.max_redirects}), last to {shown_url(current)}",
        )

    def _checked(self, feed_id: str, url: str, current: str, hop: int) -> SplitResult:
        try:
            parts = urlsplit(current)
        except ValueError as e:
            raise FeedError(
                feed_id, url, PollOutcome.REFUSED, f"invalid URL {shown_url(current)!r}: {e}"
            ) from None
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            what = "redirect to" if hop else "URL"
            raise FeedError(
                feed_id,
                url,
                PollOutcome.REFUSED,
                f"{what} {shown_url(current)!r} refused: only http and https URLs",
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as e:
            raise FeedError(
                feed_id, url, PollOutcome.REFUSED, f"invalid URL {shown_url(current)!r}: {e}"
            ) from None
        return parts

    @contextmanager
    def _host_slot(
        self, feed_id: str, url: str, current: str, host: str, attempt: _Fetch
    ) -> Iterator[Slot]:
        """One of ``host``'s slots for the request of ``current`` and its response, or a
        place aside when that URL stalled last time (see fetch/hosts.py)."""
        lim = attempt.limits
        name = host.lower()
        with self._hosts_lock:
            gate = self._hosts.get(name)
            if gate is None:
                private = literal_is_private(name)
                limit = lim.host_limit(name, bool(private) or name in self._private)
                gate = self._hosts[name] = HostGate(limit)
        # A URL that hung last time waits aside, while its host still answers others.
        suspect = current in self._stalled and gate.answering(self.clock.monotonic() - ANSWERING_S)
        if not gate.acquire(attempt.left(), aside=suspect):
            raise FeedError(
                feed_id,
                url,
                PollOutcome.TIMEOUT,
                f"{gate.limit} requests to {host} already running; "
                f"none finished within {lim.deadline:g} s",
            )
        slot = Slot(gate, lim.stall, self.clock, aside=suspect)
        attempt.private = False  # this hop's connection tells
        if not suspect:
            self._watchdog.watch(slot)
        try:
            yield slot
        finally:
            slot.release()
            self._remember_stall(current, slot.stalled())
            if attempt.private and name not in self._private:
                self._learn_private(name, gate, lim)

    def _remember_stall(self, current: str, stalled: bool) -> None:
        with self._hosts_lock:
            if not stalled:
                self._stalled.discard(current)
            elif len(self._stalled) < 16384:  # bounded, as the prepared URLs are
                self._stalled.add(current)

    def _learn_private(self, name: str, gate: HostGate, lim: FetchLimits) -> None:
        """``name`` resolved to a non-public address (one the config allows): its limit is
        that of private hosts from now on, unless the config names it."""
        with self._hosts_lock:
            self._private.add(name)
        gate.raise_limit(lim.host_limit(name, True))

    def _get(
        self,
        feed_id: str,
        url: str,
        current: str,
        headers: dict[str, str],
        attempt: _Fetch,
        auth: tuple[str, str] | None,
    ) -> requests.Response:
        lim = attempt.limits
        left = attempt.left()
        if left <= 0:
            raise FeedError(
                feed_id, url, PollOutcome.TIMEOUT, f"no response within {lim.deadline:g} s"
            )
        connect, read = min(lim.connect_timeout, left), min(lim.read_timeout, left)
        try:
            return self.session.send(
                self._prepare(current, headers, auth),
                stream=True,
                allow_redirects=False,
                timeout=(connect, read),
                verify=self.session.verify,
                cert=self.session.cert,
                proxies={},
            )
        except ValueError as e:  # a URL that urllib3 or http.client cannot take apart
            raise FeedError(
                feed_id, url, PollOutcome.REFUSED, f"invalid URL {shown_url(current)!r}: {e}"
            ) from None
        except AddressRefused as e:
            where = "" if current == url else f" (redirected to {shown_url(current)})"
            raise FeedError(
                feed_id,
                url,
                PollOutcome.REFUSED,
                f"{e}{where}; not allowed by defaults.allowed_networks or "
                "defaults.allow_private_addresses",
            ) from None
        except requests.RequestException as e:
            if attempt.expired or (isinstance(e, requests.Timeout) and attempt.left() <= 0.05):
                raise FeedError(
                    feed_id,
                    url,
                    PollOutcome.TIMEOUT,
                    f"no complete response within {lim.deadline:g} s",
                ) from e
            if isinstance(e, requests.ConnectTimeout):
                raise FeedError(
                    feed_id, url, PollOutcome.TIMEOUT, f"cannot connect within {connect:g} s"
                ) from e
            if isinstance(e, requests.Timeout):
                raise FeedError(
                    feed_id, url, PollOutcome.TIMEOUT, f"no answer within {read:g} s"
                ) from e
            if isinstance(e, requests.ConnectionError):
                raise FeedError(feed_id, url, PollOutcome.CONNECTION_ERROR, cause(e)) from e
            raise FeedError(feed_id, url, PollOutcome.HTTP_ERROR, cause(e)) from e

    def _prepare(
        self, url: str, headers: dict[str, str], auth: tuple[str, str] | None
    ) -> requests.PreparedRequest:
        """The request ``session.get(url, headers=headers, auth=auth)`` would send, built
        here rather than by the session (see docs/architecture.md, 'Prepared requests')."""
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
