"""A quiet daemon shows it is alive: every `log.heartbeat` one line of what it did."""

from __future__ import annotations

import logging
from concurrent.futures import wait
from pathlib import Path

import pytest

from monitor.daemon import Daemon
from monitor.heartbeat import Beat, span_text
from tests.daemon import Daemon as DaemonProcess
from tests.daemon import write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed
from tests.support.clock import FakeClock

T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    ("beat", "line"),
    [
        (
            Beat(T0, T0 + 300_000),
            "heartbeat: last 5m: 0 feeds polled (0 polls), 0 new items, 0 alerts sent, no failures",
        ),
        (
            Beat(T0, T0 + 60_000, polls=1, feeds=1, new_items=1, alerts_sent=1),
            "heartbeat: last 1m: 1 feed polled (1 poll), 1 new item, 1 alert sent, no failures",
        ),
        (
            Beat(
                T0,
                T0 + 330_000,
                polls=12,
                feeds=2,
                failed_polls=2,
                failed_feeds=("a", "b"),
                failed_sends=1,
            ),
            "heartbeat: last 5m30s: 2 feeds polled (12 polls), 0 new items, 0 alerts sent, "
            "3 failures: 2 failed polls ('a', 'b'), 1 failed send",
        ),
        (
            Beat(
                T0,
                T0 + 7_200_000,
                polls=5,
                feeds=5,
                failed_polls=5,
                failed_feeds=("a", "b", "c", "d", "e"),
            ),
            "heartbeat: last 2h: 5 feeds polled (5 polls), 0 new items, 0 alerts sent, "
            "5 failures: 5 failed polls ('a', 'b', 'c' and 2 more feeds)",
        ),
    ],
)
def test_a_beat_reads_as_one_line(beat: Beat, line: str) -> None:
    assert beat.line() == line


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (60, "1m"), (330, "5m30s"), (3600, "1h"), (7500, "2h5m")],
)
def test_span_text(seconds: float, text: str) -> None:
    assert span_text(seconds) == text


def test_heartbeat_counts_polls_new_items_alerts_and_failures_since_the_last_line(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed_server.set_feed(
        "/cn",
        rss_feed(
            [
                FeedItem("中俄会谈", "https://www.rfi.fr/cn/a", "<p>x</p>", T0),
                FeedItem("巴黎天气", "https://www.rfi.fr/cn/b", "<p>y</p>", T0),
            ]
        ),
    )
    feed_server.set_status("/broken", 500)
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[
            {"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"},
            {"id": "broken", "url": feed_server.url("/broken")},
        ],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/alerts")]}},
        rules=[{"name": "china-russia", "any": ["中俄"], "notify": ["hook"]}],
    )
    clock = FakeClock(T0)
    daemon = Daemon.open(str(config), clock=clock)
    try:
        daemon.tick()
        wait(list(daemon._in_flight.values()))
        daemon.deliver()
        clock.advance(300)
        with caplog.at_level(logging.INFO, logger="monitor"):
            daemon.heartbeat()
            clock.advance(300)
            daemon.heartbeat()
    finally:
        daemon.pool.shutdown(wait=True)
        daemon.parts.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("heartbeat")]
    assert lines == [
        "heartbeat: last 5m: 2 feeds polled (2 polls), 2 new items, 1 alert sent, "
        "1 failure: 1 failed poll ('broken')",
        # Nothing happened: the line still comes, so silence never means a dead daemon.
        "heartbeat: last 5m: 0 feeds polled (0 polls), 0 new items, 0 alerts sent, no failures",
    ]
    assert len(webhook_receiver.received) == 1


def test_run_logs_the_heartbeat_at_the_configured_interval(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("巴黎天气", "https://x.org/b", "", T0)]))
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn")}],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["console"]}],
        log={"heartbeat": "0.5s"},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_line("feed 'cn': ok")
        daemon.wait_for_line("heartbeat: last", count=2)
        assert daemon.stop() == 0
    assert "feed polled" in daemon.output


def test_heartbeat_zero_turns_it_off(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("巴黎天气", "https://x.org/b", "", T0)]))
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn")}],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["console"]}],
        log={"heartbeat": 0},
    )
    daemon = Daemon.open(str(config))
    try:
        daemon._schedule_heartbeat(daemon.parts.runtime.loaded.config.log.heartbeat)
        assert daemon.jobs._sched.get_job("heartbeat") is None
    finally:
        daemon.pool.shutdown(wait=True)
        daemon.parts.close()
