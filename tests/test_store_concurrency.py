"""The storage contract under concurrency, on SQLite and PostgreSQL.

Several ``Store`` objects on one database stand for several daemons: each has its own
engine and connections, and they run in threads at the same moment. On PostgreSQL the
threads meet inside their transactions (a barrier in the match callback, which runs
mid-transaction), so the races below happen on every run rather than now and then.
SQLite serialises writers (``BEGIN IMMEDIATE``), so there the same calls simply queue;
the outcome must be the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from monitor.store import Store
from monitor.store.schema import alerts, feeds, item_feeds, matches
from monitor.types import FeedSpec, IngestStats, Item, MatchingFunctions, RuleMatch
from tests.support.factories import T0, item, route

R = TypeVar("R")
channels = route(default=["mail", "chat"])


@pytest.fixture
def stores(db_url: str) -> Iterator[list[Store]]:
    """Four stores on one database, as four daemons would open it."""
    opened = [Store(db_url) for _ in range(4)]
    yield opened
    for s in opened:
        s.close()


def run_at_once(calls: list[Callable[[], R]]) -> list[R]:
    """Run ``calls`` in parallel threads started together; re-raise the first error."""
    start = threading.Barrier(len(calls))

    def go(call: Callable[[], R]) -> R:
        start.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(go, c) for c in calls]
        return [f.result(timeout=60) for f in futures]


class Meeting:
    """Holds each ingesting thread, inside its transaction, until all have arrived.

    The gate items sort before the items under test, so each transaction has begun and
    written something before any of them touches a shared row. On SQLite the second
    transaction cannot begin while the first waits here, so there is no meeting.
    """

    def __init__(self, store: Store, parties: int) -> None:
        self.barrier = None if store.is_sqlite else threading.Barrier(parties, timeout=10)
        self.met = False

    def arrive(self) -> None:
        if self.barrier is not None:
            self.barrier.wait()
            self.met = True


def gate(feed: str) -> Item:
    # "https://a.example/..." sorts before the "https://www.rfi.fr/..." items under test.
    return item(f"https://a.example/gate-{feed}", feed=feed)


def count(store: Store, table: Any, *where: Any) -> int:
    with store.engine.connect() as conn:
        q = select(func.count()).select_from(table)
        return int(conn.execute(q.where(*where) if where else q).scalar_one())


def test_same_new_items_from_two_feeds_at_once_are_one_item_and_one_alert_each(
    stores: list[Store],
) -> None:
    """Two daemons poll two feeds carrying the same new articles, listed in opposite orders
    (as RFI's /cn and /tw sections do): each article is stored once and alerts once per
    (rule, channel), and neither transaction fails on the unique item key or deadlocks."""
    shared = [f"https://www.rfi.fr/cn/shared-{i:02d}" for i in range(20)]
    meeting = Meeting(stores[0], 2)

    def match(it: Item, seen: Collection[str]) -> list[RuleMatch]:
        if it.key.startswith("https://a.example/"):
            meeting.arrive()
            return []
        return [RuleMatch("china-russia", ("中俄",))]

    def poll(store: Store, feed: str, urls: list[str]) -> IngestStats:
        batch = [gate(feed)] + [item(u, feed=feed) for u in urls]
        return store.items.ingest(feed, batch, T0, MatchingFunctions(match, channels))

    cn, tw = run_at_once(
        [lambda: poll(stores[0], "cn", shared), lambda: poll(stores[1], "tw", shared[::-1])]
    )
    assert meeting.met or stores[0].is_sqlite
    assert cn.new + tw.new == 20 + 2  # every shared article once, plus the two gate items
    assert cn.repeats + tw.repeats == 20  # ... and a repeat in the other feed
    assert cn.alerts + tw.alerts == 20 * 2
    store = stores[2]
    assert store.readouts.counts() == {"items": 22, "alerts": 40}
    assert count(store, item_feeds) == 20 * 2 + 2
    leased = store.outbox.lease("w", T0, 100, 60_000, ["mail", "chat"])
    assert sorted((a.item.url, a.channel) for a in leased) == sorted(
        (u, ch) for u in shared for ch in ("mail", "chat")
    )
    assert all(set(a.feeds) == {"cn", "tw"} for a in leased)


def test_known_item_in_two_more_feeds_at_once_matches_a_scoped_rule_once(
    stores: list[Store],
) -> None:
    """An article already stored from /cn turns up in /tw and /hk in the same instant. A
    rule limited to those two feeds now matches it in both transactions: the match is
    recorded once and alerts once per channel."""
    url = "https://www.rfi.fr/cn/known"
    scoped = {"tw", "hk"}
    meeting = Meeting(stores[0], 2)

    def match(it: Item, seen: Collection[str]) -> list[RuleMatch]:
        if it.key.startswith("https://a.example/"):
            meeting.arrive()
            return []
        return [RuleMatch("tw-hk", ("中俄",))] if scoped & set(seen) else []

    first = stores[0].items.ingest("cn", [item(url)], T0, MatchingFunctions(match, channels))
    assert (first.new, first.alerts) == (1, 0)

    def poll(store: Store, feed: str) -> IngestStats:
        return store.items.ingest(
            feed, [gate(feed), item(url, feed=feed)], T0 + 1000, MatchingFunctions(match, channels)
        )

    tw, hk = run_at_once([lambda: poll(stores[1], "tw"), lambda: poll(stores[2], "hk")])
    assert meeting.met or stores[0].is_sqlite
    assert tw.repeats + hk.repeats == 2
    assert tw.alerts + hk.alerts == 2  # one per channel, from whichever committed first
    assert tw.matched + hk.matched == 1
    store = stores[3]
    assert count(store, matches) == 1
    assert count(store, alerts) == 2
    assert count(store, item_feeds) == 3 + 2  # the article in three feeds, two gate items


def claim_all(store: Store, owner: str, now_ms: int, ids: list[str]) -> list[str]:
    """Claim in small batches until nothing is left, as a daemon's ticks do."""
    got: list[str] = []
    while rows := store.feeds.claim_due(owner, now_ms, 7, 60_000, ids):
        got += [r.id for r in rows]
    return got


def test_concurrent_feed_claims_are_disjoint_and_so_are_takeovers(stores: list[Store]) -> None:
    ids = [f"f{i:03d}" for i in range(200)]
    stores[0].feeds.sync(
        [FeedSpec(i, f"http://127.0.0.1:9/{i}", None, 60) for i in ids], T0, first_spread_s=0
    )
    owners = [f"owner-{n}" for n in range(len(stores))]
    # Round 1: everything is due and free. Round 2: every lease has expired (their owners
    # died mid-poll), so the same feeds are up for takeover, again by all at once.
    for now in (T0, T0 + 60_001):
        claimed = run_at_once(
            [
                (lambda s=s, o=o, t=now: claim_all(s, o, t, ids))
                for s, o in zip(stores, owners, strict=True)
            ]
        )
        flat = [fid for got in claimed for fid in got]
        assert sorted(flat) == ids, "a feed was claimed twice or not at all"
        with stores[0].engine.connect() as conn:
            holder = dict(conn.execute(select(feeds.c.id, feeds.c.lease_owner)).all())
        for owner, got in zip(owners, claimed, strict=True):
            assert all(holder[fid] == owner for fid in got)


def test_claims_take_only_the_feeds_of_the_claimers_config(stores: list[Store]) -> None:
    """Feeds outside a claimer's config are never leased to it, including feeds another
    daemon adds after the claimer first looked at the table; they keep their schedule."""
    a, b = stores[0], stores[1]
    mine = ["a1", "a2"]
    a.feeds.sync(
        [FeedSpec(i, f"http://127.0.0.1:9/{i}", None, 60) for i in mine], T0, first_spread_s=0
    )
    first = a.feeds.claim_due("A", T0, 1, 60_000, mine)
    assert len(first) == 1
    # Another daemon's config adds feeds this store has not seen; they are due before
    # the rest of its own, so its next claim meets them first.
    b.feeds.sync(
        [FeedSpec(i, f"http://127.0.0.1:9/{i}", None, 60) for i in ("b1", "b2")],
        T0,
        first_spread_s=0,
    )
    with a.engine.begin() as conn:
        conn.execute(
            feeds.update().where(feeds.c.id.in_(["b1", "b2"])).values(next_poll_ms=T0 - 5_000)
        )
    second = a.feeds.claim_due("A", T0, 1, 60_000, mine)
    assert sorted(r.id for r in first + second) == mine
    with a.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(feeds))}
    for fid in ("b1", "b2"):
        assert rows[fid].lease_owner is None and rows[fid].next_poll_ms == T0 - 5_000
    assert sorted(r.id for r in b.feeds.claim_due("B", T0, 10, 60_000, ["b1", "b2"])) == [
        "b1",
        "b2",
    ]


def lease_all(store: Store, owner: str, now_ms: int) -> list[int]:
    got: list[int] = []
    while batch := store.outbox.lease(owner, now_ms, 9, 60_000, ["mail"]):
        got += [a.id for a in batch]
    return got


def test_concurrent_alert_leases_are_disjoint_and_so_are_takeovers(stores: list[Store]) -> None:
    def match(it: Item, seen: Collection[str]) -> list[RuleMatch]:
        return [RuleMatch("r", ("中俄",))]

    stats = stores[0].items.ingest(
        "cn",
        [item(f"https://x.org/{i}") for i in range(150)],
        T0,
        MatchingFunctions(match, lambda rule: ["mail"]),
    )
    assert stats.alerts == 150
    owners = [f"owner-{n}" for n in range(len(stores))]
    for now in (T0, T0 + 60_001):  # fresh, then after every lease expired
        leased = run_at_once(
            [
                (lambda s=s, o=o, t=now: lease_all(s, o, t))
                for s, o in zip(stores, owners, strict=True)
            ]
        )
        flat = [aid for got in leased for aid in got]
        assert len(flat) == len(set(flat)) == 150, "an alert was leased twice or not at all"
    # Only the current holder's "sent" counts.
    for s, o, got in zip(stores, owners, leased, strict=True):
        for aid in got:
            s.outbox.mark_sent([aid], o, T0 + 60_002)
            s.outbox.mark_sent([aid], "someone-else", T0 + 60_003)
    assert stores[0].readouts.alert_summary()["mail"]["sent"] == 150
