"""Migrations: the schema they build is the one the code declares; old schemas refuse."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import opencc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.errors import StoreError
from monitor.items import title_key
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
        db_url,
        "0001",
        "INSERT INTO items (id, key, url, title, summary, content, author, categories, "
        "published_ms, first_seen_ms, updated_ms) VALUES (1, 'https://x.org/a', "
        "'https://x.org/a', '中俄', '', '', '', '[]', 1, 1, 1)",
        "INSERT INTO alerts (rule, item_id, channel, keywords, snippet, status, attempts, "
        "created_ms, next_attempt_ms) VALUES ('r', 1, 'mail', '[]', '', 'pending', 0, 1, 1)",
    )
    store = Store(db_url)  # upgrades to head at start
    assert store.schema_revision()[0] == migrate.head_revision() != "0001"
    assert store.readouts.counts() == {"items": 1, "alerts": 1}
    [alert] = store.outbox.lease("w", 10, 10, 1000, ["mail"])
    assert alert.item.title == "中俄" and alert.rule == "r"
    store.close()


def test_migration_0003_title_keys_equal_the_title_keys_of_today() -> None:
    """0003 fills title keys with a frozen copy of ``title_key``: today the two agree."""
    path = Path(migrate.__file__).parent / "migrations" / "versions" / "0003_history.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    t2s = opencc.OpenCC("t2s")
    titles = [
        "中俄峰會在莫斯科舉行 普京會見習近平",
        "中俄峰会在莫斯科举行，普京会见习近平",
        "示威「嗌咪」拉低口罩",
        "ＡＢＣ News：Ｇ７",
        "abc news: g7",
        "快讯",
        "",
        "Live",
        "&quot;烏克蘭&quot; 戰事 &amp; 談判",
        "Straße  ﬁnale\tⅣ",
        "沈默的瞭解 藉口",
        "x" * 300,
        "Ukraine\ud800 war",
    ]
    for title in titles:
        assert module._title_key(title, t2s) == title_key(title), title
