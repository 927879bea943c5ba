"""The feed lease's timing promise, on SQLite and PostgreSQL, with a fake clock.

Several ``Store`` objects on one database stand for several daemons. A daemon that stops
finishing its polls (killed) keeps its feeds only until its lease ends: the others take
them over then, not before, so a feed is polled again within a lease plus an interval.
The cluster test (tests/test_cluster.py) checks the same with real processes but without
timing it: on a loaded machine real time says little.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.store import Store
from monitor.types import FeedRow, FeedSpec
from tests.support.clock import FakeClock

N_FEEDS = 30
INTERVAL_S = 60
LEASE_S = 90  # longer than a poll may take, as scheduler.lease must be
OWNERS = ("host:1:a", "host:2:b", "host:3:c")
FEED_IDS = frozenset(f"f{i:03d}" for i in range(N_FEEDS))


@pytest.fixture
def daemons(db_url: str) -> Iterator[dict[str, Store]]:
    """One store per owner on one database, its feeds added and all due at once."""
    stores = {owner: Store(db_url) for owner in OWNERS}
    specs = [
        FeedSpec(id=f, url=f"http://127.0.0.1/{f}", title=None, interval_s=INTERVAL_S)
        for f in sorted(FEED_IDS)
    ]
    stores[OWNERS[0]].feeds.sync(specs, FakeClock().now_ms(), 0)
    yield stores
    for s in stores.values():
        s.close()


def claim(store: Store, owner: str, clock: FakeClock, limit: int = N_FEEDS) -> list[FeedRow]:
    rows: list[FeedRow] = store.feeds.claim_due(
        owner, clock.now_ms(), limit, LEASE_S * 1000, FEED_IDS
    )
    return rows


def finish(store: Store, owner: str, rows: list[FeedRow], clock: FakeClock) -> None:
    for row in rows:
        store.feeds.finish_poll(
            row.id,
            owner,
            now_ms=clock.now_ms(),
            next_poll_ms=clock.now_ms() + INTERVAL_S * 1000,
            outcome="ok",
            error=None,
            status=200,
            failures=0,
        )


def poll_round(
    daemons: dict[str, Store], clock: FakeClock, limit: int, finishing: tuple[str, ...] = OWNERS
) -> dict[str, list[FeedRow]]:
    """Each owner claims up to ``limit`` due feeds in turn; those in ``finishing`` poll them."""
    claimed = {owner: claim(store, owner, clock, limit) for owner, store in daemons.items()}
    for owner in finishing:
        finish(daemons[owner], owner, claimed[owner], clock)
    return claimed


def ids(rows: list[FeedRow]) -> set[str]:
    return {r.id for r in rows}


def test_owners_share_the_due_feeds_without_overlap(daemons: dict[str, Store]) -> None:
    clock = FakeClock()
    claimed = poll_round(daemons, clock, limit=N_FEEDS // len(OWNERS))
    assert all(len(rows) == N_FEEDS // len(OWNERS) for rows in claimed.values())
    assert set.union(*(ids(r) for r in claimed.values())) == FEED_IDS
    # Polled, not due again within the interval: no owner gets any of them.
    clock.advance(INTERVAL_S - 1)
    assert all(claim(s, o, clock) == [] for o, s in daemons.items())
    clock.advance(1)
    assert ids(claim(daemons[OWNERS[0]], OWNERS[0], clock)) == FEED_IDS


def test_a_dead_owners_feeds_are_taken_over_when_its_lease_ends_not_before(
    daemons: dict[str, Store],
) -> None:
    clock = FakeClock()
    last_poll_ms = clock.now_ms()
    poll_round(daemons, clock, limit=N_FEEDS // len(OWNERS))
    # One interval on, every owner claims its share again; the last one dies holding it.
    clock.advance(INTERVAL_S)
    dead = OWNERS[-1]
    survivors = {o: s for o, s in daemons.items() if o != dead}
    claimed = poll_round(daemons, clock, limit=N_FEEDS // len(OWNERS), finishing=OWNERS[:-1])
    held = ids(claimed[dead])
    assert len(held) == N_FEEDS // len(OWNERS)
    leased_at_ms = clock.now_ms()

    # While its lease lasts, the survivors claim nothing of it, however often they try.
    for _ in range(LEASE_S // 10):
        clock.advance(10)
        if clock.now_ms() > leased_at_ms + LEASE_S * 1000:
            break
        for owner, store in survivors.items():
            rows = claim(store, owner, clock)
            assert not ids(rows) & held, f"{owner} took a leased feed at {clock.now_ms()}"
            finish(store, owner, rows, clock)
    clock.set(leased_at_ms + LEASE_S * 1000)
    assert all(not ids(claim(s, o, clock)) & held for o, s in survivors.items())

    # The moment it ends, the survivors take every one of its feeds, each feed once.
    clock.advance(0.001)
    taken = {owner: ids(claim(store, owner, clock)) & held for owner, store in survivors.items()}
    assert set.union(*taken.values()) == held
    assert not set.intersection(*taken.values())
    # So each of its feeds is polled again within a lease plus an interval of its last poll.
    assert clock.now_ms() - last_poll_ms <= (LEASE_S + INTERVAL_S) * 1000 + 1

    # The dead owner's late report (a poll that was in flight) changes nothing.
    before = {r.id: r for r in daemons[OWNERS[0]].readouts.feed_rows() if r.id in held}
    finish(daemons[dead], dead, claimed[dead], clock)
    after = {r.id: r for r in daemons[OWNERS[0]].readouts.feed_rows() if r.id in held}
    assert after == before


def test_an_owner_that_stops_cleanly_hands_its_feeds_over_at_once(
    daemons: dict[str, Store],
) -> None:
    clock = FakeClock()
    leaving = OWNERS[0]
    held = ids(claim(daemons[leaving], leaving, clock, limit=10))
    assert len(held) == 10
    other = OWNERS[1]
    assert not ids(claim(daemons[other], other, clock)) & held
    daemons[leaving].feeds.release_leases(leaving)
    assert ids(claim(daemons[other], other, clock)) == held
