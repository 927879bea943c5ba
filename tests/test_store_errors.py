"""No driver error escapes the store: every public method raises StoreError, naming the
database (password masked) and the cause."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StoreError
from monitor.store import Store
from monitor.types import FeedSpec, Item, MatchingFunctions, PollOutcome, RuleMatch

T0 = 1_679_494_503_000
ITEM = Item(
    key="https://x.org/a", url="https://x.org/a", title="中俄关系", published_ms=T0, feed_id="cn"
)
RULES = MatchingFunctions(lambda it, feeds: [RuleMatch("r", ("中俄",))], lambda rule: ["mail"])

# One call of every public method of every part, with arguments that reach the database.
CALLS: dict[str, Callable[[Store], Any]] = {
    "feeds.sync": lambda s: s.feeds.sync([FeedSpec("cn", "http://x/cn", None, 60)], T0, 0),
    "feeds.claim_due": lambda s: s.feeds.claim_due("w", T0, 5, 60_000, ["cn"]),
    "feeds.finish_poll": lambda s: s.feeds.finish_poll(
        "cn",
        "w",
        now_ms=T0,
        next_poll_ms=T0,
        outcome=PollOutcome.OK,
        error=None,
        status=200,
        failures=0,
    ),
    "feeds.release_leases": lambda s: s.feeds.release_leases("w"),
    "items.ingest": lambda s: s.items.ingest("cn", [ITEM], T0, RULES),
    "items.iter_stored": lambda s: list(s.items.iter_stored()),
    "outbox.lease": lambda s: s.outbox.lease("w", T0, 10, 60_000, ["mail"]),
    "outbox.mark_sent": lambda s: s.outbox.mark_sent([1], "w", T0),
    "outbox.mark_failed": lambda s: s.outbox.mark_failed([1], "w", "boom", T0, dead=False),
    "outbox.hold": lambda s: s.outbox.hold([1], "w", T0),
    "outbox.defer": lambda s: s.outbox.defer([1], "w", T0),
    "outbox.mark_silenced": lambda s: s.outbox.mark_silenced([1], "w", 1),
    "outbox.held_release": lambda s: s.outbox.held_release("mail", None, T0),
    "outbox.redeliver": lambda s: s.outbox.redeliver(T0),
    "outbox.release_leases": lambda s: s.outbox.release_leases("w"),
    "outbox.editions": lambda s: s.outbox.editions(1, "r", 1000),
    "outbox.add_silence": lambda s: s.outbox.add_silence("r", None, T0, T0 + 1, "", "", T0),
    "outbox.silences": lambda s: s.outbox.silences(T0),
    "outbox.expire_silence": lambda s: s.outbox.expire_silence(1, T0),
    "history.import_items": lambda s: s.history.import_items("archive", [(ITEM, [])], T0),
    "history.stored_keys": lambda s: s.history.stored_keys([ITEM.key]),
    "history.export_rows": lambda s: list(s.history.export_rows()),
    "history.count_matches": lambda s: s.history.count_matches("r"),
    "history.known_feed_ids": lambda s: s.history.known_feed_ids(),
    "history.prune": lambda s: s.history.prune(T0, T0, T0),
    "readouts.counts": lambda s: s.readouts.counts(),
    "readouts.alert_summary": lambda s: s.readouts.alert_summary(),
    "readouts.rule_match_counts": lambda s: s.readouts.rule_match_counts(T0),
    "readouts.feed_rows": lambda s: s.readouts.feed_rows(),
    "ping": lambda s: s.ping(),
}


def check_store_error(store: Store, call: Callable[[Store], Any]) -> StoreError:
    with pytest.raises(StoreError) as info:
        call(store)
    assert store.safe_url in str(info.value)
    assert isinstance(info.value.__cause__, SQLAlchemyError)
    return info.value


@pytest.fixture(scope="module")
def broken_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A SQLite store whose tables are gone (dropped behind its back)."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('broken') / 'm.db'}")
    with store.engine.begin() as conn:
        for table in ("alerts", "matches", "item_feeds", "items", "feeds", "silences"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
    yield store
    store.close()


@pytest.mark.parametrize("name", [n for n in CALLS if n != "ping"])
def test_every_method_raises_store_error_on_a_broken_database(
    broken_sqlite: Store, name: str
) -> None:
    error = check_store_error(broken_sqlite, CALLS[name])
    assert "no such table" in str(error)


@pytest.fixture(scope="module")
def unreachable() -> Any:
    """A PostgreSQL URL with a password, where nothing listens: every call fails to connect."""
    store = Store("postgresql+psycopg://monitor:s3cret-pw@127.0.0.1:1/feeds", upgrade=None)
    yield store
    store.close()


@pytest.mark.parametrize("name", list(CALLS))
def test_every_method_raises_store_error_with_the_password_masked(
    unreachable: Store, name: str
) -> None:
    error = check_store_error(unreachable, CALLS[name])
    assert "monitor:***@127.0.0.1:1/feeds" in str(error)
    assert "s3cret-pw" not in str(error)


def test_schema_revision_of_an_unreachable_database_raises_store_error(unreachable: Store) -> None:
    check_store_error(unreachable, lambda s: s.schema_revision())


def test_a_file_that_is_not_a_database_is_refused_on_open(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not a SQLite database, just some bytes\n" * 100)
    with pytest.raises(StoreError, match=r"cannot open database sqlite:///.*m\.db") as info:
        Store(f"sqlite:///{path}")
    assert isinstance(info.value.__cause__, SQLAlchemyError)


def test_a_password_is_masked_when_opening_fails() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://monitor:s3cret-pw@127.0.0.1:1/feeds")
    assert "cannot open database postgresql+psycopg://monitor:***@127.0.0.1:1/feeds" in str(
        info.value
    )
    assert "s3cret-pw" not in str(info.value)
