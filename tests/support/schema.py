"""A database as an older release left it: migrated up to a given revision, with rows."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from monitor.store import migrate


def database_at(url: str, revision: str, *statements: str) -> None:
    """Migrate the empty database at ``url`` up to ``revision`` only, then run the SQL
    ``statements`` (the rows that release wrote), in one transaction."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn, revision)
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()
