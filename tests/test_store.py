"""The storage contract, on SQLite and PostgreSQL: dedupe, updates, the outbox."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from monitor.match.engine import compile_rules
from monitor.store import Store
from monitor.store.schema import item_feeds
from monitor.types import FeedSpec, Item, MatchingFunctions, RuleMatch, RuleSpec
from tests.support.factories import T0, item, route


def match_all(item: Item, feeds: Collection[str]) -> list[RuleMatch]:
    """Rule 'all' matches everything; rule 'tw-only' applies only to feed tw."""
    out = [RuleMatch("all", ("中俄",))]
    if "tw" in feeds:
        out.append(RuleMatch("tw-only", ("中俄",)))
    return out


def match_title(word: str):
    def match(item: Item, feeds: Collection[str]) -> list[RuleMatch]:
        return [RuleMatch("word", (word,))] if word in item.title else []

    return match


channels = route({"all": ["mail", "chat"]}, default=["mail"])


def test_repeat_is_ignored_and_shared_timestamps_are_all_kept(store: Store) -> None:
    batch = [item(f"https://www.rfi.fr/cn/a{i}") for i in range(5)]  # one timestamp for all
    stats = store.items.ingest("cn", batch, T0, MatchingFunctions(match_all, channels))
    assert (stats.new, stats.alerts) == (5, 10)
    again = store.items.ingest("cn", batch, T0 + 1000, MatchingFunctions(match_all, channels))
    assert (again.new, again.repeats, again.alerts) == (0, 5, 0)
    assert store.readouts.counts() == {"items": 5, "alerts": 10}


def test_url_variants_are_one_item_and_one_alert(store: Store) -> None:
    urls = [
        "https://www.rfi.fr/cn/%E4%B8%AD/x",
        "http://www.rfi.fr/cn/中/x",
        "https://www.rfi.fr//cn/中/x",
    ]
    for u in urls:
        store.items.ingest("cn", [item(u)], T0, MatchingFunctions(match_all, channels))
    assert store.readouts.counts() == {"items": 1, "alerts": 2}


def test_update_alerts_only_for_rules_that_newly_match(store: Store) -> None:
    url = "https://www.rfi.fr/cn/x"
    first = store.items.ingest(
        "cn", [item(url, title="无关")], T0, MatchingFunctions(match_title("乌克兰"), channels)
    )
    assert (first.new, first.alerts) == (1, 0)
    upd = store.items.ingest(
        "cn",
        [item(url, T0 + 60_000, "乌克兰战事")],
        T0,
        MatchingFunctions(match_title("乌克兰"), channels),
    )
    assert (upd.updated, upd.alerts) == (1, 1)
    # Updated again, still matching: no second alert for the same rule.
    again = store.items.ingest(
        "cn",
        [item(url, T0 + 120_000, "乌克兰战事更新")],
        T0,
        MatchingFunctions(match_title("乌克兰"), channels),
    )
    assert (again.updated, again.alerts) == (1, 0)
    stored = list(store.items.iter_stored())
    assert stored[0].item.title == "乌克兰战事更新"


# The store reads every feed an item was seen in, or (as the daemon's rules tell it) only
# the feeds that rules limited to some feeds name: the same outcome either way.
READ_FEEDS = pytest.mark.parametrize("named", [None, ("tw",)], ids=["every-feed", "named-feeds"])


@READ_FEEDS
def test_item_in_two_feeds_is_one_item_one_alert_naming_both(
    store: Store, named: tuple[str, ...] | None
) -> None:
    url = "https://www.rfi.fr/cn/x"
    rules = MatchingFunctions(match_all, channels, feeds_named=lambda: named)
    store.items.ingest("cn", [item(url)], T0, rules)
    stats = store.items.ingest("tw", [item(url.replace("https", "http"), feed="tw")], T0 + 5, rules)
    # The item is a repeat; only the rule limited to feed tw newly applies.
    assert (stats.new, stats.repeats, stats.alerts) == (0, 1, 1)
    leased = store.outbox.lease("w1", T0 + 10, 100, 60_000, ["mail", "chat"])
    assert {a.rule for a in leased} == {"all", "tw-only"}
    assert all(a.feeds == ("cn", "tw") for a in leased)


def real_rules(*specs: RuleSpec) -> MatchingFunctions:
    """Compiled rules as the daemon gives them to the store, feeds named and all."""
    rules = compile_rules(specs)
    return MatchingFunctions(rules.match, channels, feeds_named=lambda: rules.feeds_named)


def item_feed_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(item_feeds)).scalar_one())


def test_an_item_listed_by_many_feeds_records_each_once_and_polls_again_add_nothing(
    store: Store,
) -> None:
    rules = real_rules(
        RuleSpec("all", any=("中俄",)),
        RuleSpec("f07-only", any=("中俄",), feeds=("f07",)),
        RuleSpec("elsewhere", any=("中俄",), feeds=("nowhere",)),
    )
    urls = [f"https://www.rfi.fr/cn/a{i}" for i in range(3)]
    feeds = [f"f{n:02d}" for n in range(12)]
    for n, f in enumerate(feeds):
        stats = store.items.ingest(f, [item(u, feed=f) for u in urls], T0 + n, rules)
        assert (stats.new, stats.repeats) == ((3, 0) if n == 0 else (0, 3))
        # 'all' alerts once per item (2 channels) in the first feed, 'f07-only' in f07.
        assert stats.alerts == {0: 6, 7: 3}.get(n, 0), f
    assert item_feed_rows(store) == 3 * len(feeds)

    for n, f in enumerate(feeds):
        again = store.items.ingest(f, [item(u, feed=f) for u in urls], T0 + 100 + n, rules)
        assert (again.new, again.repeats, again.matched, again.alerts) == (0, 3, 0, 0)
    assert item_feed_rows(store) == 3 * len(feeds)
    # Every feed is recorded, first sighting first, and the alerts name them all.
    assert [s.feeds for s in store.items.iter_stored()] == [tuple(feeds)] * 3
    leased = store.outbox.lease("w1", T0 + 1_000, 100, 60_000, ["mail", "chat"])
    assert sorted(a.rule for a in leased) == ["all"] * 6 + ["f07-only"] * 3
    assert all(a.feeds == tuple(feeds) for a in leased)


def test_an_update_in_another_feed_applies_a_rule_limited_to_an_earlier_feed(
    store: Store,
) -> None:
    rules = real_rules(RuleSpec("cn-only", any=("中俄",), feeds=("cn",)))
    url = "https://www.rfi.fr/cn/x"
    assert store.items.ingest("cn", [item(url, title="无关")], T0, rules).alerts == 0
    for n in range(5):  # feeds the rule does not name carry it too
        store.items.ingest(f"other{n}", [item(url, title="无关", feed=f"other{n}")], T0, rules)
    # tw brings an update that the rule matches: the item was seen in cn, so it applies.
    stats = store.items.ingest("tw", [item(url, T0 + 60_000, "中俄关系", "tw")], T0 + 1, rules)
    assert (stats.updated, stats.alerts) == (1, 1)
    leased = store.outbox.lease("w1", T0 + 10, 100, 60_000, ["mail"])
    assert [(a.rule, a.feeds) for a in leased] == [
        ("cn-only", ("cn", "other0", "other1", "other2", "other3", "other4", "tw"))
    ]


def test_a_rule_limited_to_more_feeds_than_one_lookup_takes_still_sees_them(
    store: Store,
) -> None:
    named = tuple(f"f{n:04d}" for n in range(1200))  # more than one statement's worth
    rules = real_rules(RuleSpec("many", any=("中俄",), feeds=named))
    url = "https://www.rfi.fr/cn/x"
    store.items.ingest("f1100", [item(url, title="无关", feed="f1100")], T0, rules)
    stats = store.items.ingest("tw", [item(url, T0 + 60_000, "中俄关系", "tw")], T0 + 1, rules)
    assert (stats.updated, stats.alerts) == (1, 1)


def test_backlog_floor_records_matches_without_alerting(store: Store) -> None:
    old = item("https://x.org/old", T0)
    new = item("https://x.org/new", T0 + 3_600_000)
    stats = store.items.ingest(
        "cn", [old, new], T0, MatchingFunctions(match_all, channels), alert_min_published_ms=T0 + 1
    )
    assert (stats.new, stats.matched, stats.alerts) == (2, 2, 2)  # only `new` alerts (2 ch.)
    # A later update of the backlog item does not alert for the rule it matched before.
    stats = store.items.ingest(
        "cn", [item("https://x.org/old", T0 + 5)], T0, MatchingFunctions(match_all, channels)
    )
    assert stats.alerts == 0


def test_leases_are_exclusive_and_expire(store: Store) -> None:
    store.items.ingest("cn", [item("https://x.org/a")], T0, MatchingFunctions(match_all, channels))
    a = store.outbox.lease("w1", T0, 10, 60_000, ["mail", "chat"])
    assert len(a) == 2
    assert store.outbox.lease("w2", T0 + 1, 10, 60_000, ["mail", "chat"]) == []
    b = store.outbox.lease("w2", T0 + 60_001, 10, 60_000, ["mail", "chat"])
    assert {x.id for x in b} == {x.id for x in a}
    # The first owner lost its lease: its late "sent" does not count.
    store.outbox.mark_sent([a[0].id], "w1", T0 + 60_002)
    summary = store.readouts.alert_summary()
    assert summary["mail"]["sent"] + summary["chat"]["sent"] == 0
    for x in b:
        store.outbox.mark_sent([x.id], "w2", T0 + 60_003)
    summary = store.readouts.alert_summary()
    assert summary["mail"]["sent"] == 1 and summary["chat"]["sent"] == 1


def test_failed_alert_retries_then_dies(store: Store) -> None:
    store.items.ingest(
        "cn", [item("https://x.org/a")], T0, MatchingFunctions(match_title("中俄"), channels)
    )
    [a] = store.outbox.lease("w", T0, 10, 60_000, ["mail"])
    store.outbox.mark_failed([a.id], "w", "boom", T0 + 30_000, dead=False)
    assert store.outbox.lease("w", T0 + 1, 10, 60_000, ["mail"]) == []  # backing off
    assert store.readouts.alert_summary()["mail"]["retrying"] == 1
    [a] = store.outbox.lease("w", T0 + 30_000, 10, 60_000, ["mail"])
    assert a.attempts == 1
    store.outbox.mark_failed([a.id], "w", "boom", T0 + 90_000, dead=True)
    assert store.readouts.alert_summary()["mail"]["dead"] == 1
    assert store.outbox.lease("w", T0 + 10**9, 10, 60_000, ["mail"]) == []


def test_feed_schedule_claims_are_leased(store: Store) -> None:
    store.feeds.sync([FeedSpec("cn", "http://x/cn", None, 300)], T0, first_spread_s=0)
    [row] = store.feeds.claim_due("w1", T0, 5, 60_000, ["cn"])
    assert not row.first_poll_done
    assert store.feeds.claim_due("w2", T0, 5, 60_000, ["cn"]) == []
    store.feeds.finish_poll(
        "cn",
        "w1",
        now_ms=T0,
        next_poll_ms=T0 + 300_000,
        outcome="ok",
        error=None,
        status=200,
        failures=0,
        etag='"e1"',
        last_modified="x",
        keep_validators=False,
        first_poll_done=True,
    )
    assert store.feeds.claim_due("w2", T0 + 299_999, 5, 60_000, ["cn"]) == []
    [row] = store.feeds.claim_due("w2", T0 + 300_000, 5, 60_000, ["cn"])
    assert (row.etag, row.first_poll_done) == ('"e1"', True)


@pytest.mark.postgres
def test_a_connection_the_server_dropped_while_idle_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections idle in the pool are pinged when taken again: one the server closed
    (a restart, an idle cut) is replaced, and the next call succeeds."""
    from sqlalchemy import create_engine, text

    from monitor.store import database
    from tests.conftest import postgres_url, reset_postgres

    url = postgres_url()
    reset_postgres(url)
    store = Store(url)
    try:
        store.feeds.sync([FeedSpec("cn", "http://127.0.0.1:9/cn", None, 60)], T0, 0)
        assert store.engine.pool.checkedin() >= 1
        killer = create_engine(url)
        with killer.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        killer.dispose()
        assert killed >= 1
        monkeypatch.setattr(database, "IDLE_PING_S", 0.0)
        [row] = store.feeds.claim_due("w1", T0, 5, 60_000, ["cn"])
        assert row.id == "cn"
    finally:
        store.close()


def test_a_lease_on_sqlite_reads_the_due_alerts_not_the_channels_history(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    batch = [item(f"https://www.rfi.fr/cn/h{i}") for i in range(3)]
    store.items.ingest("cn", batch, T0, MatchingFunctions(match_all, channels))
    picks: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM alerts" in statement and "LIMIT" in statement:
            picks.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", keep)
    leased = store.outbox.lease("w", T0, 2, 60_000, ["mail"])  # one channel, as is common
    assert [(a.id, a.channel) for a in leased] == [(1, "mail"), (3, "mail")]  # oldest first
    ((statement, parameters),) = picks
    with store.engine.connect() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        )
    # Sent alerts pile up in every channel: the pick must not walk them all.
    assert "ix_alerts_due" in plan, plan
    store.close()
