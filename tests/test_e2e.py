"""The daemon end to end: a real feed server, a real SMTP server, ``feed-monitor run``."""

from __future__ import annotations

import time
from pathlib import Path

from tests.daemon import Daemon, write_config
from tests.support import FeedItem, FeedServer, SmtpSink, rss_feed, wait_until

T0 = 1_700_000_000_000


def backlog() -> list[FeedItem]:
    return [
        FeedItem("中俄关系的旧闻", "https://www.rfi.fr/cn/old-1", "<p>中俄</p>", T0),
        FeedItem("法国新闻", "https://www.rfi.fr/cn/old-2", "<p>巴黎</p>", T0),
    ]


def test_new_matching_item_is_mailed_once_across_restarts(
    tmp_path: Path, feed_server: FeedServer, smtp_sink: SmtpSink
) -> None:
    items = backlog()
    feed_server.set_feed("/cn/rss", rss_feed(items))
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "rfi-cn", "url": feed_server.url("/cn/rss"), "title": "RFI 中文"}],
        channels={"email": {"urls": [smtp_sink.apprise_url(to="analyst@example.com")]}},
        rules=[{"name": "china-russia", "any": ["中俄"], "notify": ["email"]}],
    )

    with Daemon(config) as daemon:
        daemon.wait_for_line("feed 'rfi-cn': ok, 2 entries: 2 new")
        # The backlog matched the rule but did not alert.
        time.sleep(0.5)
        assert smtp_sink.mails == []

        fresh = FeedItem(
            '习近平访俄 中俄"特殊关系"进入新时代',
            "https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/20231001-new",
            "<p>正文</p>",
            T0 + 60_000,
        )
        feed_server.set_feed("/cn/rss", rss_feed([fresh, *items]))
        [mail] = smtp_sink.wait_for(1, timeout=15)
        assert list(mail.rcpt_tos) == ["analyst@example.com"]
        assert '习近平访俄 中俄"特殊关系"进入新时代' in mail.subject
        assert fresh.link in mail.text
        assert "RFI 中文" in mail.text and "china-russia" in mail.text
        polls = feed_server.count("/cn/rss")
        wait_until(lambda: feed_server.count("/cn/rss") >= polls + 2, timeout=10)
        assert daemon.stop() == 0
    assert len(smtp_sink.mails) == 1

    # Restarted: the schedule resumes, the feed changes (a full parse), no second mail.
    other = FeedItem("天气预报", "https://www.rfi.fr/cn/weather", "<p>晴</p>", T0 + 120_000)
    feed_server.set_feed("/cn/rss", rss_feed([other, fresh, *items]))
    with Daemon(config) as daemon:
        daemon.wait_for_line("feed 'rfi-cn': ok, 4 entries: 1 new")
        polls = feed_server.count("/cn/rss")
        wait_until(lambda: feed_server.count("/cn/rss") >= polls + 2, timeout=10)
        assert daemon.stop() == 0
    assert len(smtp_sink.mails) == 1


def test_unreachable_feeds_are_logged_each_poll_and_the_daemon_keeps_running(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/ok", rss_feed(backlog()))
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[
            {"id": "gone", "url": "http://127.0.0.1:9/rss"},
            {"id": "nohost", "url": "http://feeds.invalid/rss"},
            {"id": "fine", "url": feed_server.url("/ok")},
        ],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["console"]}],
        defaults={"interval": "0.3s"},
    )
    with Daemon(config) as daemon:
        daemon.wait_for_line("feed 'gone' (http://127.0.0.1:9/rss): connection-error", count=2)
        daemon.wait_for_line("feed 'nohost' (http://feeds.invalid/rss):", count=2)
        daemon.wait_for_line("feed 'fine': ok")
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.stop() == 0
    # One line per failed poll, each naming its feed, and no traceback.
    assert "Traceback" not in daemon.output
    gone = [line for line in daemon.lines if "feed 'gone'" in line]
    assert all("failure" in line for line in gone)


def test_sigterm_keeps_queued_alerts_for_the_next_start(
    tmp_path: Path, feed_server: FeedServer, smtp_sink: SmtpSink
) -> None:
    items = [
        FeedItem(f"中俄新闻 {i}", f"https://www.rfi.fr/cn/n{i}", "<p>x</p>", T0) for i in range(3)
    ]
    feed_server.set_feed("/cn", rss_feed(items))
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"email": {"urls": [smtp_sink.apprise_url()]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["email"]}],
    )
    smtp_sink.stop()  # the mail server is down: alerts stay queued
    with Daemon(config) as daemon:
        daemon.wait_for_line("3 alerts")
        daemon.wait_for_line("failed (attempt 1")
        assert daemon.stop() == 0
    smtp_sink.start()
    with Daemon(config) as daemon:
        mails = smtp_sink.wait_for(3, timeout=15)
        assert daemon.stop() == 0
    assert sorted(m.subject for m in mails) == sorted(f"[r] 中俄新闻 {i}" for i in range(3))
