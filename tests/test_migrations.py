"""Migrations: the schema they build is the one the code declares; old schemas refuse."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.errors import StoreError
from monitor.store import Store, migrate
from monitor.store.schema import metadata


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
