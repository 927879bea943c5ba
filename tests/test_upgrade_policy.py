"""``database_upgrade: never``: every command that touches the database refuses a schema one
revision behind, with one message and one exit code, and leaves it as it was; only
``feed-monitor db upgrade`` migrates it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from monitor.store import migrate
from tests.daemon import write_config
from tests.support.cli import run_cli
from tests.support.schema import database_at

HEAD = migrate.head_revision()
PREVIOUS = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(HEAD).down_revision
assert isinstance(PREVIOUS, str)

# Every command that opens the database, with the arguments it needs to get that far.
COMMANDS: list[tuple[str, ...]] = [
    ("run",),
    ("once",),
    ("status",),
    ("status", "--json"),
    ("test-rule", "r"),
    ("silence", "add", "--rule", "r", "--for", "1h"),
    ("silence", "list"),
    ("silence", "expire", "1"),
    ("redeliver",),
    ("import", "{tmp}/archive.md"),
    ("export", "--out", "{tmp}/out"),
    ("prune", "--items", "30d"),
    ("db", "current"),
]


def revision(db: Path) -> str | None:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return migrate.current_revision(conn)
    finally:
        engine.dispose()


@pytest.fixture
def behind(tmp_path: Path) -> tuple[Path, Path]:
    """A config under ``never`` and its SQLite database at the revision before head."""
    db = tmp_path / "monitor.db"
    database_at(f"sqlite:///{db}", PREVIOUS)
    config = write_config(
        tmp_path / "monitor.yaml",
        db=db,
        database_upgrade="never",
        # Never polled: a refused command must not get as far as the network.
        feeds=[{"id": "cn", "url": "http://127.0.0.1:9/cn"}],
        channels={"c": {"urls": ["json://127.0.0.1:9/x"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["c"]}],
    )
    (tmp_path / "archive.md").write_text("", encoding="utf-8")
    return config, db


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_refuses_an_older_schema_alike(
    behind: tuple[Path, Path], command: tuple[str, ...]
) -> None:
    config, db = behind
    args = [a.replace("{tmp}", str(config.parent)) for a in command]
    done = run_cli(*args, "-c", str(config))
    expected = (
        f"error: database sqlite:///{db} has schema {PREVIOUS}, this version needs "
        f"{HEAD}: run 'feed-monitor db upgrade'"
    )
    assert done.returncode == 1, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [expected]
    assert "Traceback" not in done.stderr
    assert revision(db) == PREVIOUS


def test_db_upgrade_migrates_it(behind: tuple[Path, Path]) -> None:
    config, db = behind
    upgraded = run_cli("db", "upgrade", "-c", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema {HEAD}, up to date" in upgraded.stdout
    assert revision(db) == HEAD
    current = run_cli("db", "current", "-c", str(config))
    assert current.returncode == 0 and f"schema {HEAD}, up to date" in current.stdout
    assert run_cli("status", "-c", str(config)).returncode == 0
