"""Updates per rule (on_update), cross-edition dedupe (RFI /cn and /tw), retention, and
migration 0003 — on the store contract (SQLite and PostgreSQL) and through whole polls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text

from monitor.cli import main
from monitor.daemon import Daemon
from monitor.items import title_key
from monitor.store import Store, migrate
from monitor.store.schema import alerts, items
from monitor.types import Item, MatchingFunctions, RuleMatch, RuleOptions
from tests.daemon import no_feed_config, write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed
from tests.support.factories import item
from tests.support.schema import database_at

T0 = 1_700_000_000_000
DAY = 86_400_000


def match_words(it: Item, feeds: Collection[str]) -> list[RuleMatch]:
    """Every rule whose name occurs in the title matches (rule names are Chinese words)."""
    return [RuleMatch(rule, (rule,)) for rule in ("乌克兰", "普京") if rule in it.title]


def mail(rule: str) -> list[str]:
    return ["mail"]


def words(options: Callable[[str], RuleOptions] | None = None) -> MatchingFunctions:
    """Rules named after the words they match, alerting by mail, with ``options``."""
    if options is None:
        return MatchingFunctions(match_words, mail)
    return MatchingFunctions(match_words, mail, options)


def alert_rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(alerts).order_by(alerts.c.id)).mappings()]


# -- on_update -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy,alerts_per_step",
    [
        ("ignore", [1, 0, 0]),  # the first version alerts; no update ever does
        ("rematch", [1, 0, 0]),  # the rule matched already: updates stay quiet
        ("always", [1, 1, 1]),  # every update that still matches alerts again
    ],
)
def test_on_update_policies(store: Store, policy: str, alerts_per_step: list[int]) -> None:
    policies = {"乌克兰": RuleOptions(on_update=policy)}
    url = "https://www.rfi.fr/cn/x"
    got, sent = [], []
    for step in range(3):
        version = item(url, T0 + step * 60_000, f"乌克兰 第{step}版")
        stats = store.items.ingest(
            "cn", [version], T0 + step, words(lambda r: policies.get(r, RuleOptions()))
        )
        got.append(stats.alerts)
        for a in store.outbox.lease("w", T0 + 10, 10, 1000, ["mail"]):
            sent.append((a.revision, a.item.title))
            store.outbox.mark_sent([a.id], "w", T0 + 11)
    assert got == alerts_per_step
    [row] = alert_rows(store)  # 'always' re-arms the one row of (rule, item, channel)
    if policy == "always":
        assert sent == [(0, "乌克兰 第0版"), (1, "乌克兰 第1版"), (2, "乌克兰 第2版")]
        assert (row["status"], row["revision"], row["created_ms"]) == ("sent", 2, T0 + 2)
    else:
        assert sent == [(0, "乌克兰 第0版")] and row["revision"] == 0


def test_always_refreshes_an_alert_still_waiting_instead_of_adding_one(store: Store) -> None:
    always = RuleOptions(on_update="always")
    url = "https://www.rfi.fr/cn/w"
    store.items.ingest("cn", [item(url, title="乌克兰 一")], T0, words(lambda r: always))
    hit = RuleMatch("乌克兰", ("乌克兰",), "…乌克兰 二…")
    upd = store.items.ingest(
        "cn",
        [item(url, T0 + 60_000, "乌克兰 二")],
        T0 + 1,
        MatchingFunctions(lambda it, f: [hit], mail, lambda r: always),
    )
    assert upd.alerts == 0
    [row] = alert_rows(store)
    assert (row["status"], row["revision"], row["snippet"]) == ("pending", 0, "…乌克兰 二…")
    [leased] = store.outbox.lease("w", T0 + 10, 10, 1000, ["mail"])
    assert leased.item.title == "乌克兰 二"  # sent once, with the updated item


def test_ignore_records_a_newly_matching_update_without_alerting(store: Store) -> None:
    ignore = {"乌克兰": RuleOptions(on_update="ignore")}
    url = "https://www.rfi.fr/cn/y"
    store.items.ingest(
        "cn", [item(url, title="法国")], T0, words(lambda r: ignore.get(r, RuleOptions()))
    )
    upd = store.items.ingest(
        "cn",
        [item(url, T0 + 60_000, "乌克兰 普京")],
        T0 + 1,
        words(lambda r: ignore.get(r, RuleOptions())),
    )
    assert (upd.matched, upd.alerts) == (2, 1)  # 普京 (rematch) alerts; 乌克兰 is recorded
    assert [r["rule"] for r in alert_rows(store)] == ["普京"]
    # Recorded: seen in another feed later, it still does not alert for 乌克兰.
    again = store.items.ingest(
        "tw",
        [item(url, T0 + 60_000, "乌克兰 普京", "tw")],
        T0 + 2,
        words(lambda r: ignore.get(r, RuleOptions())),
    )
    assert again.alerts == 0


def test_always_realerts_through_a_whole_poll(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    url = "https://www.rfi.fr/cn/update"
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/a")]}},
        rules=[{"name": "ukraine", "any": ["乌克兰"], "notify": ["hook"], "on_update": "always"}],
    )
    for n in range(2):
        feed_server.set_feed("/cn", rss_feed([FeedItem(f"乌克兰 v{n}", url, "", T0 + n * 60_000)]))
        Daemon.open(str(config)).once()
    assert [r.json["title"] for r in webhook_receiver.received] == [
        "[ukraine] 乌克兰 v0",
        "[ukraine] (updated) 乌克兰 v1",
    ]


# -- cross-edition ---------------------------------------------------------------------------

CN = FeedItem(
    "中俄峰会在莫斯科举行 普京会见习近平",
    "https://www.rfi.fr/cn/中国/20240516-summit",
    "<p>中俄关系</p>",
    T0,
)
TW = FeedItem(
    "中俄峰會在莫斯科舉行 普京會見習近平",
    "https://www.rfi.fr/tw/中國/20240516-summit",
    "<p>中俄關係</p>",
    T0 + 120_000,
)


def edition_config(
    tmp_path: Path, feed_server: FeedServer, hook: WebhookReceiver, cross: object
) -> Path:
    rule: dict[str, Any] = {"name": "china-russia", "any": ["中俄"], "notify": ["hook"]}
    if cross is not None:
        rule["cross_edition"] = cross
    return write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[
            {"id": "rfi-cn", "title": "RFI 简体", "url": feed_server.url("/cn"), "backlog": "all"},
            {"id": "rfi-tw", "title": "RFI 繁體", "url": feed_server.url("/tw"), "backlog": "all"},
        ],
        channels={"hook": {"urls": [hook.apprise_url("/a")]}},
        rules=[rule],
    )


def test_title_key_folds_scripts_punctuation_and_case() -> None:
    assert title_key(CN.title) == title_key(TW.title) == "中俄峰会在莫斯科举行普京会见习近平"
    assert title_key("示威「嗌咪」拉低口罩") == title_key("示威“嗌咪”拉低口罩")
    assert title_key("ＡＢＣ News：Ｇ７") == title_key("abc news: g7") == "abcnewsg7"
    assert title_key("快讯") is None and title_key("") is None


@pytest.mark.parametrize(
    "cross,expected",
    [
        ({"hold": 0}, 1),  # one alert naming both links
        (None, 2),  # not opted in: one alert per edition
    ],
)
def test_cn_and_tw_editions_of_one_story(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    cross: object,
    expected: int,
) -> None:
    feed_server.set_feed("/cn", rss_feed([CN]))
    feed_server.set_feed("/tw", rss_feed([TW]))
    report = Daemon.open(str(edition_config(tmp_path, feed_server, webhook_receiver, cross))).once()
    assert report.ingest.new == 2 and report.delivery.sent == expected
    got = webhook_receiver.received
    assert len(got) == expected
    if expected == 1:
        message = got[0].json["message"]
        assert CN.link in message and TW.link in message
        assert "RFI 简体" in message and "RFI 繁體" in message


def test_an_edition_polled_later_joins_the_held_alert(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    config = edition_config(tmp_path, feed_server, webhook_receiver, {"hold": "1s"})
    feed_server.set_feed("/cn", rss_feed([CN]))
    feed_server.set_feed("/tw", rss_feed([]))
    first = Daemon.open(str(config)).once()
    assert first.ingest.alerts == 1 and first.delivery.sent == 0  # held
    feed_server.set_feed("/tw", rss_feed([TW]))
    second = Daemon.open(str(config)).once()
    assert (second.ingest.new, second.ingest.alerts) == (1, 0)
    time.sleep(1.1)  # the hold ends
    assert Daemon.open(str(config)).once().delivery.sent == 1
    [alert] = webhook_receiver.received
    assert CN.link in alert.json["message"] and TW.link in alert.json["message"]


def test_an_edition_after_the_alert_was_sent_gives_no_second_alert(store: Store) -> None:
    cross = RuleOptions(edition_window_ms=DAY)
    cn = item("https://www.rfi.fr/cn/s", T0, "中俄峰会举行 普京")
    tw = item("https://www.rfi.fr/tw/s", T0 + 3_600_000, "中俄峰會舉行 普京", "tw")
    assert store.items.ingest("cn", [cn], T0, words(lambda r: cross)).alerts == 1
    [sent] = store.outbox.lease("w", T0, 10, 1000, ["mail"])
    store.outbox.mark_sent([sent.id], "w", T0 + 1)
    later = store.items.ingest("tw", [tw], T0 + 5, words(lambda r: cross))
    assert (later.new, later.matched, later.alerts) == (1, 1, 0)
    # Redelivered or not, the alert now names both editions.
    eds = store.outbox.editions(sent.item_id, "普京", DAY)
    assert [(e.url, e.feeds) for e in eds] == [(cn.url, ("cn",)), (tw.url, ("tw",))]


def test_what_is_not_another_edition(store: Store) -> None:
    cross = RuleOptions(edition_window_ms=DAY)
    base = item("https://www.rfi.fr/cn/a", T0, "中俄峰会举行 普京")
    store.items.ingest("cn", [base], T0, words(lambda r: cross))
    cases = [
        ("cn", item("https://www.rfi.fr/cn/b", T0 + 60_000, "中俄峰会举行 普京")),  # same feed
        ("tw", item("https://www.rfi.fr/tw/c", T0 + 2 * DAY, "中俄峰會舉行 普京", "tw")),  # late
        ("tw", item("https://www.rfi.fr/tw/d", T0, "中俄另一场峰会 普京", "tw")),  # other title
    ]
    for feed, it in cases:
        assert store.items.ingest(feed, [it], T0 + 1, words(lambda r: cross)).alerts == 1, it.url


def test_editions_arriving_at_once_on_postgresql_give_one_alert(db_url: str) -> None:
    """Two processes storing /cn and /tw at the same moment: the advisory lock per title
    key makes the second see the first's match (SQLite has one writer anyway)."""
    cross = RuleOptions(edition_window_ms=DAY)
    stores = [Store(db_url), Store(db_url)]
    for round_no in range(5):
        title = f"中俄峰会举行 第{round_no}轮 普京"
        pairs = [
            ("cn", item(f"https://www.rfi.fr/cn/{round_no}", title=title)),
            ("tw", item(f"https://www.rfi.fr/tw/{round_no}", title=title, feed="tw")),
        ]
        barrier = threading.Barrier(2)
        results: list[int] = []

        def run(
            s: Store, feed: str, it: Item, barrier: threading.Barrier, results: list[int]
        ) -> None:
            barrier.wait()
            results.append(s.items.ingest(feed, [it], T0, words(lambda r: cross)).alerts)

        threads = [
            threading.Thread(target=run, args=(s, f, it, barrier, results))
            for s, (f, it) in zip(stores, pairs, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [0, 1], round_no
    for s in stores:
        s.close()


# -- retention -------------------------------------------------------------------------------


def test_prune_empties_bodies_then_deletes_keys_but_never_a_waiting_alert(store: Store) -> None:
    now = T0 + 500 * DAY
    old = [
        item(f"https://www.rfi.fr/cn/{i}", T0 + i * 100 * DAY, f"普京 {i}", content="<p>正文</p>")
        for i in range(5)
    ]  # 0, 100, 200, 300, 400 days
    store.items.ingest("cn", old, T0, words())
    leased = store.outbox.lease("w", now, 10, 1000, ["mail"])
    for a in leased:
        if a.item.url != old[0].url:  # the oldest item's alert is still waiting
            store.outbox.mark_sent([a.id], "w", now)
    stats = store.history.prune(
        now, bodies_before_ms=now - 250 * DAY, keys_before_ms=now - 350 * DAY
    )
    # 0 days: too old even for its key, but its alert waits: kept whole. 100 days: deleted.
    # 200 days: body emptied. 300 and 400: untouched.
    assert (stats.deleted, stats.emptied, stats.kept) == (1, 1, 1)
    left = {s.item.url: s.item for s in store.items.iter_stored()}
    assert sorted(left) == sorted(it.url for it in old if it is not old[1])
    assert left[old[0].url].content == "<p>正文</p>" and left[old[2].url].content == ""
    assert left[old[2].url].title == "普京 2"
    [waiting] = store.outbox.lease("w2", now + 2000, 10, 1000, ["mail"])  # w's lease is over
    assert waiting.item.url == old[0].url and waiting.item.content == "<p>正文</p>"
    # The emptied item is still known: seen again in its feed, it is a repeat.
    again = store.items.ingest("cn", [old[2]], now, words())
    assert (again.repeats, again.alerts) == (1, 0)
    assert store.history.prune(now, now - 250 * DAY, now - 350 * DAY).emptied == 0  # idempotent


def test_an_item_older_than_the_kept_keys_never_alerts(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = int(time.time() * 1000)
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/a")]}},
        rules=[{"name": "putin", "any": ["普京"], "notify": ["hook"]}],
        retention={"items": "30d", "keys": "60d"},
    )
    ancient = FeedItem("普京 旧闻", "https://www.rfi.fr/cn/ancient", "<p>正文</p>", now - 90 * DAY)
    middle = FeedItem("普京 上月", "https://www.rfi.fr/cn/middle", "<p>正文</p>", now - 45 * DAY)
    fresh = FeedItem("普京 今天", "https://www.rfi.fr/cn/fresh", "<p>正文</p>", now - 1000)
    feed_server.set_feed("/cn", rss_feed([ancient, middle, fresh]))
    Daemon.open(str(config)).once()
    # Older than retention.keys: its key may have been pruned, so it is recorded silently.
    assert sorted(r.json["title"] for r in webhook_receiver.received) == [
        "[putin] 普京 上月",
        "[putin] 普京 今天",
    ]
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    Daemon.open(str(config)).prune()  # what the daemon runs daily
    assert sorted((s.item.title, s.item.summary) for s in store.items.iter_stored()) == [
        ("普京 上月", ""),
        ("普京 今天", "<p>正文</p>"),
    ]
    store.close()
    assert main(["prune", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "0 item bodies emptied, 0 items deleted\n"
    Daemon.open(str(config)).once()  # the feed still lists all three
    assert len(webhook_receiver.received) == 2


def test_pruned_keys_a_feed_still_lists_do_not_alert_again(store: Store) -> None:
    now = T0 + 500 * DAY
    old = [item(f"https://www.rfi.fr/cn/{i}", T0 + i * DAY, f"普京 {i}") for i in range(3)]
    assert store.items.ingest("cn", old, T0, words()).alerts == 3
    store.outbox.mark_sent(
        [a.id for a in store.outbox.lease("w", now, 10, 1000, ["mail"])], "w", now
    )
    assert store.history.prune(now, None, now - 400 * DAY).deleted == 3
    # An earlier horizon later (a shorter --keys) never moves the recorded one back.
    assert store.history.prune(now, None, T0 - DAY).deleted == 0
    newer = item("https://www.rfi.fr/cn/new", now, "普京 新")
    stats = store.items.ingest("cn", [*old, newer], now, words())
    assert (stats.new, stats.alerts) == (4, 1)  # stored again, recorded, not alerted
    assert store.items.ingest("cn", [*old, newer], now + 1, words()).alerts == 0


def test_the_pruned_keys_horizon_is_read_only_for_a_new_item_that_may_alert(
    store: Store,
) -> None:
    read: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM meta" in statement:
            read.append(statement)

    now = T0 + 500 * DAY
    store.history.prune(now, None, now - 400 * DAY)  # a horizon is recorded
    event.listen(store.engine, "before_cursor_execute", count)
    quiet = [item(f"https://www.rfi.fr/cn/q{i}", now, f"天气 {i}") for i in range(3)]
    assert store.items.ingest("cn", quiet, now, words()).new == 3
    assert read == []  # new items that match no rule: nothing to hold back
    fresh = item("https://www.rfi.fr/cn/p", now, "普京 新")
    stats = store.items.ingest("cn", [fresh], now, words())
    assert (stats.new, stats.alerts, len(read)) == (1, 1, 1)


def test_prune_keys_from_the_command_line_then_a_poll_gives_no_repeat_alerts(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = int(time.time() * 1000)
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/a")]}},
        rules=[{"name": "putin", "any": ["普京"], "notify": ["hook"]}],
    )  # no retention set
    stories = [
        FeedItem(f"普京 {i}", f"https://www.rfi.fr/cn/{i}", "", now - (500 + i) * DAY)
        for i in range(3)
    ]
    stories.append(FeedItem("普京 今天", "https://www.rfi.fr/cn/today", "", now - 1000))
    feed_server.set_feed("/cn", rss_feed(stories), etag=False, last_modified=False)
    Daemon.open(str(config)).once()
    assert len(webhook_receiver.received) == 4
    assert main(["prune", "-c", str(config), "--keys", "400d"]) == 0
    assert capsys.readouterr().out == "0 item bodies emptied, 3 items deleted\n"
    report = Daemon.open(str(config)).once()  # the feed still lists all four
    assert (report.ingest.new, report.ingest.alerts) == (3, 0)
    assert len(webhook_receiver.received) == 4


def test_prune_command_without_retention_and_with_bad_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = no_feed_config(tmp_path)
    assert main(["prune", "-c", str(config)]) == 0
    assert capsys.readouterr().out.startswith("nothing to prune")
    assert main(["prune", "-c", str(config), "--items", "90d", "--keys", "30d"]) == 2
    assert capsys.readouterr().err == (
        "error: --items/--keys (retention): retention.keys must be at least retention.items: "
        "a key deleted before its body would let the item alert again\n"
    )
    assert main(["prune", "-c", str(config), "--items", "soon"]) == 2
    assert capsys.readouterr().err.startswith("error: --items: expected a duration")
    assert main(["prune", "-c", str(config), "--keys", "400d"]) == 0
    assert capsys.readouterr().out == "0 item bodies emptied, 0 items deleted\n"


def test_retention_config_errors_name_file_and_line(tmp_path: Path) -> None:
    from monitor.config import load_config
    from monitor.errors import ConfigError

    path = tmp_path / "m.yaml"
    path.write_text("rules: []\nretention:\n  items: 90d\n  keys: 30d\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:2 retention: retention.keys must be at least")


# -- migration 0003 --------------------------------------------------------------------------


def test_upgrade_to_0003_keeps_everything_and_fills_title_keys(db_url: str) -> None:
    database_at(
        db_url,
        "0002",
        "INSERT INTO items (id, key, url, title, summary, content, author, categories, "
        "published_ms, first_seen_ms, updated_ms) VALUES (1, 'https://x.org/a', "
        "'https://x.org/a', '中俄峰會舉行', '', 'b', '', '[]', 1, 1, 1)",
        "INSERT INTO item_feeds VALUES (1, 'tw', 1)",
        "INSERT INTO matches VALUES (1, 'r', 1, true)",
        "INSERT INTO alerts (rule, item_id, channel, keywords, snippet, status, attempts, "
        "created_ms, next_attempt_ms) VALUES ('r', 1, 'mail', '[]', '', 'sent', 1, 1, 1)",
    )
    store = Store(db_url)
    assert store.schema_revision()[0] == migrate.head_revision()
    with store.engine.connect() as conn:
        row = conn.execute(select(items.c.title_key, items.c.imported, items.c.pruned_ms)).one()
        assert tuple(row) == ("中俄峰会举行", False, None)
        assert conn.execute(select(alerts.c.revision, alerts.c.status)).one() == (0, "sent")
        assert conn.execute(text("SELECT count(*) FROM item_feeds")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM matches")).scalar() == 1
        migrate.upgrade(conn, "head")  # a no-op at head
    store.close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        from alembic import command

        command.downgrade(migrate.alembic_config(conn), "0002")
        assert conn.execute(text("SELECT count(*) FROM alerts")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM item_feeds")).scalar() == 1
    engine.dispose()


def test_a_new_edition_finds_an_item_stored_before_0003(db_url: str) -> None:
    database_at(
        db_url,
        "0002",
        "INSERT INTO items (key, url, title, summary, content, author, categories, "
        "published_ms, first_seen_ms, updated_ms) VALUES ('https://www.rfi.fr/cn/s', "
        f"'https://www.rfi.fr/cn/s', '中俄峰会举行 普京', '', '', '', '[]', {T0}, 1, 1)",
        "INSERT INTO item_feeds SELECT id, 'cn', 1 FROM items",
        "INSERT INTO matches SELECT id, '普京', 1, true FROM items",
    )
    store = Store(db_url)
    tw = item("https://www.rfi.fr/tw/s", T0 + 1000, "中俄峰會舉行 普京", "tw")
    stats = store.items.ingest("tw", [tw], T0, words(lambda r: RuleOptions(edition_window_ms=DAY)))
    assert (stats.matched, stats.alerts) == (1, 0)
    store.close()


def test_updated_item_gets_its_body_back_after_pruning(store: Store) -> None:
    url = "https://www.rfi.fr/cn/p"
    store.items.ingest("cn", [item(url, T0, "x", content="<p>a</p>")], T0, words())
    store.history.prune(T0 + DAY, bodies_before_ms=T0 + 1, keys_before_ms=None)
    store.items.ingest(
        "cn", [replace(item(url, T0 + 60_000, "x", content="<p>b</p>"))], T0, words()
    )
    [row] = list(store.history.export_rows())
    assert (row.pruned, row.item.content) == (False, "<p>b</p>")
