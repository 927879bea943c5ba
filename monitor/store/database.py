"""The database under every storage part: the engine (SQLite in WAL mode or PostgreSQL),
the migrate-on-open policy, and transactions that turn driver errors into StoreError.

The multi-row INSERT helpers live here too: ingest, imports, the outbox and the feed
schedule all write through them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError, SQLAlchemyError

from monitor.clock import SYSTEM_CLOCK
from monitor.errors import StoreError
from monitor.store import migrate
from monitor.types import Clock

# A pooled connection unused this long is pinged before it is handed out again.
IDLE_PING_S = 10.0
# How long a SQLite statement waits for another writer; the health ping waits less, so
# /healthz answers within 2 s when another process holds the database.
BUSY_TIMEOUT_MS = 30000
PING_WAIT_S = 1.5


class Database:
    """One database, opened once per process and shared by every storage part."""

    def __init__(
        self,
        url: str,
        upgrade: bool | None = True,
        clock: Clock = SYSTEM_CLOCK,
        connections: int = 30,
    ) -> None:
        """Open the database; ``upgrade``: True migrates, False refuses an old schema,
        None leaves the schema alone (for inspecting it); ``connections``: the pool's
        size, at most this many at once. Raises StoreError."""
        self.url = url
        try:
            parsed = make_url(url)
        except Exception as e:  # ArgumentError, or ValueError for a bad port
            raise StoreError(f"invalid database URL: {e}") from e
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = self._engine(url, clock, connections)
            if upgrade is not None:
                self._migrate(upgrade)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open database {self.safe_url}: {_cause(e)}") from e

    def _engine(self, url: str, clock: Clock, connections: int) -> Engine:
        # Up to ``connections`` at once, so no poll worker waits for the pool (and fails
        # after its 30 s timeout); ``keep`` stay open between uses, the others are closed
        # when given back. LIFO: a quiet daemon uses the same few, warm connections.
        keep = min(connections, 10)
        pool: dict[str, Any] = {
            "pool_size": keep,
            "max_overflow": connections - keep,
            "pool_use_lifo": True,
        }
        if not self.is_sqlite:
            engine = create_engine(url, **pool)
            _ping_when_idle(engine, clock)
            return engine
        if make_url(url).database in (None, "", ":memory:"):
            pool = {}  # one in-memory database per connection: SQLAlchemy's own pool
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event decide how transactions start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # The write lock up front, sent on the driver's connection: see
            # docs/architecture.md, 'SQLite by default', 'BEGIN IMMEDIATE on the driver'.
            # SQLAlchemy does not wrap what an event raises: a locked or broken file
            # must still reach callers as a StoreError.
            try:
                conn.connection.driver_connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise OperationalError("BEGIN IMMEDIATE", None, e) from e

        return engine

    def _migrate(self, upgrade: bool) -> None:
        head = migrate.head_revision()
        with self.engine.begin() as conn:
            migrate.lock(conn)
            current = migrate.current_revision(conn)
            if current == head:
                return
            if not upgrade:
                raise StoreError(
                    f"database {self.safe_url} has schema {current or 'none'}, this version "
                    f"needs {head}: run 'feed-monitor db upgrade'"
                )
            migrate.upgrade(conn)

    @contextmanager
    def begin(self, doing: str) -> Iterator[Connection]:
        """A transaction, committed at the end; ``doing`` names the work in errors."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise self.error(doing, e) from e

    @contextmanager
    def connect(self, doing: str) -> Iterator[Connection]:
        """A connection for reading (its transaction is rolled back at the end)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise self.error(doing, e) from e

    def error(self, doing: str, cause: SQLAlchemyError) -> StoreError:
        return StoreError(f"database {self.safe_url}: {doing} failed: {_cause(cause)}")

    def schema_revision(self) -> tuple[str | None, str]:
        """(the database's revision, the revision this code needs)."""
        with self.connect("reading the schema revision") as conn:
            return migrate.current_revision(conn), migrate.head_revision()

    def ping(self) -> None:
        """StoreError unless the database answers within about ``PING_WAIT_S``; a SQLite
        file must also grant the write lock in that time (not locked by another
        process)."""
        try:
            with self.engine.connect() as conn:
                if not self.is_sqlite:
                    conn.execute(select(1))
                    return
                # On the driver's connection, so no transaction of SQLAlchemy's waits
                # the full busy timeout first.
                raw: Any = conn.connection.driver_connection
                raw.execute(f"PRAGMA busy_timeout={int(PING_WAIT_S * 1000)}")
                try:
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute("ROLLBACK")
                finally:
                    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (SQLAlchemyError, sqlite3.Error) as e:
            cause = _cause(e) if isinstance(e, SQLAlchemyError) else f"{e.__class__.__name__}: {e}"
            raise StoreError(f"database {self.safe_url} unreachable: {cause}") from e

    def close(self) -> None:
        self.engine.dispose()


def _cause(e: SQLAlchemyError) -> str:
    """The driver's message on one line (libpq adds a hint on lines of its own)."""
    text = " ".join(str(getattr(e, "orig", None) or e).split())
    return f"{e.__class__.__name__}: {text}"


def _ping_when_idle(engine: Engine, clock: Clock) -> None:
    """Ping a pooled connection when taken after ``IDLE_PING_S`` idle, else never (see
    docs/architecture.md, 'Idle pings')."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = clock.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or clock.monotonic() - since < IDLE_PING_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise DisconnectionError(f"idle connection lost: {e}") from e
        if not alive:
            raise DisconnectionError("idle connection lost")


# -- multi-row INSERT ------------------------------------------------------------------


def insert_rows(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *returning: Any, count: bool = False
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING of many rows (all with the same keys).

    Returns the ``returning`` columns of the rows it inserted, as tuples, or their
    number with ``count``; None when the database cannot say (SQLite before 3.35
    has no RETURNING; it also has one writer at a time, so what this transaction
    looked up is exact and every row goes in).

    Driver SQL in chunks of 2^k rows: see docs/architecture.md, 'Multi-row INSERT'.
    """
    if not rows:
        return 0 if count else []
    dialect = conn.dialect
    is_sqlite = dialect.name == "sqlite"
    back = () if count and is_sqlite else returning
    if dialect.paramstyle not in _MARKS or (back and not dialect.insert_returning):
        return _insert_rows_core(conn, table, rows, *returning, count=count)
    names = tuple(rows[0])
    values = itemgetter(*names)
    params = [values(r) for r in rows] if len(names) > 1 else [(r[names[0]],) for r in rows]
    old_sqlite = is_sqlite and (dialect.server_version_info or (0,)) < (3, 32)
    limit = 999 if old_sqlite else 32766
    most = min(256, 1 << ((limit // len(names)).bit_length() - 1))
    got: list[Any] = []
    inserted = start = 0
    while start < len(params):
        size = min(most, 1 << ((len(params) - start).bit_length() - 1))
        flat = tuple([v for row in params[start : start + size] for v in row])
        result = conn.exec_driver_sql(_insert_sql(dialect, table, names, size, back), flat)
        start += size
        if back:
            got.extend(result.all())
        else:
            inserted += max(result.rowcount, 0)
    if not back:
        return inserted if count else None
    return len(got) if count else [tuple(r) for r in got]


def _insert_rows_core(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *returning: Any, count: bool = False
) -> Any:
    """``insert_rows`` through SQLAlchemy Core, for DBAPIs with named parameters."""
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    stmt = dialect_insert(table).on_conflict_do_nothing()
    if not returning:
        conn.execute(stmt, rows)
        return None
    if not conn.dialect.insert_executemany_returning:
        result = conn.execute(stmt, rows)
        return max(result.rowcount, 0) if count else None
    got = conn.execute(stmt.returning(*returning), rows).all()
    return len(got) if count else [tuple(r) for r in got]


def insert_new(conn: Connection, table: Table, **values: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: the new row's (first) key, None if it existed.

    Two daemons starting (or reloading a new config) together insert the same feed
    row at the same time. PostgreSQL makes the second wait for the first and then
    skips the row, instead of failing the second one's whole transaction.
    """
    if conn.dialect.name == "sqlite":
        # One writer at a time (BEGIN IMMEDIATE); rowcount is exact here, and
        # RETURNING would need SQLite 3.35.
        r = conn.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
        key = r.inserted_primary_key
        return key[0] if r.rowcount and key is not None else None
    # psycopg reports no rowcount for this statement; RETURNING tells.
    key = next(iter(table.primary_key.columns))
    return conn.execute(
        pg_insert(table).values(**values).on_conflict_do_nothing().returning(key)
    ).scalar()


# Positional parameter marks of the DBAPIs insert_rows writes through directly.
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_INSERT_SQL: dict[tuple[Any, ...], str] = {}  # bounded: a few tables, nine row counts


def _insert_sql(
    dialect: Any, table: Table, names: tuple[str, ...], nrows: int, returning: Sequence[Any]
) -> str:
    """INSERT INTO table (names) VALUES (...) * nrows ON CONFLICT DO NOTHING [RETURNING],
    in the dialect's quoting and parameter marks (SQLite 3.24+ and PostgreSQL 9.5+)."""
    key = (
        dialect.name,
        dialect.paramstyle,
        table.name,
        names,
        nrows,
        tuple(c.name for c in returning),
    )
    sql = _INSERT_SQL.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        row = "(" + ", ".join([_MARKS[dialect.paramstyle]] * len(names)) + ")"
        sql = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(n) for n in names)}) VALUES {', '.join([row] * nrows)} "
            "ON CONFLICT DO NOTHING"
        )
        if returning:
            sql += " RETURNING " + ", ".join(quote(c.name) for c in returning)
        _INSERT_SQL[key] = sql
    return sql
