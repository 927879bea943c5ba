"""Shared fixtures: databases (SQLite files, the machine's PostgreSQL) and local servers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PG_ENV = "FEED_MONITOR_TEST_PG"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_dir(*parts: str) -> Path:
    """A folder of ../shared; skips the test when absent, but fails under CI=true."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing; under CI=true the corpus tests must run")
        pytest.skip(f"{path} not present (the corpus sits beside the repository)")
    return path


_session_pg: str | None = None


def postgres_url() -> str:
    """A PostgreSQL database of this test session's own; skips without a server
    configured, fails under CI=true.

    The server named by FEED_MONITOR_TEST_PG may serve several test runs at once
    (tests reset their database), so each session creates a database of its own
    beside the named one and drops it at exit. Without the right to create one,
    the named database itself is used.
    """
    global _session_pg
    url = os.environ.get(PG_ENV)
    if not url:
        if IN_CI:
            pytest.fail(f"{PG_ENV} is not set; under CI=true PostgreSQL tests must run")
        pytest.skip(
            f"no PostgreSQL configured: set {PG_ENV} "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    if _session_pg is None:
        _session_pg = _create_session_database(url)
    return _session_pg


def _create_session_database(url: str) -> str:
    import atexit

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    own = base.set(database=f"{base.database}_s{os.getpid()}")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{own.database}"'))
            conn.execute(text(f'CREATE DATABASE "{own.database}"'))
    except Exception as e:  # no CREATEDB right, or the server is down: use the named one
        admin.dispose()
        if "permission" not in str(e).lower():
            if IN_CI:
                pytest.fail(f"PostgreSQL at {PG_ENV} unreachable: {e}")
            pytest.skip(f"PostgreSQL at {PG_ENV} unreachable: {e}")
        return url

    def drop() -> None:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)'))
        finally:
            admin.dispose()

    atexit.register(drop)
    return own.render_as_string(hide_password=False)


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except Exception as e:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_ENV} unreachable: {e}")
        pytest.skip(f"PostgreSQL at {PG_ENV} unreachable: {e}")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on a fresh SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
    else:
        url = postgres_url()
        reset_postgres(url)
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Any]:
    """A Store on ``db_url`` (SQLite file and PostgreSQL), closed after the test."""
    from monitor.store import Store

    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitor.db'}"


from tests.support.fixtures import *  # noqa: E402,F401,F403  (feed_server, smtp_sink, webhook_receiver)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI tests call ``main()``, which points the root logger at the sys.stderr of the
    moment (pytest's capture); put the handlers back so no later thread writes to a
    closed capture stream."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
