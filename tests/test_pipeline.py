"""One poll along the whole path, in process: real feed server, SQLite file, webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import monitor.app
from monitor.app import build
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.poll import poll_feed
from monitor.types import OnceReport, PollOutcome
from tests.daemon import write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed
from tests.support.cli import status_json
from tests.support.clock import FakeClock

T0 = 1_700_000_000_000


def once(config: Path) -> OnceReport:
    return Daemon.open(str(config)).once()


def setup(
    tmp_path: Path,
    feed_server: FeedServer,
    hook: WebhookReceiver,
    paths: dict[str, str],
    backlog: str = "all",
    **rule: Any,
) -> Path:
    return write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[
            {"id": fid, "url": feed_server.url(path), "backlog": backlog}
            for fid, path in paths.items()
        ],
        channels={"hook": {"urls": [hook.apprise_url("/alerts")]}},
        rules=[{"name": "china-russia", "any": ["中俄"], "notify": ["hook"], **rule}],
    )


def titles(hook: WebhookReceiver) -> list[str]:
    return sorted(r.json["title"] for r in hook.received)


def test_items_sharing_one_timestamp_are_each_alerted_once(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    batch = [FeedItem(f"中俄 {i}", f"https://www.rfi.fr/cn/s{i}", "<p>x</p>", T0) for i in range(6)]
    feed_server.set_feed("/cn", rss_feed(batch))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    assert once(config).delivery.sent == 6
    feed_server.set_feed("/cn", rss_feed(batch + [FeedItem("无关", "https://x.org/1", "", T0)]))
    assert once(config).delivery.sent == 0
    assert titles(webhook_receiver) == sorted(f"[china-russia] 中俄 {i}" for i in range(6))


def test_http_https_and_double_slash_variants_give_one_alert(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    variants = [
        "https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/x",
        "http://www.rfi.fr/cn/中国/x",
        "https://www.rfi.fr//cn//%E4%B8%AD%E5%9B%BD/x?xtor=RSS-1",
    ]
    feed_server.set_feed("/cn", rss_feed([FeedItem("中俄", variants[0], "", T0)]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    once(config)
    for url in variants[1:]:
        feed_server.set_feed("/cn", rss_feed([FeedItem("中俄", url, "", T0)]))
        once(config)
    assert len(webhook_receiver.received) == 1


def test_item_in_two_feeds_gives_one_alert_naming_both(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    story = FeedItem("中俄峰会", "https://www.rfi.fr/cn/summit", "<p>x</p>", T0)
    feed_server.set_feed("/cn", rss_feed([story]))
    feed_server.set_feed("/intl", rss_feed([story]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn", "intl": "/intl"})
    report = once(config)
    assert report.ingest.new == 1 and report.ingest.repeats == 1
    [alert] = webhook_receiver.received
    assert "cn" in alert.json["message"] and "intl" in alert.json["message"]


def test_a_304_response_is_not_parsed(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("中俄", "https://x.org/a", "", T0)]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    parsed: list[str] = []
    real_parse = monitor.app.parse_feed

    def counting_parse(body: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(args[1])
        return real_parse(body, *args, **kwargs)

    monkeypatch.setattr(monitor.app, "parse_feed", counting_parse)
    first = once(config)
    assert [r.outcome for r in first.results] == ["ok"] and parsed == ["cn"]
    second = once(config)
    assert [r.outcome for r in second.results] == ["not-modified"]
    assert parsed == ["cn"]  # the 304 was not parsed
    last = feed_server.requests_for("/cn")[-1]
    assert last.status == 304 and last.headers.get("If-None-Match")


def test_first_poll_records_backlog_and_later_items_alert(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    old = [FeedItem(f"中俄旧闻 {i}", f"https://x.org/old{i}", "", T0) for i in range(3)]
    feed_server.set_feed("/cn", rss_feed(old))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"}, backlog="none")
    report = once(config)
    assert report.ingest.new == 3 and report.ingest.alerts == 0
    new = FeedItem("中俄新闻", "https://x.org/new", "", T0 + 1000)
    feed_server.set_feed("/cn", rss_feed([new, *old]))
    once(config)
    assert titles(webhook_receiver) == ["[china-russia] 中俄新闻"]


def test_backlog_window_alerts_only_recent_items(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    import time

    now = int(time.time() * 1000)
    items = [
        FeedItem("中俄 recent", "https://x.org/r", "", now - 3600_000),
        FeedItem("中俄 old", "https://x.org/o", "", now - 3 * 86400_000),
    ]
    feed_server.set_feed("/cn", rss_feed(items))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"}, backlog="24h")
    once(config)
    assert titles(webhook_receiver) == ["[china-russia] 中俄 recent"]


def test_update_alerts_only_when_a_rule_newly_matches(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    url = "https://x.org/story"
    feed_server.set_feed("/cn", rss_feed([FeedItem("法国新闻", url, "<p>巴黎</p>", T0)]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    once(config)
    assert webhook_receiver.received == []
    feed_server.set_feed(
        "/cn", rss_feed([FeedItem("法国新闻（更新）", url, "<p>中俄关系</p>", T0 + 60_000)])
    )
    assert once(config).ingest.updated == 1
    feed_server.set_feed(
        "/cn", rss_feed([FeedItem("法国新闻（再更新）", url, "<p>中俄关系 又</p>", T0 + 120_000)])
    )
    assert once(config).ingest.updated == 1
    assert titles(webhook_receiver) == ["[china-russia] 法国新闻（更新）"]


def test_rules_limited_to_feeds(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("中俄 A", "https://x.org/a", "", T0)]))
    feed_server.set_feed("/tw", rss_feed([FeedItem("中俄 B", "https://x.org/b", "", T0)]))
    config = setup(
        tmp_path, feed_server, webhook_receiver, {"cn": "/cn", "tw": "/tw"}, feeds=["tw"]
    )
    once(config)
    assert titles(webhook_receiver) == ["[china-russia] 中俄 B"]


def test_a_rule_limited_to_a_feed_applies_to_an_update_another_feed_brings(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    url = "https://www.rfi.fr/cn/summit"
    feed_server.set_feed("/cn", rss_feed([FeedItem("峰会", url, "", T0)]))
    feed_server.set_feed("/tw", rss_feed([FeedItem("无关", "https://x.org/1", "", T0)]))
    feed_server.set_feed("/hk", rss_feed([FeedItem("峰会", url, "", T0)]))
    paths = {"cn": "/cn", "tw": "/tw", "hk": "/hk"}
    config = setup(tmp_path, feed_server, webhook_receiver, paths, feeds=["cn"])
    assert once(config).delivery.sent == 0
    # tw carries the story too, retitled: the rule limited to cn now matches an item
    # seen in cn (which answers 304), and alerts once, naming every feed that carries it.
    feed_server.set_feed("/tw", rss_feed([FeedItem("中俄峰会", url, "", T0 + 60_000)]))
    report = once(config)
    assert (report.ingest.updated, report.delivery.sent) == (1, 1)
    [alert] = webhook_receiver.received
    assert alert.json["title"] == "[china-russia] 中俄峰会"
    assert all(f in alert.json["message"] for f in ("cn", "hk", "tw"))


def test_failed_delivery_is_retried_not_lost(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("中俄", "https://x.org/a", "", T0)]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    webhook_receiver.fail_next(1, status=500)
    report = once(config)
    assert report.delivery.failed == 1 and webhook_receiver.received == []
    # The retry waits for its back-off (0.2 s in the test config), then goes out.
    import time

    time.sleep(0.5)
    assert once(config).delivery.sent == 1
    assert titles(webhook_receiver) == ["[china-russia] 中俄"]


def test_poll_feed_takes_its_times_from_the_clock(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("中俄", "https://x.org/a", "", T0)]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    clock = FakeClock(start_ms=T0)
    parts = build(load_config(config), clock=clock)
    try:
        [row] = parts.store.feeds.claim_due(parts.owner, clock.now_ms(), 1, 60_000, ["cn"])
        result = poll_feed(parts, parts.runtime, row, clock.now_ms())
        assert result.outcome is PollOutcome.OK and result.stats.new == 1
        [stored] = parts.store.readouts.feed_rows()
        # interval 1 s, no jitter: the next poll is a second after the fake now.
        assert (stored.last_poll_ms, stored.next_poll_ms) == (T0, T0 + 1000)
    finally:
        parts.close()


def test_a_lone_surrogate_reference_costs_one_character_not_the_feed(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    bad = FeedItem("", "https://x.org/bad", "", T0, raw_title_xml="中俄 x&#xD800;y")
    good = FeedItem("中俄 good", "https://x.org/good", "", T0)
    feed_server.set_feed("/cn", rss_feed([bad, good]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    [result] = once(config).results
    assert result.outcome == PollOutcome.OK_WITH_WARNINGS and result.stats.new == 2
    assert titles(webhook_receiver) == ["[china-russia] 中俄 good", "[china-russia] 中俄 x\ufffdy"]


def test_an_unexpected_error_in_a_poll_is_a_failure_of_the_feed(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed("/cn", rss_feed([FeedItem("中俄", "https://x.org/a", "", T0)]))
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    clock = FakeClock(start_ms=T0)
    parts = build(load_config(config), clock=clock)

    def broken_parser(*_args: Any, **_kwargs: Any) -> Any:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    parts.parser = broken_parser
    try:
        for failures in (1, 2):
            [row] = parts.store.feeds.claim_due(
                parts.owner, clock.now_ms(), 1, 60_000, ["cn"], due_ms=2**62
            )
            result = poll_feed(parts, parts.runtime, row, clock.now_ms())
            assert result.outcome is PollOutcome.ERROR
            [stored] = parts.store.readouts.feed_rows()
            assert stored.last_outcome == "error" and stored.failures == failures
            assert stored.last_poll_ms == T0
            assert stored.last_error is not None and "UnicodeEncodeError" in stored.last_error
            # Backed off (interval 1 s): the second failure waits longer than the first.
            assert stored.next_poll_ms >= T0 + 1000 * failures
    finally:
        parts.close()
    assert "UnicodeEncodeError" in status_json(config)["feeds"][0]["error"]


def test_an_undated_entry_keeps_its_first_seen_time_and_alerts_once(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    def serve(date: str = "") -> None:
        undated = (
            f"<item><title>中俄 undated</title><link>https://x.org/u</link>{date}"
            "<description>x</description></item>"
        )
        # No ETag, no Last-Modified: every poll gets the whole body again.
        feed_server.set_feed("/cn", rss_feed([undated]), etag=False, last_modified=False)

    serve()
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"}, on_update="always")
    clock = FakeClock(start_ms=T0)

    def poll() -> OnceReport:
        clock.advance(60)
        return Daemon.open(str(config), clock=clock).once()

    assert poll().ingest.new == 1
    for _ in range(3):
        report = poll()
        assert (report.ingest.updated, report.ingest.repeats) == (0, 1)
    assert titles(webhook_receiver) == ["[china-russia] 中俄 undated"]
    parts = build(load_config(config), clock=clock)
    try:
        [stored] = parts.store.items.iter_stored()
        assert stored.item.published_ms == T0 + 60_000  # the first poll's time
    finally:
        parts.close()
    # A date that appears is an update (on_update: always alerts again); then it holds.
    serve("<pubDate>Tue, 26 Sep 2023 09:15:01 GMT</pubDate>")
    assert poll().ingest.updated == 1
    assert poll().ingest.updated == 0
    assert len(webhook_receiver.received) == 2


def _rss(items: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>{items}</channel></rss>'
    )


def test_malformed_urls_in_a_feed_spare_its_good_items(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    # One entry whose guid is no URL (feedparser's item_guid_isPermaLink_ValueError.xml)
    # used to fail the whole poll with "ValueError: Invalid IPv6 URL".
    body = _rss(
        "<item><title>中俄 good</title><link>https://www.rfi.fr/cn/good</link></item>"
        '<item><title>中俄 bad guid</title><guid isPermaLink="true">http://example.c[o.test/'
        "</guid></item>"
        "<item><title>中俄 bad link</title><link>http://[::1/broken</link></item>"
        '<item xml:base="http://[bad/"><title>中俄 bad base</title><link>story/9</link>'
        '<enclosure url="http://[bad/a.mp3" type="audio/mpeg" length="1"/></item>'
    )
    # Moved: relative links resolve against the URL after the redirect.
    feed_server.set_feed("/new/rss", body)
    feed_server.set_redirect("/cn", "/new/rss")
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    report = once(config)
    assert [r.outcome for r in report.results] == ["ok-with-warnings"]
    assert report.ingest.new == 3  # the bad link without an id is skipped
    received = {r.json["title"]: r.json["message"] for r in webhook_receiver.received}
    assert set(received) == {
        "[china-russia] 中俄 good",
        "[china-russia] 中俄 bad guid",
        "[china-russia] 中俄 bad base",
    }
    assert "https://www.rfi.fr/cn/good" in received["[china-russia] 中俄 good"]
    assert feed_server.url("/new/story/9") in received["[china-russia] 中俄 bad base"]


def test_relative_links_resolve_against_content_location(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed(
        "/cn",
        _rss("<item><title>中俄 relative</title><link>20230322-a</link></item>"),
        headers={"Content-Location": "https://www.rfi.fr/cn/"},
    )
    config = setup(tmp_path, feed_server, webhook_receiver, {"cn": "/cn"})
    once(config)
    [alert] = webhook_receiver.received
    assert "https://www.rfi.fr/cn/20230322-a" in alert.json["message"]
