"""Migrations: the schema they build is the one the code declares; old schemas refuse."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.errors import StoreError
from monitor.store import Store, migrate
from monitor.store.schema import metadata
from tests.support.schema import database_at


def test_migrations_match_declared_tables(db_url: str) -> None:
    store = Store(db_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert diff == []


def test_store_without_upgrade_refuses_an_old_schema(db_url: str) -> None:
    Store(db_url).close()
    store = Store(db_url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    store.close()
    with pytest.raises(StoreError, match="run 'feed-monitor db upgrade'"):
        Store(db_url, upgrade=False)


def test_current_revision_is_head_after_start(db_url: str) -> None:
    store = Store(db_url)
    current, head = store.schema_revision()
    store.close()
    assert current == head == migrate.head_revision()


def test_upgrade_from_the_first_schema_keeps_items_and_alerts(db_url: str) -> None:
    database_at(
        db_url, "0001",
        "INSERT INTO items (id, key, url, title, summary, content, author, categories, "
        "published_ms, first_seen_ms, updated_ms) VALUES (1, 'https://x.org/a', "
        "'https://x.org/a', '中俄', '', '', '', '[]', 1, 1, 1)",
        "INSERT INTO alerts (rule, item_id, channel, keywords, snippet, status, attempts, "
        "created_ms, next_attempt_ms) VALUES ('r', 1, 'mail', '[]', '', 'pending', 0, 1, 1)")
    store = Store(db_url)  # upgrades to head at start
    assert store.schema_revision()[0] == migrate.head_revision() != "0001"
    assert store.readouts.counts() == {"items": 1, "alerts": 1}
    [alert] = store.outbox.lease("w", 10, 10, 1000, ["mail"])
    assert alert.item.title == "中俄" and alert.rule == "r"
    store.close()
