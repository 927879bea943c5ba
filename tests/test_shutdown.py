"""Graceful stop: SIGTERM stops claiming, lets in-flight polls and sends finish within the
grace period or hands them back, exits 0, and loses nothing that was queued."""

from __future__ import annotations

import signal
import socket
import sqlite3
from pathlib import Path

from tests.daemon import Daemon, write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed, wait_until

T0 = 1_700_000_000_000


def stories(n: int) -> list[FeedItem]:
    return [
        FeedItem(f"中俄新闻 {i}", f"https://www.rfi.fr/cn/s{i}", "<p>x</p>", T0 + i)
        for i in range(n)
    ]


def leases(db: Path) -> tuple[int, int]:
    """Alerts and feeds that some process still holds a lease on."""
    with sqlite3.connect(db) as conn:
        alerts = conn.execute("SELECT count(*) FROM alerts WHERE lease_owner IS NOT NULL")
        feeds = conn.execute("SELECT count(*) FROM feeds WHERE lease_owner IS NOT NULL")
        return alerts.fetchone()[0], feeds.fetchone()[0]


def sent_titles(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT i.title FROM alerts a JOIN items i ON i.id = a.item_id "
            "WHERE a.status = 'sent' ORDER BY i.title"
        )
        return [r[0] for r in rows]


def test_sigterm_finishes_the_send_in_flight_and_the_rest_goes_after_a_restart(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed(stories(4)))
    webhook_receiver.set_delay(1.0)  # each send takes a second: some are pending at SIGTERM
    db = tmp_path / "monitor.db"
    config = write_config(
        tmp_path / "monitor.yaml",
        db=db,
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/alerts")]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["hook"]}],
        delivery={"parallel": 1},
    )  # one send at a time, so some wait when SIGTERM comes
    with Daemon(config, "--grace", "10") as daemon:
        webhook_receiver.wait_for(1, timeout=15)  # sending the second now, two pending
        assert daemon.stop(signal.SIGTERM, timeout=15) == 0
    assert "received SIGTERM, stopping" in daemon.output
    assert "grace period" not in daemon.output  # everything finished in time
    first_run = len(webhook_receiver.received)
    assert 1 <= first_run < 4
    # What was sent is marked sent; nothing is left leased.
    assert len(sent_titles(db)) == first_run
    assert leases(db) == (0, 0)

    webhook_receiver.set_delay(0)
    with Daemon(config) as daemon:
        webhook_receiver.wait_for(4, timeout=15)
        assert daemon.stop() == 0
    # Each alert exactly once: the send in flight at SIGTERM completed and was recorded.
    titles = sorted(r.json["title"] for r in webhook_receiver.received)
    assert titles == [f"[r] 中俄新闻 {i}" for i in range(4)]


def test_work_still_running_after_the_grace_period_is_released_and_the_exit_is_0(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/cn", rss_feed(stories(3)))
    db = tmp_path / "monitor.db"
    # A receiver that accepts the connection and never answers; Apprise is told to wait
    # a minute for it (rto=60), far beyond the grace period.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(8)
    stuck.settimeout(15)
    port = stuck.getsockname()[1]
    with FeedServer() as slow:  # a feed whose poll is still running at SIGTERM
        slow.set_feed("/slow", rss_feed(stories(1)))
        slow.set_delay("/slow", 4.0)
        config = write_config(
            tmp_path / "monitor.yaml",
            db=db,
            feeds=[
                {"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"},
                {"id": "slow", "url": slow.url("/slow"), "backlog": "all"},
            ],
            channels={"hook": {"urls": [f"json://127.0.0.1:{port}/alerts?rto=60"]}},
            rules=[{"name": "r", "any": ["中俄"], "notify": ["hook"]}],
        )
        with Daemon(config, "--grace", "1") as daemon:
            conn, _ = stuck.accept()  # the daemon is sending now
            wait_until(lambda: slow.in_flight == 1, timeout=10)
            # Exits within the grace period plus a little, not after the minute Apprise
            # would wait for the receiver nor the feed's fetch deadline.
            assert daemon.stop(timeout=10) == 0
        conn.close()
        stuck.close()
        assert "grace period of 1 s over: 1 poll(s) and a delivery still running" in daemon.output
        assert leases(db) == (0, 0)
        assert sent_titles(db) == []

        # After a restart the receiver answers: every alert arrives (the one that was in
        # flight at least once, as the outbox promises), the slow feed is polled again.
        slow.set_delay("/slow", 0)
        with WebhookReceiver(port=port) as hook, Daemon(config) as daemon:
            wait_until(
                lambda: len({r.json["title"] for r in hook.received}) == 3,
                timeout=15,
                message=lambda: f"{[r.text for r in hook.received]}",
            )
            daemon.wait_for_line("feed 'slow': ok")
            assert daemon.stop() == 0
        assert {r.json["title"] for r in hook.received} == ({f"[r] 中俄新闻 {i}" for i in range(3)})
