"""Politeness per host without head-of-line blocking: slots held only while a request is
answered, hanging requests stepping aside, limits per host name (``hosts:``), and the
poll workers sized from the feeds' hosts (``scheduler.workers: auto``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.app import poll_workers
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.errors import ConfigError, FeedError
from monitor.fetch import Fetcher, FetchLimits
from monitor.fetch.hosts import HostGate, aside_cap
from monitor.types import FetchResult
from tests.daemon import write_config
from tests.support import FeedItem, rss_feed, wait_until
from tests.support.clock import FakeClock
from tests.support.hostile import HostileServer

LOOPBACK = ("127.0.0.0/8", "::1/128")
FEED = rss_feed([FeedItem("中俄关系", "https://www.rfi.fr/cn/a", "<p>正文</p>", 1_700_000_000_000)])


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def _in_thread(f: Fetcher, feed: str, url: str) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def go() -> None:
        try:
            out.append(f.fetch(feed, url))
        except FeedError as e:
            out.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


def _gate(f: Fetcher, host: str = "127.0.0.1") -> HostGate:
    return f._hosts[host]


# --- a hanging request and its host's other feeds --------------------------------------------


def test_a_hanging_feed_gives_its_hosts_slot_to_the_other_feeds(hostile: HostileServer) -> None:
    released = threading.Event()
    hostile.hang("/hang", released)
    hostile.static("/ok", FEED.encode())
    clock = FakeClock()
    # One slot for the host, and long timeouts: without stepping aside, /ok would wait
    # for /hang's timeouts (which never come while the test holds the clock).
    f = Fetcher(
        FetchLimits(
            allowed_networks=LOOPBACK,
            per_private_host=1,
            stall=5,
            deadline=600,
            read_timeout=300,
        ),
        clock=clock,
    )
    try:
        assert f.fetch("ok", hostile.url("/ok")).status == 200  # the host answers
        hanging, hung = _in_thread(f, "hang", hostile.url("/hang"))
        wait_until(lambda: hostile.visits("/hang"))
        waiting, got = _in_thread(f, "ok", hostile.url("/ok"))
        time.sleep(0.3)  # time for /ok to queue at the host's one slot
        assert len(hostile.visits("/ok")) == 1 and not got  # the slot is still /hang's
        clock.advance(5)  # /hang has had no answer for `stall` seconds: it steps aside
        waiting.join(10)
        assert [getattr(r, "status", r) for r in got] == [200]
        assert hostile.visits("/hang")[0].end is None  # ... while /hang still waits
        gate = _gate(f)
        assert (gate.busy, gate.aside) == (0, 1)
        released.set()  # the server hangs up: /hang fails, its place is given back
        hanging.join(10)
        assert isinstance(hung[0], FeedError) and hung[0].outcome == "connection-error"
        assert (gate.busy, gate.aside) == (0, 0)
    finally:
        released.set()
        f.close()


def test_a_url_that_stalled_last_time_waits_aside_not_for_a_slot(
    hostile: HostileServer,
) -> None:
    released = threading.Event()
    hostile.hang("/hang", released)
    hostile.static("/ok", FEED.encode())
    clock = FakeClock()
    f = Fetcher(
        FetchLimits(
            allowed_networks=LOOPBACK, per_private_host=1, stall=5, deadline=600, read_timeout=300
        ),
        clock=clock,
    )
    try:
        assert f.fetch("ok", hostile.url("/ok")).status == 200  # the host answers
        t, _ = _in_thread(f, "hang", hostile.url("/hang"))
        wait_until(lambda: hostile.visits("/hang"))
        clock.advance(5)  # steps aside: the URL stalled
        wait_until(lambda: _gate(f).aside == 1)
        released.set()
        t.join(10)
        released.clear()
        # Its next poll takes a place aside at once, so /ok gets the one slot without
        # any stall time passing.
        again, _ = _in_thread(f, "hang", hostile.url("/hang"))
        wait_until(lambda: len(hostile.visits("/hang")) == 2)
        assert (_gate(f).busy, _gate(f).aside) == (0, 1)
        ok, got = _in_thread(f, "ok", hostile.url("/ok"))
        ok.join(10)
        assert [getattr(r, "status", r) for r in got] == [200]
        released.set()
        again.join(10)
        assert (_gate(f).busy, _gate(f).aside) == (0, 0)
    finally:
        released.set()
        f.close()


def test_an_answered_request_keeps_its_slot_until_its_body_is_read(
    hostile: HostileServer,
) -> None:
    # Headers at once, then the body slowly: the request is being answered, so it does
    # not step aside, however long the body takes (the deadline bounds it).
    hostile.drip("/drip", FEED.encode()[:40], every=0.05)
    clock = FakeClock()
    f = Fetcher(FetchLimits(allowed_networks=LOOPBACK, per_private_host=1, stall=1), clock=clock)
    try:
        t, out = _in_thread(f, "drip", hostile.url("/drip"))
        wait_until(lambda: hostile.visits("/drip") and hostile.visits("/drip")[0].sent)
        clock.advance(2)
        time.sleep(0.2)
        gate = _gate(f)
        assert (gate.busy, gate.aside) in ((1, 0), (0, 0))  # held, or done; never aside
        t.join(10)
        assert (gate.busy, gate.aside) == (0, 0)
    finally:
        f.close()


def test_a_host_that_answers_nobody_gets_no_more_than_its_limit(hostile: HostileServer) -> None:
    # Down or overloaded: nothing answers, so stalled requests keep their slots.
    released = threading.Event()
    hostile.hang("/hang", released)
    clock = FakeClock()
    f = Fetcher(
        FetchLimits(
            allowed_networks=LOOPBACK, per_private_host=2, stall=1, deadline=600, read_timeout=300
        ),
        clock=clock,
    )
    try:
        threads = [_in_thread(f, f"h{i}", hostile.url("/hang")) for i in range(5)]
        wait_until(lambda: len(hostile.visits("/hang")) == 2)
        for _ in range(4):
            clock.advance(1)
            time.sleep(0.2)
        assert len(hostile.visits("/hang")) == 2
        assert (_gate(f).busy, _gate(f).aside) == (2, 0)
        released.set()
        for t, _ in threads:
            t.join(10)
        assert len(hostile.visits("/hang")) == 5
        assert hostile.max_connections == 2
        assert (_gate(f).busy, _gate(f).aside) == (0, 0)
    finally:
        released.set()
        f.close()


def test_requests_standing_aside_are_bounded_per_host(hostile: HostileServer) -> None:
    released = threading.Event()
    hostile.hang("/hang", released)
    hostile.static("/ok", FEED.encode())
    clock = FakeClock()
    f = Fetcher(
        FetchLimits(
            allowed_networks=LOOPBACK, per_private_host=1, stall=1, deadline=600, read_timeout=300
        ),
        clock=clock,
    )
    cap = aside_cap(1)  # 16: one slot, and 16 standing aside at most
    try:
        assert f.fetch("ok", hostile.url("/ok")).status == 200  # the host answers
        threads = [_in_thread(f, f"h{i}", hostile.url("/hang")) for i in range(cap + 3)]
        for expected in range(1, cap + 2):
            wait_until(lambda n=expected: len(hostile.visits("/hang")) == n)  # type: ignore[misc]
            clock.advance(1)  # the one in the slot steps aside; the next takes the slot
        for _ in range(3):
            time.sleep(0.2)
            clock.advance(1)
        assert len(hostile.visits("/hang")) == cap + 1
        assert (_gate(f).busy, _gate(f).aside) == (1, cap)
        released.set()
        for t, _ in threads:
            t.join(10)
        assert len(hostile.visits("/hang")) == cap + 3
        assert hostile.max_connections == cap + 1
        assert (_gate(f).busy, _gate(f).aside) == (0, 0)
    finally:
        released.set()
        f.close()


def test_a_host_name_on_a_private_address_gets_the_private_limit(
    hostile: HostileServer,
) -> None:
    # "localhost" is a name: the connection tells that it is a loopback address (allowed
    # here), and the host's limit becomes per_private_host from then on.
    hostile.slow("/slow", FEED.encode(), delay=0.3)
    f = Fetcher(FetchLimits(allowed_networks=("127.0.0.0/8",), per_host=1, per_private_host=4))
    try:
        url = f"http://localhost:{hostile.port}/slow"
        assert f.fetch("first", url).status == 200
        assert _gate(f, "localhost").limit == 4
        threads = [_in_thread(f, f"f{i}", url) for i in range(4)]
        for t, _ in threads:
            t.join(10)
        assert all(isinstance(out[0], FetchResult) for _, out in threads)
        assert hostile.max_in_flight("/slow") == 4
    finally:
        f.close()


# --- hosts: in the config --------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [3, None])
def test_hosts_config_limits_the_connections_to_that_host(
    hostile: HostileServer, tmp_path: Path, concurrency: int | None
) -> None:
    for i in range(8):
        hostile.slow(f"/f{i}", FEED.encode(), delay=0.5)
    extra = {} if concurrency is None else {"hosts": {"127.0.0.1": {"concurrency": concurrency}}}
    config = write_config(
        tmp_path / "c.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": f"f{i}", "url": hostile.url(f"/f{i}")} for i in range(8)],
        channels={"out": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["out"]}],
        scheduler={"workers": "auto"},
        **extra,
    )
    report = Daemon.open(str(config)).once()
    assert [r.outcome for r in report.results] == ["ok"] * 8
    if concurrency is None:  # loopback: private_host_concurrency (16) lets all 8 in at once
        assert hostile.max_connections > 3
    else:
        assert hostile.max_connections == concurrency


def test_hosts_config_is_read_per_host_name() -> None:
    loaded = parse_config(
        "hosts:\n  RSSHub.Example.org: {concurrency: 16}\n  10.0.0.5:\n    concurrency: 4\n",
        "h.yaml",
    )
    hosts = loaded.config.hosts
    assert {name: h.concurrency for name, h in hosts.items()} == {
        "rsshub.example.org": 16,
        "10.0.0.5": 4,
    }


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "  https://rsshub.example.org/: {concurrency: 4}",
            "h.yaml:3 hosts.https://rsshub.example.org/: 'https://rsshub.example.org/' is not "
            "a host name",
        ),
        ("  rsshub.example.org:8080: {concurrency: 4}", "h.yaml:3 hosts.rsshub.example.org:8080:"),
        ("  x.org: {concurrency: 0}", "h.yaml:3 hosts.x.org.concurrency: Input should be greater"),
        ("  x.org: {concurrency: 65}", "h.yaml:3 hosts.x.org.concurrency: Input should be less"),
        ("  x.org: {concurency: 4}", "h.yaml:3 hosts.x.org.concurency: unknown key"),
        ("  x.org: 4", "h.yaml:3 hosts.x.org: Input should be a valid dictionary"),
    ],
)
def test_an_invalid_hosts_entry_is_a_file_line_error(entry: str, expected: str) -> None:
    text = f"feeds: []\nhosts:\n{entry}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "h.yaml")
    assert expected in str(exc.value), str(exc.value)


# --- scheduler.workers: auto ------------------------------------------------------------------


def _workers(feed_hosts: list[str], **sections: object) -> int:
    feeds = "".join(
        f"  - {{id: f{i}, url: 'http://{h}/feed/{i}'}}\n" for i, h in enumerate(feed_hosts)
    )
    extra = "".join(f"{k}: {v}\n" for k, v in sections.items())
    return poll_workers(parse_config(f"feeds:\n{feeds or '  []'}\n{extra}", "w.yaml").config)


@pytest.mark.parametrize(
    ("feed_hosts", "sections", "expected"),
    [
        # 8 for polls past their fetch, plus per host what can be in flight there: its
        # limit and aside_cap(limit) = max(16, 2 × limit) standing aside, at most its feeds.
        ([], {}, 8),
        (["a.example"] * 3, {}, 8 + 3),
        (["a.example"] * 100, {}, 8 + 2 + 16),
        (["a.example"] * 100 + ["b.example"] * 2, {}, 8 + 18 + 2),
        (["a.example"] * 100, {"hosts": "{a.example: {concurrency: 10}}"}, 8 + 10 + 20),
        (["a.example"] * 100, {"defaults": "{per_host_concurrency: 4}"}, 8 + 4 + 16),
        # a loopback address (allowed) gets private_host_concurrency, 16: 8 + 16 + 32
        (["127.0.0.1"] * 1000, {"defaults": "{allow_private_addresses: true}"}, 56),
        # a name may be the user's own server when private addresses are allowed
        (["rsshub.lan"] * 100, {"defaults": "{allow_private_addresses: true}"}, 56),
        (["rsshub.lan"] * 100, {}, 8 + 18),
        # at most 64
        ([f"h{i}.example" for i in range(100)], {}, 64),
        (["127.0.0.1"] * 1000, {"defaults": "{private_host_concurrency: 40}"}, 64),
        # a number is taken as it is
        (["a.example"] * 100, {"scheduler": "{workers: 12}"}, 12),
    ],
)
def test_auto_workers_follow_the_feeds_and_their_hosts_limits(
    feed_hosts: list[str], sections: dict[str, str], expected: int
) -> None:
    assert _workers(feed_hosts, **sections) == expected


def test_disabled_feeds_do_not_count_for_auto_workers() -> None:
    feeds = "".join(
        f"  - {{id: f{i}, url: 'http://a.example/{i}', enabled: {str(i >= 2).lower()}}}\n"
        for i in range(100)
    )
    cfg = parse_config(f"feeds:\n{feeds}", "w.yaml").config
    assert poll_workers(cfg) == 8 + 18
    feeds = "".join(
        f"  - {{id: f{i}, url: 'http://a.example/{i}', enabled: false}}\n" for i in range(100)
    )
    assert poll_workers(parse_config(f"feeds:\n{feeds}", "w.yaml").config) == 8


def test_the_daemon_claims_as_many_feeds_as_auto_workers_and_follows_reloads(
    tmp_path: Path,
) -> None:
    def config(n: int) -> Path:
        return write_config(
            tmp_path / "c.yaml",
            db=tmp_path / "m.db",
            feeds=[{"id": f"f{i}", "url": f"http://a.example/{i}"} for i in range(n)],
            channels={"out": {"urls": ["console://"]}},
            rules=[{"name": "r", "any": ["中俄"], "notify": ["out"]}],
            scheduler={"workers": "auto"},
            hosts={"a.example": {"concurrency": 4}},
        )

    d = Daemon.open(str(config(2)))
    try:
        assert d.workers() == 8 + 2
        config(100)
        assert d.reload()
        assert d.workers() == 8 + 4 + 16
    finally:
        d._close()


def test_two_hosts_entries_naming_one_host_are_an_error() -> None:
    text = (
        "feeds: []\nhosts:\n  RSSHub.Example.org: {concurrency: 16}\n"
        "  rsshub.example.org.: {concurrency: 2}\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "h.yaml")
    message = str(exc.value)
    assert "h.yaml:" in message and "hosts" in message, message
    assert "'RSSHub.Example.org' and 'rsshub.example.org.' name the same host" in message
