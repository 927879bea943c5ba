"""monitor.fetch against real local servers: conditional GET, decompression, caps,
deadlines, redirects, address checks, per-host limits."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from monitor.errors import FeedError
from monitor.fetch import AddressPolicy, Fetcher, FetchLimits
from monitor.fetch.deadline import Attempt, Watchdog
from tests.support import FeedItem, FeedServer, rss_feed, wait_until
from tests.support.clock import FakeClock
from tests.support.hostile import HostileServer, gzip_bomb, tls_files

LOOPBACK = ("127.0.0.0/8", "::1/128")
FEED = rss_feed([FeedItem("中俄关系", "https://www.rfi.fr/cn/a", "<p>正文</p>", 1_700_000_000_000)])


def fetcher(**limits: object) -> Fetcher:
    return Fetcher(FetchLimits(**{"allowed_networks": LOOPBACK, **limits}))  # type: ignore[arg-type]


def failure(f: Fetcher, url: str) -> FeedError:
    with pytest.raises(FeedError) as info:
        f.fetch("f", url)
    assert info.value.feed == "f"
    return info.value


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


# --- conditional GET and headers ---------------------------------------------------------


def test_conditional_get_returns_304_without_body(feed_server: FeedServer) -> None:
    feed_server.set_feed("/cn", FEED)
    f = fetcher()
    first = f.fetch("cn", feed_server.url("/cn"))
    assert first.status == 200 and first.body == FEED.encode()
    assert first.etag == feed_server.etag("/cn") and first.last_modified
    second = f.fetch("cn", feed_server.url("/cn"), first.etag, first.last_modified)
    assert (second.status, second.body) == (304, None)
    assert second.etag == first.etag  # kept for the next poll
    req = feed_server.requests_for("/cn")[-1]
    assert req.header("If-None-Match") == first.etag
    assert req.header("If-Modified-Since") == first.last_modified
    assert req.header("User-Agent").startswith("feed-monitor/")
    assert req.header("Accept-Encoding") == "gzip, deflate"


def test_last_modified_alone_also_gives_304(feed_server: FeedServer) -> None:
    feed_server.set_feed("/cn", FEED, etag=False)
    f = fetcher()
    first = f.fetch("cn", feed_server.url("/cn"))
    assert first.etag is None
    assert f.fetch("cn", feed_server.url("/cn"), None, first.last_modified).status == 304


# --- decompression and the size cap ------------------------------------------------------


def test_gzip_body_is_decompressed(feed_server: FeedServer) -> None:
    feed_server.set_feed("/cn", FEED)
    feed_server.set_gzip("/cn")
    got = fetcher().fetch("cn", feed_server.url("/cn"))
    assert got.headers["Content-Encoding"] == "gzip" and got.body == FEED.encode()


@pytest.mark.parametrize(
    "encoding, compress",
    [
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
        ("gzip", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:])),  # two members
        ("x-gzip", gzip.compress),
        ("identity", lambda b: b),
    ],
)
def test_other_content_encodings(hostile: HostileServer, encoding: str, compress) -> None:  # type: ignore[no-untyped-def]
    hostile.static("/f", compress(FEED.encode()), {"Content-Encoding": encoding})
    assert fetcher().fetch("f", hostile.url("/f")).body == FEED.encode()


def test_unknown_or_corrupt_encoding_is_an_http_error(hostile: HostileServer) -> None:
    hostile.static("/br", b"\x1b\x00", {"Content-Encoding": "br"})
    hostile.static("/bad", b"\x1f\x8b\x08\x00garbage garbage", {"Content-Encoding": "gzip"})
    e = failure(fetcher(), hostile.url("/br"))
    assert (e.outcome, e.message) == ("http-error", "unsupported Content-Encoding 'br'")
    e = failure(fetcher(), hostile.url("/bad"))
    assert e.outcome == "http-error" and "not valid gzip" in e.message


def test_body_cap(feed_server: FeedServer) -> None:
    feed_server.set_feed("/big", b"<rss>" + b" " * 200_000 + b"</rss>")
    e = failure(fetcher(max_bytes=100_000), feed_server.url("/big"))
    assert (e.outcome, e.message) == ("too-large", "body larger than 100000 bytes")
    assert fetcher(max_bytes=300_000).fetch("f", feed_server.url("/big")).status == 200


def test_gzip_bomb_stops_at_the_cap_without_inflating_the_rest(hostile: HostileServer) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 2 * 2**20  # about a megabyte on the wire, 1100 MiB inflated
    hostile.static("/bomb", bomb, {"Content-Encoding": "gzip"})
    f = fetcher(max_bytes=2**20)
    tracemalloc.start()
    try:
        e = failure(f, hostile.url("/bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.outcome == "too-large" and "after decompression" in e.message
    # The cap plus one bounded inflate step (and the join), not what 64 KB of the bomb
    # inflates to at once (64 MB).
    assert peak < 8 * 2**20, peak
    [visit] = hostile.visits("/bomb")
    assert visit.sent <= len(bomb)


def test_endless_body_stops_at_the_cap(hostile: HostileServer) -> None:
    hostile.endless("/endless")
    e = failure(fetcher(max_bytes=2**20), hostile.url("/endless"))
    assert e.outcome == "too-large"


# --- time bounds ---------------------------------------------------------------------------


def test_dripping_body_is_cut_at_the_deadline(hostile: HostileServer) -> None:
    body = FEED.encode()
    hostile.drip("/drip", body, every=0.1)  # len(body)/10 seconds without a deadline
    e = failure(fetcher(deadline=1.0, read_timeout=5), hostile.url("/drip"))
    assert (e.outcome, e.message) == ("timeout", "body not complete within 1 s")
    [visit] = hostile.visits("/drip")
    assert 0 < visit.sent < len(body) / 2


def test_the_watchdog_cuts_the_sockets_of_a_fetch_past_its_deadline() -> None:
    clock = FakeClock()
    ours, peer = socket.socketpair()
    with ours, peer:
        late = Attempt(clock.monotonic() + 1, clock)
        late.watch(ours)
        clock.advance(2)  # the deadline is read on the clock the attempt was given
        Watchdog(clock).watch(late)
        wait_until(lambda: late.expired)
        peer.settimeout(5)
        assert peer.recv(1) == b""  # shut down: the peer sees the end of the stream
        late.close()


def test_dripping_headers_are_cut_at_the_deadline(hostile: HostileServer) -> None:
    # Every byte arrives well within the read timeout: only the total deadline (the
    # watchdog that shuts the socket) can end this.
    hostile.drip_headers("/slow-headers", every=0.1)
    e = failure(fetcher(deadline=1.0, read_timeout=5), hostile.url("/slow-headers"))
    assert (e.outcome, e.message) == ("timeout", "no complete response within 1 s")


def test_read_timeout(feed_server: FeedServer) -> None:
    feed_server.set_feed("/late", FEED)
    feed_server.set_delay("/late", 3)
    e = failure(fetcher(read_timeout=0.3, deadline=10), feed_server.url("/late"))
    assert (e.outcome, e.message) == ("timeout", "no answer within 0.3 s")


def test_stalled_body(hostile: HostileServer) -> None:
    hostile.drip("/stall", FEED.encode(), every=2.0)
    e = failure(fetcher(read_timeout=0.3, deadline=10), hostile.url("/stall"))
    assert (e.outcome, e.message) == ("timeout", "body stalled: no data for 0.3 s")


def test_connection_refused_and_unknown_host() -> None:
    f = fetcher()
    e = failure(f, "http://127.0.0.1:9/rss")
    assert e.outcome == "connection-error" and "refused" in e.message.lower()
    e = failure(f, "http://feeds.invalid/rss")
    assert (e.outcome, e.message) == ("connection-error", "cannot resolve host name")


# --- HTTP errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, retry_after, expected",
    [
        (429, "120", 120.0),
        (503, "30", 30.0),
        (500, "120", None),
        (404, None, None),
    ],
)
def test_error_status_carries_retry_after_for_429_and_503(
    feed_server: FeedServer, status: int, retry_after: str | None, expected: float | None
) -> None:
    feed_server.set_status(
        "/x", status, headers={"Retry-After": retry_after} if retry_after else {}
    )
    e = failure(fetcher(), feed_server.url("/x"))
    assert (e.outcome, e.status, e.retry_after) == ("http-error", status, expected)
    assert e.message.startswith(f"HTTP {status}")


def test_times_are_read_from_the_fetchers_clock(feed_server: FeedServer) -> None:
    clock = FakeClock()
    f = Fetcher(FetchLimits(allowed_networks=LOOPBACK), clock=clock)
    when = formatdate(clock.now_ms() / 1000 + 90, usegmt=True)
    feed_server.set_status("/x", 503, headers={"Retry-After": when})
    assert failure(f, feed_server.url("/x")).retry_after == 90.0  # an HTTP date, from now
    feed_server.set_feed("/feed", FEED)
    assert f.fetch("f", feed_server.url("/feed")).elapsed == 0.0  # the clock stood still


# --- redirects ---------------------------------------------------------------------------------


def test_redirects_are_followed_to_the_final_url(feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed", FEED)
    feed_server.set_redirect("/old", "/older", status=301)
    feed_server.set_status("/older", 307, headers={"Location": "feed"})  # relative
    got = fetcher().fetch("f", feed_server.url("/old"))
    assert got.status == 200 and got.url == feed_server.url("/feed")
    assert [r.path for r in feed_server.requests] == ["/old", "/older", "/feed"]


def test_redirect_limit_and_loop(feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed", FEED)
    for i in range(3):
        feed_server.set_redirect(f"/hop{i}", f"/hop{i + 1}" if i < 2 else "/feed")
    assert fetcher(max_redirects=3).fetch("f", feed_server.url("/hop0")).status == 200
    e = failure(fetcher(max_redirects=2), feed_server.url("/hop0"))
    assert e.outcome == "http-error" and e.message.startswith("too many redirects")
    feed_server.set_redirect("/loop", "/loop")
    feed_server.clear_requests()
    e = failure(fetcher(), feed_server.url("/loop"))
    assert e.outcome == "http-error" and e.message.startswith("too many redirects")
    assert feed_server.count("/loop") == 6  # the first request and 5 hops, no more


def test_redirect_without_location(feed_server: FeedServer) -> None:
    feed_server.set_status("/r", 302)
    e = failure(fetcher(), feed_server.url("/r"))
    assert (e.outcome, e.message) == ("http-error", "HTTP 302 without a Location")


@pytest.mark.parametrize(
    "target",
    [
        "ftp://example.com/feed",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
    ],
)
def test_only_http_and_https_even_after_a_redirect(feed_server: FeedServer, target: str) -> None:
    feed_server.set_status("/r", 302, headers={"Location": target})
    e = failure(fetcher(), feed_server.url("/r"))
    assert e.outcome == "refused" and "only http and https" in e.message
    e = failure(fetcher(), target)
    assert e.outcome == "refused"


def test_credentials_follow_same_host_redirects_only(feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed", FEED)
    feed_server.set_redirect("/same", "/feed")
    feed_server.set_redirect("/away", f"http://localhost:{feed_server.port}/feed")
    url = feed_server.url("/same").replace("http://", "http://reader:s3cret@")
    fetcher().fetch("f", url)
    assert [r.header("Authorization") is not None for r in feed_server.requests] == [True, True]
    feed_server.clear_requests()
    fetcher().fetch("f", url.replace("/same", "/away"))
    assert [r.header("Authorization") is not None for r in feed_server.requests] == [True, False]


def test_a_cookie_the_server_sets_goes_back_with_the_next_poll(feed_server: FeedServer) -> None:
    # Some hosts answer feeds only to clients that return the cookie they set.
    feed_server.set_feed("/feed", FEED, headers={"Set-Cookie": "visit=abc123; Path=/"})
    f = fetcher()
    f.fetch("f", feed_server.url("/feed"))
    f.fetch("f", feed_server.url("/feed"))
    assert [r.header("Cookie") for r in feed_server.requests] == [None, "visit=abc123"]


# --- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, refusal",
    [
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),  # reserved (Python counts it as private too)
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:93.184.215.14", None),
        ("2002:a01:203::1", "private"),  # 6to4 of 10.1.2.3
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ],
)
def test_address_policy(address: str, refusal: str | None) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) == refusal


def test_address_policy_allowances() -> None:
    ip = ipaddress.ip_address
    private = AddressPolicy(allow_private=True)
    assert private.refusal(ip("10.1.2.3")) is None and private.refusal(ip("127.0.0.1")) is None
    assert private.refusal(ip("224.0.0.1")) == "multicast"
    assert private.refusal(ip("0.0.0.0")) == "unspecified"
    narrow = AddressPolicy(allowed_networks=("10.1.2.0/24",))
    assert narrow.refusal(ip("10.1.2.3")) is None
    assert narrow.refusal(ip("::ffff:10.1.2.3")) is None
    assert narrow.refusal(ip("10.1.3.1")) == "private"


def test_loopback_is_refused_by_default_without_connecting(feed_server: FeedServer) -> None:
    feed_server.set_feed("/cn", FEED)
    e = failure(Fetcher(), feed_server.url("/cn"))
    assert e.outcome == "refused"
    assert e.message == (
        "127.0.0.1 is a loopback address; not allowed by "
        "defaults.allowed_networks or defaults.allow_private_addresses"
    )
    e = failure(Fetcher(), f"http://localhost:{feed_server.port}/cn")
    assert e.outcome == "refused" and e.message.startswith("localhost resolves to ")
    assert feed_server.count() == 0
    allowed = Fetcher(FetchLimits(allow_private=True))
    assert allowed.fetch("cn", feed_server.url("/cn")).status == 200


def test_redirect_hops_are_checked_again(feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed", FEED)
    feed_server.set_redirect("/metadata", "http://169.254.169.254/latest/meta-data/")
    feed_server.set_redirect("/other-loopback", f"http://127.0.0.2:{feed_server.port}/feed")
    feed_server.set_redirect("/ok", "/feed")
    f = Fetcher(FetchLimits(allowed_networks=("127.0.0.1/32",)))
    e = failure(f, feed_server.url("/metadata"))
    assert e.outcome == "refused"
    assert e.message.startswith(
        "169.254.169.254 is a link-local address (redirected to "
        "http://169.254.169.254/latest/meta-data/); not allowed"
    )
    e = failure(f, feed_server.url("/other-loopback"))
    assert e.outcome == "refused" and e.message.startswith("127.0.0.2 is a loopback address")
    assert f.fetch("f", feed_server.url("/ok")).status == 200


def test_a_name_with_refused_and_allowed_addresses_connects_to_an_allowed_one(
    feed_server: FeedServer,
) -> None:
    # localhost resolves to 127.0.0.1 and usually ::1; only the first is allowed here, and
    # the connection goes to it (the check runs on the addresses actually dialled).
    feed_server.set_feed("/cn", FEED)
    f = Fetcher(FetchLimits(allowed_networks=("127.0.0.0/8",)))
    assert f.fetch("cn", f"http://localhost:{feed_server.port}/cn").status == 200


# --- per-host concurrency ------------------------------------------------------------------


def _fetch_at_once(f: Fetcher, urls: list[str]) -> list[object]:
    results: list[object] = [None] * len(urls)
    start = threading.Barrier(len(urls))

    def go(i: int) -> None:
        start.wait()
        try:
            results[i] = f.fetch(f"f{i}", urls[i])
        except FeedError as e:
            results[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("per_host", [2, 6])
def test_requests_to_one_host_are_limited(hostile: HostileServer, per_host: int) -> None:
    hostile.slow("/slow", FEED.encode(), delay=0.5)
    # 127.0.0.1 is a loopback address the config allows: its limit is per_private_host.
    f = fetcher(per_private_host=per_host, per_host=1)
    results = _fetch_at_once(f, [hostile.url("/slow")] * 6)
    assert all(getattr(r, "status", None) == 200 for r in results), results
    if per_host == 2:
        assert hostile.max_in_flight("/slow") == 2
    else:  # the server does see concurrent requests when the limit allows them
        assert hostile.max_in_flight("/slow") > 2


def test_waiting_for_a_busy_host_counts_against_the_deadline(hostile: HostileServer) -> None:
    hostile.slow("/slow", FEED.encode(), delay=2)
    f = fetcher(per_private_host=1, deadline=10, read_timeout=5)
    first: list[object] = []
    holder = threading.Thread(target=lambda: first.append(f.fetch("a", hostile.url("/slow"))))
    holder.start()
    wait_until(lambda: hostile.visits("/slow"), timeout=5)  # it holds the one slot now
    # A reload shortens the deadline; the slot taken before stays taken.
    f.set_limits(FetchLimits(allowed_networks=LOOPBACK, per_private_host=1, deadline=0.5))
    e = failure(f, hostile.url("/slow"))
    assert (e.outcome, e.message) == (
        "timeout",
        "1 requests to 127.0.0.1 already running; none finished within 0.5 s",
    )
    holder.join(10)
    assert [getattr(r, "status", None) for r in first] == [200]
    assert len(hostile.visits("/slow")) == 1


def test_malformed_locations_and_urls_are_classified(feed_server: FeedServer) -> None:
    feed_server.set_status("/bad", 302, headers={"Location": "http://[::1/feed"})
    e = failure(fetcher(), feed_server.url("/bad"))
    assert e.outcome in ("refused", "http-error") and "invalid" in e.message
    e = failure(fetcher(), "http://127.0.0.1:99999/feed")
    assert e.outcome == "refused" and e.message.startswith("invalid URL")


def test_messages_never_show_credentials(feed_server: FeedServer) -> None:
    feed_server.set_redirect("/loop", "/loop")
    url = feed_server.url("/loop").replace("http://", "http://reader:s3cret@")
    e = failure(fetcher(), url)
    assert "too many redirects" in e.message and "s3cret" not in e.message


# --- HTTPS ---------------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command"
)


@pytest.fixture
def tls_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    # The client trusts the test CA the way an operator would configure a private one.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files()[0]))
    with HostileServer(tls=True) as server:
        yield server


@needs_openssl
def test_https_is_verified_against_the_host_name(tls_server: HostileServer) -> None:
    tls_server.static("/feed", FEED.encode())
    f = fetcher()
    assert f.fetch("f", tls_server.url("/feed")).body == FEED.encode()
    assert f.fetch("f", f"https://localhost:{tls_server.port}/feed").status == 200
    # The address the name resolves to is checked on TLS connections too.
    e = failure(Fetcher(), tls_server.url("/feed"))
    assert e.outcome == "refused"


@needs_openssl
def test_https_with_an_untrusted_certificate_is_a_connection_error(
    tls_server: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls_server.static("/feed", FEED.encode())
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    e = failure(fetcher(), tls_server.url("/feed"))
    assert e.outcome == "connection-error" and "certificate" in e.message.lower()


@needs_openssl
def test_https_drips_are_cut_at_the_deadline(tls_server: HostileServer) -> None:
    # The watchdog shuts the TCP connection under the TLS socket down.
    tls_server.drip_headers("/slow-headers", every=0.1)
    tls_server.drip("/drip", FEED.encode(), every=0.1)
    f = fetcher(deadline=1.0, read_timeout=5)
    e = failure(f, tls_server.url("/slow-headers"))
    assert (e.outcome, e.message) == ("timeout", "no complete response within 1 s")
    e = failure(f, tls_server.url("/drip"))
    assert (e.outcome, e.message) == ("timeout", "body not complete within 1 s")


# --- keep-alive ---------------------------------------------------------------------------


class _KeepAliveServer:
    """An HTTP/1.1 server that keeps connections open and counts them."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.connections: list[tuple[str, int]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner.connections.append(self.client_address)

            def do_GET(self) -> None:
                if self.path == "/error":
                    body = b"<html>server error</html>" * 100
                    self.send_response(500)
                elif self.headers.get("If-None-Match") == '"v1"':
                    self.send_response(304)
                    self.send_header("ETag", '"v1"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    body = FEED.encode()
                    self.send_response(200)
                    self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_response_read_to_its_end_leaves_its_connection_for_the_next_poll() -> None:
    server = _KeepAliveServer()
    try:
        f = fetcher()
        first = f.fetch("cn", server.url("/cn"))
        assert first.status == 200 and first.body == FEED.encode()
        assert f.fetch("cn", server.url("/cn"), first.etag).status == 304
        assert f.fetch("tw", server.url("/tw")).status == 200
        assert len(server.connections) == 1, "body and 304 read to the end: one connection"
        # An error's body is never read: that connection is closed, not reused.
        assert failure(f, server.url("/error")).outcome == "http-error"
        assert f.fetch("cn", server.url("/cn")).status == 200
        assert len(server.connections) == 2
        f.close()
    finally:
        server.close()
