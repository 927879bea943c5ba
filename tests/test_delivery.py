"""Delivery semantics with a real SMTP server and a real webhook receiver on 127.0.0.1.

Retries, back-off, rate limits and dead letters run a Deliverer in-process on a fake
clock against a real SQLite store; the daemon tests check the same paths end to end
without asserting how long anything took.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.cli import main
from monitor.daemon import Daemon as MonitorDaemon
from monitor.deliver import (
    ChannelSettings,
    Deliverer,
    DeliverySettings,
    DigestSchedule,
    QuietHours,
    RateLimit,
    build_channels,
)
from monitor.deliver.timing import hold_until_ms, quiet_end
from monitor.items import canonical_url
from monitor.secrets import Masker
from monitor.store import Store
from monitor.types import Item, MatchingFunctions, RuleMatch
from tests.daemon import REPO, Daemon, write_config
from tests.support import FeedItem, FeedServer, SmtpSink, WebhookReceiver, rss_feed, wait_until
from tests.support.cli import status_json
from tests.support.clock import FakeClock

T0 = 1_700_000_000_000


def items(n: int, word: str = "中俄", start: int = 0) -> list[FeedItem]:
    return [
        FeedItem(f"{word}新闻 {i}", f"https://www.rfi.fr/cn/d{i}", "<p>正文</p>", T0 + i)
        for i in range(start, start + n)
    ]


def config(
    tmp_path: Path,
    feed_server: FeedServer,
    channels: dict[str, Any],
    rules: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Path:
    return write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels=channels,
        rules=rules or [{"name": "china-russia", "any": ["中俄"], "notify": list(channels)}],
        **extra,
    )


# -- in-process, on a fake clock -------------------------------------------------------

SETTINGS = DeliverySettings(
    max_attempts=8,
    max_age_s=86400,
    backoff_s=10,
    max_backoff_s=60,
    batch=100,
    parallel=4,
    lease_s=60,
)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    yield store
    store.close()


def enqueue(store: Store, channels: list[str], n: int, now_ms: int, start: int = 0) -> None:
    """``n`` new items of feed cn, each matched by rule china-russia: one alert per channel."""
    batch = [
        Item(
            key=canonical_url(f"https://www.rfi.fr/cn/d{i}"),
            url=f"https://www.rfi.fr/cn/d{i}",
            title=f"中俄新闻 {i}",
            published_ms=T0 + i,
            feed_id="cn",
            content="<p>正文</p>",
        )
        for i in range(start, start + n)
    ]
    matching = MatchingFunctions(
        lambda item, feeds: [RuleMatch("china-russia", ("中俄",))], lambda rule: channels
    )
    stats = store.items.ingest("cn", batch, now_ms, matching)
    assert stats.alerts == n * len(channels)


def make_deliverer(
    store: Store,
    clock: FakeClock,
    urls: Mapping[str, str],
    rate_limit: RateLimit | None = None,
    **settings: Any,
) -> Deliverer:
    masker = Masker()
    channels = build_channels(
        {
            name: ChannelSettings(name, (url,), "text", rate_limit=rate_limit)
            for name, url in urls.items()
        },
        masker,
    )
    return Deliverer(
        store.outbox,
        "test-owner",
        dataclasses.replace(SETTINGS, **settings),
        channels,
        masker,
        clock=clock,
    )


def attempts(tmp_path: Path) -> dict[str, list[int]]:
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        rows = db.execute("SELECT channel, attempts FROM alerts ORDER BY id").fetchall()
    out: dict[str, list[int]] = {}
    for channel, n in rows:
        out.setdefault(channel, []).append(n)
    return out


TITLES = [f"[china-russia] 中俄新闻 {i}" for i in range(50)]


@pytest.mark.parametrize("chance", [0.0, 0.5, 0.999])
def test_a_failed_send_is_retried_only_once_its_jittered_backoff_has_passed(
    sqlite_store: Store, webhook_receiver: WebhookReceiver, chance: float
) -> None:
    clock = FakeClock(chance=chance)  # the jitter factor is 0.8 + 0.4 * chance
    enqueue(sqlite_store, ["hook"], 1, clock.now_ms())
    webhook_receiver.fail_next(3, status=500)
    deliverer = make_deliverer(
        sqlite_store,
        clock,
        {"hook": webhook_receiver.apprise_url()},
        backoff_s=30,
        max_backoff_s=3600,
    )
    for attempt in range(3):
        assert deliverer.deliver_due().failed == 1
        assert len(webhook_receiver.requests) == attempt + 1
        # Back-off doubles from 30 s: 30, 60, 120 s, times the jitter.
        wait_ms = int(30 * 2**attempt * (0.8 + 0.4 * chance) * 1000)
        failed_at = clock.now_ms()
        clock.set(failed_at + wait_ms - 1)
        assert deliverer.deliver_due().leased == 0  # not due yet: no new attempt
        assert len(webhook_receiver.requests) == attempt + 1
        clock.set(failed_at + wait_ms)
    assert deliverer.deliver_due().sent == 1
    calls = webhook_receiver.requests
    assert [r.status for r in calls] == [500, 500, 500, 200]
    assert calls[-1].json["title"] == TITLES[0]


@pytest.mark.parametrize(
    ("retry_after", "max_backoff_s", "pause_s"), [("120", 300, 120), ("3600", 300, 300)]
)
def test_a_429_with_retry_after_pauses_the_whole_channel_then_it_resumes_in_order(
    sqlite_store: Store,
    webhook_receiver: WebhookReceiver,
    retry_after: str,
    max_backoff_s: float,
    pause_s: float,
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["hook"], 5, clock.now_ms())
    webhook_receiver.fail_next(1, status=429, retry_after=retry_after)
    deliverer = make_deliverer(
        sqlite_store,
        clock,
        {"hook": webhook_receiver.apprise_url()},
        backoff_s=10,
        max_backoff_s=max_backoff_s,
        parallel=1,
    )
    stats = deliverer.deliver_due()
    # One request, answered 429: the other four are not sent into the rate limit.
    assert (stats.failed, stats.deferred, stats.sent) == (1, 4, 0)
    assert [r.status for r in webhook_receiver.requests] == [429]
    assert deliverer.paused_until_ms("hook") == clock.now_ms() + int(pause_s * 1000)
    # An alert that arrives during the pause waits too; nothing goes before it ends
    # (backoff_s alone would have retried after 10 s).
    enqueue(sqlite_store, ["hook"], 1, clock.now_ms(), start=5)
    for _ in range(3):
        clock.advance(pause_s / 4)
        assert deliverer.deliver_due().sent == 0
    assert len(webhook_receiver.requests) == 1
    clock.advance(pause_s / 4)
    assert deliverer.paused_until_ms("hook") is None
    assert deliverer.deliver_due().sent == 6
    calls = webhook_receiver.requests
    assert [r.status for r in calls] == [429] + [200] * 6
    assert [r.json["title"] for r in calls[1:]] == TITLES[:6]  # in order, each once


def test_template_syntax_in_an_item_is_sent_as_text_never_evaluated(
    sqlite_store: Store, webhook_receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    hostile = "{{ 7 * 7 }} {% for x in range(3) %}x{% endfor %} {{ config }}"
    item = Item(
        key=canonical_url("https://www.rfi.fr/cn/t"),
        url="https://www.rfi.fr/cn/t",
        title=f"中俄 {hostile}",
        published_ms=T0,
        feed_id="cn",
        content=f"<p>{hostile}</p>",
    )
    matching = MatchingFunctions(
        lambda item, feeds: [RuleMatch("china-russia", ("中俄",))], lambda rule: ["hook"]
    )
    assert sqlite_store.items.ingest("cn", [item], clock.now_ms(), matching).alerts == 1
    deliverer = make_deliverer(sqlite_store, clock, {"hook": webhook_receiver.apprise_url()})
    assert deliverer.deliver_due().sent == 1
    [sent] = webhook_receiver.received
    assert sent.json["title"] == f"[china-russia] 中俄 {hostile}"
    assert "49" not in sent.json["title"] and "xxx" not in sent.json["message"]


def test_a_429_without_retry_after_keeps_the_backoff_of_a_failed_send(
    sqlite_store: Store, webhook_receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["hook"], 1, clock.now_ms())
    webhook_receiver.fail_next(1, status=429)
    deliverer = make_deliverer(
        sqlite_store,
        clock,
        {"hook": webhook_receiver.apprise_url()},
        backoff_s=10,
        max_backoff_s=300,
    )
    assert deliverer.deliver_due().failed == 1
    assert deliverer.paused_until_ms("hook") is None
    clock.advance(10)
    assert deliverer.deliver_due().sent == 1


def test_an_outage_costs_the_attempts_of_the_backoff_schedule_and_loses_nothing(
    tmp_path: Path, sqlite_store: Store, webhook_receiver: WebhookReceiver, smtp_sink: SmtpSink
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["hook", "mail"], 5, clock.now_ms())
    webhook_receiver.stop()
    smtp_sink.stop()
    deliverer = make_deliverer(
        sqlite_store,
        clock,
        {"hook": webhook_receiver.apprise_url(), "mail": smtp_sink.apprise_url()},
        max_attempts=50,
    )
    # Ten minutes down, the delivery job running every 5 s: back-off 10, 20, 40, then
    # 60 s, so attempts at 0, 10, 30, 70, 130, ... 550 s: 12 per alert, no busy loop.
    for _ in range(120):
        deliverer.deliver_due()
        clock.advance(5)
    assert attempts(tmp_path) == {"hook": [12] * 5, "mail": [12] * 5}
    summary = sqlite_store.readouts.alert_summary()
    assert summary["hook"]["retrying"] == 5 and summary["mail"]["retrying"] == 5
    assert summary["hook"]["sent"] == 0
    webhook_receiver.start()
    smtp_sink.start()
    clock.advance(10)  # the 13th attempts are due at 610 s
    assert deliverer.deliver_due().sent == 10
    clock.advance(3600)
    assert deliverer.deliver_due().leased == 0  # sent once, never again
    assert sorted(r.json["title"] for r in webhook_receiver.requests) == TITLES[:5]
    assert sorted(m.subject for m in smtp_sink.mails) == TITLES[:5]
    summary = sqlite_store.readouts.alert_summary()
    assert summary["hook"]["sent"] == 5 and summary["mail"]["sent"] == 5


def test_attempts_stop_at_max_attempts_and_a_redriven_dead_letter_is_sent_once(
    sqlite_store: Store, webhook_receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["hook"], 2, clock.now_ms())
    webhook_receiver.set_down(True, status=503)
    deliverer = make_deliverer(
        sqlite_store, clock, {"hook": webhook_receiver.apprise_url()}, max_attempts=3
    )
    outcomes = []
    for _ in range(60):  # ten minutes at 10 s
        stats = deliverer.deliver_due()
        if stats.touched:
            outcomes.append((stats.failed, stats.dead))
        clock.advance(10)
    assert outcomes == [(2, 0), (2, 0), (0, 2)]
    assert len(webhook_receiver.requests) == 6  # three attempts each, none once dead
    webhook_receiver.set_down(False)
    clock.advance(86400)
    assert deliverer.deliver_due().leased == 0  # a dead letter waits for an operator
    assert sqlite_store.outbox.redeliver(clock.now_ms(), channel="hook") == 2
    assert deliverer.deliver_due().sent == 2
    clock.advance(86400)
    assert deliverer.deliver_due().leased == 0
    assert sorted(r.json["title"] for r in webhook_receiver.received) == TITLES[:2]


def test_rate_limit_sends_at_most_count_per_window_and_defers_the_rest(
    sqlite_store: Store, webhook_receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["hook"], 50, clock.now_ms())
    deliverer = make_deliverer(
        sqlite_store,
        clock,
        {"hook": webhook_receiver.apprise_url()},
        rate_limit=RateLimit(20, 60.0),
    )
    first = deliverer.deliver_due()
    assert (first.sent, first.deferred) == (20, 30)
    clock.advance(59.999)
    assert deliverer.deliver_due().leased == 0  # deferred until the window has passed
    assert len(webhook_receiver.requests) == 20
    clock.advance(0.001)
    second = deliverer.deliver_due()
    assert (second.sent, second.deferred) == (20, 10)
    clock.advance(60)
    assert deliverer.deliver_due().sent == 10
    assert sorted(r.json["title"] for r in webhook_receiver.received) == sorted(TITLES)


def test_rate_limit_history_survives_a_reload(
    sqlite_store: Store, webhook_receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["hook"], 2, clock.now_ms())
    url = {"hook": webhook_receiver.apprise_url()}
    before = make_deliverer(sqlite_store, clock, url, rate_limit=RateLimit(2, 60.0))
    assert before.deliver_due().sent == 2
    after = make_deliverer(sqlite_store, clock, url, rate_limit=RateLimit(2, 60.0))
    after.adopt_limits(before)
    clock.advance(10)
    enqueue(sqlite_store, ["hook"], 1, clock.now_ms(), start=2)
    assert after.deliver_due().deferred == 1  # the window of the two sent still runs
    clock.advance(50)
    assert after.deliver_due().sent == 1
    assert sorted(r.json["title"] for r in webhook_receiver.received) == TITLES[:3]


# -- the daemon, end to end -------------------------------------------------------------


def test_receiver_failing_three_times_gets_the_alert_on_the_fourth_with_backoff(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(1)))
    webhook_receiver.fail_next(3, status=500)
    cfg = config(
        tmp_path,
        feed_server,
        {"hook": {"urls": [webhook_receiver.apprise_url()]}},
        delivery={"backoff": 0.3, "max_backoff": 5},
    )
    with Daemon(cfg) as daemon:
        [ok] = webhook_receiver.wait_for(1, timeout=20)
        assert daemon.stop() == 0
    calls = webhook_receiver.requests
    assert [r.status for r in calls] == [500, 500, 500, 200]
    assert ok.json["title"] == "[china-russia] 中俄新闻 0"


def test_channels_down_then_back_lose_nothing_and_do_not_busy_loop(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver, smtp_sink: SmtpSink
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(5)))
    webhook_receiver.stop()
    smtp_sink.stop()
    cfg = config(
        tmp_path,
        feed_server,
        {
            "hook": {"urls": [webhook_receiver.apprise_url()]},
            "mail": {"urls": [smtp_sink.apprise_url()]},
        },
        delivery={"backoff": 0.2, "max_backoff": 1, "max_attempts": 50},
    )
    with Daemon(cfg) as daemon:
        daemon.wait_for_line("failed (attempt 2", timeout=15)
        channels = {c["name"]: c for c in status_json(cfg)["channels"]}
        assert channels["hook"]["retrying"] == 5 and channels["mail"]["retrying"] == 5
        assert channels["hook"]["sent"] == 0
        time.sleep(2.0)  # down for a while
        webhook_receiver.start()
        smtp_sink.start()
        webhook_receiver.wait_for(5, timeout=15)
        smtp_sink.wait_for(5, timeout=15)
        assert daemon.stop() == 0
    channels = {c["name"]: c for c in status_json(cfg)["channels"]}
    assert channels["hook"]["sent"] == 5 and channels["mail"]["sent"] == 5
    assert sorted(r.json["title"] for r in webhook_receiver.received) == sorted(
        f"[china-russia] 中俄新闻 {i}" for i in range(5)
    )
    # How many attempts an outage costs is checked on a fake clock (above).
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        most_attempts = db.execute("SELECT max(attempts) FROM alerts").fetchone()[0]
    assert most_attempts >= 2


def test_sigkill_at_random_moments_loses_no_alert(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    import random
    import signal
    import sqlite3

    n = 220
    feed_server.set_feed("/cn", rss_feed(items(n)))
    webhook_receiver.set_delay(0.01)
    cfg = config(
        tmp_path,
        feed_server,
        {"hook": {"urls": [webhook_receiver.apprise_url()]}},
        delivery={"backoff": 0.2, "max_backoff": 1, "batch": 20, "lease": 2},
    )
    rng = random.Random(20231001)
    in_flight_at_kills = 0
    kills = 0
    while kills < 10:
        daemon = Daemon(cfg).start()
        try:
            if kills == 0:  # the first run must get as far as storing the items
                daemon.wait_for_line("feed 'cn': ok", timeout=60)
            time.sleep(rng.uniform(0.4, 1.2))
            daemon.stop(signal.SIGKILL)
        finally:
            daemon.__exit__()
        kills += 1
        with sqlite3.connect(tmp_path / "monitor.db", timeout=30) as db:
            in_flight_at_kills += db.execute(
                "SELECT count(*) FROM alerts WHERE status='pending' AND lease_owner IS NOT NULL"
            ).fetchone()[0]
    with Daemon(cfg) as daemon:
        # The killed runs may have sent everything already: stop only once this one runs
        # (a SIGTERM before its handler is installed ends it the default way).
        daemon.wait_for_line("feed-monitor running", timeout=60)
        wait_until(
            lambda: len({r.json["title"] for r in webhook_receiver.received}) >= n,
            timeout=120,
            message="not every alert arrived",
        )
        assert daemon.stop() == 0
    titles = [r.json["title"] for r in webhook_receiver.received]
    duplicates = len(titles) - len(set(titles))
    print(
        f"\n{kills} kills, {n} alerts, {duplicates} duplicates, "
        f"{in_flight_at_kills} alerts in flight at the kills"
    )
    assert set(titles) == {f"[china-russia] 中俄新闻 {i}" for i in range(n)}
    assert duplicates <= in_flight_at_kills


def test_burst_is_paced_by_the_rate_limit_and_delivered_in_full(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    # 20 per 2 s: the same limiter as "20/min", on a time scale a test can wait for.
    feed_server.set_feed("/cn", rss_feed(items(100)))
    cfg = config(
        tmp_path,
        feed_server,
        {"hook": {"urls": [webhook_receiver.apprise_url()], "rate_limit": "20/2s"}},
    )
    with Daemon(cfg) as daemon:
        received = webhook_receiver.wait_for(100, timeout=40)
        assert daemon.stop() == 0
    # At most 20 in any window, the rest deferred: checked on a fake clock (above).
    assert len({r.json["title"] for r in received}) == 100


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_batch_goes_out_up_to_parallel_messages_at_once(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver, parallel: int
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(8)))
    webhook_receiver.set_delay(0.3)  # each message is in flight a while: overlaps show
    cfg = config(
        tmp_path,
        feed_server,
        {"hook": {"urls": [webhook_receiver.apprise_url()]}},
        delivery={"parallel": parallel},
    )
    assert MonitorDaemon.open(str(cfg)).once().delivery.sent == 8
    assert sorted(r.json["title"] for r in webhook_receiver.received) == sorted(
        f"[china-russia] 中俄新闻 {i}" for i in range(8)
    )
    if parallel == 1:
        assert webhook_receiver.max_in_flight == 1
    else:
        assert 2 <= webhook_receiver.max_in_flight <= parallel


def test_mails_sent_at_once_each_carry_their_own_alert_message_id(
    tmp_path: Path, feed_server: FeedServer, smtp_sink: SmtpSink
) -> None:
    import sqlite3

    feed_server.set_feed("/cn", rss_feed(items(12)))
    cfg = config(
        tmp_path,
        feed_server,
        {"mail": {"urls": [smtp_sink.apprise_url()]}},
        delivery={"parallel": 6},
    )
    MonitorDaemon.open(str(cfg)).once()
    mails = smtp_sink.wait_for(12, timeout=10)
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        expected = {
            f"<alert-{alert}.{created}@feed-monitor>": f"[china-russia] {title}"
            for alert, created, title in db.execute(
                "SELECT alerts.id, alerts.created_ms, items.title "
                "FROM alerts JOIN items ON items.id = alerts.item_id"
            )
        }
    assert len(expected) == 12
    assert {m.message["Message-ID"]: m.subject for m in mails} == expected


def test_messages_failing_at_once_keep_each_their_own_error(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    import sqlite3

    from tests.support import WebhookReceiver as Receiver

    feed_server.set_feed("/cn", rss_feed(items(6)))
    webhook_receiver.set_down(True, status=500)
    webhook_receiver.set_delay(0.2)
    with Receiver() as other:
        other.set_down(True, status=503)
        other.set_delay(0.2)
        cfg = config(
            tmp_path,
            feed_server,
            {"a": {"urls": [webhook_receiver.apprise_url()]}, "b": {"urls": [other.apprise_url()]}},
            delivery={"parallel": 4, "backoff": 600},
        )  # no retry in the run
        assert MonitorDaemon.open(str(cfg)).once().delivery.failed == 12
        assert max(webhook_receiver.max_in_flight, other.max_in_flight) >= 2
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        errors = db.execute("SELECT channel, last_error FROM alerts").fetchall()
    assert len(errors) == 12
    for channel, error in errors:
        mine, theirs = ("500", "503") if channel == "a" else ("503", "500")
        assert mine in error and theirs not in error, (channel, error)


def test_digest_window_sends_one_message_listing_all(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(5)))
    cfg = config(
        tmp_path,
        feed_server,
        {
            "hook": {
                "urls": [webhook_receiver.apprise_url()],
                "language": "zh",
                "digest": {"window": "1s"},
            }
        },
    )
    with Daemon(cfg) as daemon:
        [digest] = webhook_receiver.wait_for(1, timeout=15)
        time.sleep(1.0)
        assert daemon.stop() == 0
    assert len(webhook_receiver.received) == 1
    assert "5 条新提醒" in digest.json["title"]
    for i in range(5):
        assert f"中俄新闻 {i}" in digest.json["message"]
        assert f"https://www.rfi.fr/cn/d{i}" in digest.json["message"]


def test_quiet_hours_hold_then_release_as_one_digest(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(3)))
    cfg = config(
        tmp_path,
        feed_server,
        {
            "hook": {
                "urls": [webhook_receiver.apprise_url()],
                "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Asia/Shanghai"},
            }
        },
    )
    monitor = MonitorDaemon.open(str(cfg))
    [row] = monitor.parts.store.feeds.claim_due(monitor.parts.owner, 2**62, 1, 60_000, ["cn"])
    monitor.poll(row)
    deliverer = monitor.parts.runtime.deliverer
    # The next 23:30 in Shanghai: the alerts, created now, are due by then.
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    night = local.replace(hour=23, minute=30, second=0, microsecond=0)
    if night <= local:
        night += timedelta(days=1)
    night = night.astimezone(UTC)
    held = deliverer.deliver_due(int(night.timestamp() * 1000))
    assert held.held == 3 and webhook_receiver.requests == []
    # Still quiet at 06:59 Shanghai: nothing is due yet.
    early = night + timedelta(hours=7, minutes=29)
    assert deliverer.deliver_due(int(early.timestamp() * 1000)).touched == 0
    morning = night + timedelta(hours=7, minutes=30, seconds=1)  # 07:00:01 Shanghai
    released = deliverer.deliver_due(int(morning.timestamp() * 1000))
    assert (released.sent, released.messages) == (3, 1)
    [digest] = webhook_receiver.received
    assert all(f"中俄新闻 {i}" in digest.json["message"] for i in range(3))
    monitor.parts.store.close()


@pytest.mark.parametrize(
    "start, end, local, quiet",
    [
        ("22:00", "07:00", "23:30", True),
        ("22:00", "07:00", "06:59", True),
        ("22:00", "07:00", "07:00", False),
        ("22:00", "07:00", "12:00", False),
        ("12:00", "14:00", "13:00", True),
        ("12:00", "14:00", "14:00", False),
    ],
)
def test_quiet_hours_window(start: str, end: str, local: str, quiet: bool) -> None:
    q = QuietHours(start=start, end=end, timezone="Asia/Shanghai")
    h, m = map(int, local.split(":"))
    at = datetime(2026, 11, 26, h, m, tzinfo=UTC) - timedelta(hours=8)
    released = quiet_end(q, at)
    assert (released is not None) == quiet
    if released is not None:
        assert released > at and released - at <= timedelta(hours=24)
        assert released.astimezone(ZoneInfo(q.timezone)).strftime("%H:%M") == end


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


NIGHT = QuietHours("22:00", "07:00", "Asia/Shanghai")  # 14:00 to 23:00 UTC


@pytest.mark.parametrize(
    "now, created, digest, quiet, opened, held_until",
    [
        ("2026-11-26 12:00", "2026-11-26 12:00", None, None, None, None),
        ("2026-11-26 12:00", "2026-11-26 12:00", None, NIGHT, None, None),
        ("2026-11-26 15:00", "2026-11-26 15:00", None, NIGHT, None, "2026-11-26 23:00"),
        # A window opens with the first alert; later ones join it.
        (
            "2026-11-26 12:00",
            "2026-11-26 12:00",
            DigestSchedule(window_s=600),
            None,
            None,
            "2026-11-26 12:10",
        ),
        (
            "2026-11-26 12:05",
            "2026-11-26 12:05",
            DigestSchedule(window_s=600),
            None,
            "2026-11-26 12:10",
            "2026-11-26 12:10",
        ),
        ("2026-11-26 12:10", "2026-11-26 12:00", DigestSchedule(window_s=600), None, None, None),
        # A cron digest goes out at its next time, read in its own zone.
        (
            "2026-11-26 12:00",
            "2026-11-26 12:00",
            DigestSchedule(schedule="0 8 * * *", timezone="Asia/Shanghai"),
            None,
            None,
            "2026-11-27 00:00",
        ),
        # A digest released inside quiet hours waits for their end.
        (
            "2026-11-26 13:55",
            "2026-11-26 13:55",
            DigestSchedule(window_s=600),
            NIGHT,
            None,
            "2026-11-26 23:00",
        ),
    ],
)
def test_hold_until(
    now: str,
    created: str,
    digest: DigestSchedule | None,
    quiet: QuietHours | None,
    opened: str | None,
    held_until: str | None,
) -> None:
    held = hold_until_ms(
        utc_ms(now), utc_ms(created), digest, quiet, utc_ms(opened) if opened else None
    )
    assert held == (utc_ms(held_until) if held_until else None)


def test_silenced_rule_sends_nothing_during_the_silence_and_resumes_after(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(2)))
    cfg = config(tmp_path, feed_server, {"hook": {"urls": [webhook_receiver.apprise_url()]}})
    assert (
        main(
            [
                "silence",
                "add",
                "--rule",
                "china-russia",
                "--for",
                "6h",
                "--comment",
                "summit week",
                "-c",
                str(cfg),
            ]
        )
        == 0
    )
    assert "silence 1: rule 'china-russia'" in capsys.readouterr().out
    report = MonitorDaemon.open(str(cfg)).once()
    assert report.delivery.silenced == 2 and webhook_receiver.requests == []
    assert main(["silence", "list", "-c", str(cfg)]) == 0
    assert "summit week" in capsys.readouterr().out
    assert main(["silence", "expire", "1", "-c", str(cfg)]) == 0
    feed_server.set_feed("/cn", rss_feed(items(3)))  # one new item after the silence
    report = MonitorDaemon.open(str(cfg)).once()
    assert report.delivery.sent == 1
    assert [r.json["title"] for r in webhook_receiver.received] == ["[china-russia] 中俄新闻 2"]
    assert status_json(cfg)["channels"][0]["silenced"] == 2


def test_email_is_html_with_a_text_part_and_an_alert_message_id(
    tmp_path: Path, feed_server: FeedServer, smtp_sink: SmtpSink
) -> None:
    feed_server.set_feed(
        "/cn",
        rss_feed(
            [
                FeedItem(
                    '北京与莫斯科的"特殊"关系 <中俄>',
                    "https://www.rfi.fr/cn/x",
                    "<p>中俄关系</p>",
                    T0,
                )
            ]
        ),
    )
    cfg = config(
        tmp_path, feed_server, {"mail": {"urls": [smtp_sink.apprise_url()], "language": "zh"}}
    )
    MonitorDaemon.open(str(cfg)).once()
    [mail] = smtp_sink.wait_for(1, timeout=5)
    msg = mail.message
    assert msg.get_content_type() == "multipart/alternative"
    assert mail.html is not None and "&lt;中俄&gt;" in mail.html  # escaped in HTML
    assert "https://www.rfi.fr/cn/x" in mail.text and "规则" in mail.text
    assert msg["Message-ID"].startswith("<alert-1.") and len(msg.get_all("Message-ID")) == 1


def test_redeliver_sends_dead_letters_again(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed_server.set_feed("/cn", rss_feed(items(2)))
    cfg = config(
        tmp_path,
        feed_server,
        {"hook": {"urls": [webhook_receiver.apprise_url()]}},
        delivery={"max_attempts": 1},
    )
    webhook_receiver.set_down(True)
    assert MonitorDaemon.open(str(cfg)).once().delivery.dead == 2
    assert status_json(cfg)["channels"][0]["dead"] == 2
    webhook_receiver.set_down(False)
    assert main(["redeliver", "--channel", "hook", "-c", str(cfg)]) == 0
    assert "2 dead alerts for channel 'hook' queued" in capsys.readouterr().out
    assert MonitorDaemon.open(str(cfg)).once().delivery.sent == 2


def test_notify_test_reports_each_url_with_secrets_masked(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = webhook_receiver.apprise_url()
    bad = smtp_sink.apprise_url(password="hunter2-secret").replace(f":{smtp_sink.port}", ":9")
    cfg = config(tmp_path, feed_server, {"both": {"urls": [good, bad]}})
    assert main(["notify-test", "both", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("ok   json://") and lines[1].startswith("FAIL mailto://")
    assert "hunter2-secret" not in out
    assert webhook_receiver.received[0].json["title"] == "feed-monitor test"


def test_importing_delivery_changes_nothing_in_apprise_until_install() -> None:
    script = """
import logging
import apprise
import apprise.plugins.email.base as email
import apprise.plugins.email.smtp as apprise_smtp
from email.utils import make_msgid
import monitor.deliver as deliver

def known():
    return apprise.Apprise.instantiate("console://", suppress_exceptions=True) is not None

handlers = len(logging.getLogger("apprise").handlers)
def apprise_smtp_controller():
    return email.AppriseSMTPController is apprise_smtp.AppriseSMTPController

before = (known(), email.make_msgid is make_msgid, apprise_smtp_controller())
deliver.install()
deliver.install()
after = (known(), email.make_msgid is make_msgid, apprise_smtp_controller(),
         email.AppriseSMTPController.__name__,
         len(logging.getLogger("apprise").handlers) - handlers)
print(before, after)
"""
    logging_off = "import logging; logging.disable(logging.CRITICAL)\n"
    out = subprocess.run(
        [sys.executable, "-c", logging_off + script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "(False, True, True) (True, False, False, 'KeptSMTPController', 1)"
