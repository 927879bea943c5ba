"""Running the daemon when the database or the machine misbehaves: a locked or full
database shows on /healthz with its reason and is logged once, not once a tick; a database
that cannot be opened, a second daemon on one SQLite file and a taken port each end the
start with one line and exit 1."""

from __future__ import annotations

import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.daemon import Daemon as InProcessDaemon
from monitor.errors import MonitorError, StoreError
from monitor.faults import Faults
from tests.daemon import REPO, Daemon, http_get, write_config
from tests.support import FeedItem, FeedServer, rss_feed
from tests.support.clock import FakeClock
from tests.support.net import free_port, wait_until

PG_DOWN = "postgresql+psycopg://monitor:hunter2secret@127.0.0.1:1/monitor"


def feed_config(tmp_path: Path, feed_server: FeedServer, **extra: object) -> Path:
    feed_server.set_feed(
        "/cn",
        rss_feed([FeedItem("中俄新闻", "https://www.rfi.fr/cn/1", "<p>x</p>", 1_700_000_000_000)]),
    )
    return write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn")}],
        channels={},
        rules=[],
        **extra,
    )  # type: ignore[arg-type]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


# -- 13: a locked or full database ------------------------------------------------------


def test_healthz_answers_503_with_the_reason_while_another_process_locks_the_database(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    port = free_port()
    config = feed_config(
        tmp_path, feed_server, http={"enabled": True, "listen": f"127.0.0.1:{port}"}
    )
    with Daemon(config) as daemon:
        daemon.wait_for_line("feed-monitor running")
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        other = sqlite3.connect(tmp_path / "monitor.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # held, as by a sqlite3 shell left open
        try:
            # The ping gives up on the lock well within the probe's 2 s.
            status, body = http_get(f"http://127.0.0.1:{port}/healthz", timeout=2.0)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert status == 503
        assert "database is locked" in body
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.output


def test_a_full_database_fails_healthz_and_is_logged_once_not_once_a_tick(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    port = free_port()
    config = feed_config(
        tmp_path, feed_server, http={"enabled": True, "listen": f"127.0.0.1:{port}"}
    )
    db = tmp_path / "monitor.db"
    with Daemon(config) as daemon:
        daemon.wait_for_line("feed-monitor running")
        daemon.wait_for_line("feed 'cn':")  # polled once: the feed is due again each second
        # Every write of the feeds' schedule now fails as on a full disk (SQLITE_FULL
        # itself needs a full filesystem: the trigger raises its message instead).
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TRIGGER disk_full BEFORE UPDATE ON feeds BEGIN "
                "SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        daemon.wait_for_line("job 'tick' failed")

        def unhealthy() -> str | None:
            status, body = http_get(f"http://127.0.0.1:{port}/healthz")
            return body if status == 503 else None

        body = wait_until(unhealthy, timeout=10)
        assert "job 'tick' failing" in body and "database or disk is full" in body
        time.sleep(1.0)  # five more ticks fail: counted, not logged
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER disk_full")
        daemon.wait_for_line("job 'tick' recovered after")
        assert wait_until(
            lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=10
        )
        assert daemon.stop() == 0
    out = daemon.output
    assert sum("job 'tick' failed" in line for line in daemon.lines) == 1
    assert "Traceback" not in out


def test_a_repeated_job_failure_is_logged_once_then_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    faults = Faults(logging.getLogger("monitor.test"), clock)
    caplog.set_level(logging.INFO, "monitor.test")
    try:
        raise ValueError("unexpected")
    except ValueError as e:
        faults.failed("deliver", e)  # unexpected: logged with its traceback, once
    full = StoreError("database sqlite:///m.db: claiming feeds failed: database or disk is full")
    for _ in range(750):  # 150 s of ticks every 0.2 s
        faults.failed("tick", full)
        clock.advance(0.2)
    assert faults.failing() == {"deliver": "unexpected", "tick": str(full)}
    tick_lines = [r for r in caplog.records if "'tick'" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in tick_lines] == [
        "job 'tick' failed",
        "job 'tick' still failing",
        "job 'tick' still failing",
    ]
    assert "301 times in 60 s (300 since the last report)" in tick_lines[1].getMessage()
    assert all(r.exc_info is None for r in tick_lines)
    deliver_lines = [r for r in caplog.records if "'deliver'" in r.getMessage()]
    assert len(deliver_lines) == 1 and deliver_lines[0].exc_info is not None
    faults.succeeded("tick")
    assert faults.failing() == {"deliver": "unexpected"}
    assert "job 'tick' recovered after 750 failure(s)" in caplog.records[-1].getMessage()


# -- 14: a database that cannot be opened ------------------------------------------------


def test_status_against_an_unreachable_postgresql_is_one_line_with_the_password_masked(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "monitor.yaml", database=PG_DOWN, feeds=[], channels={}, rules=[]
    )
    done = run_cli("status", "-c", str(config))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot open database postgresql+psycopg://monitor:***")
    assert "127.0.0.1:1/monitor" in lines[0] and "hunter2secret" not in done.stderr
    assert done.stdout == ""


def test_a_read_only_database_at_start_is_one_line_naming_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    db = tmp_path / "monitor.db"
    config = feed_config(tmp_path, feed_server)
    assert run_cli("once", "-c", str(config)).returncode == 0  # the database exists
    # Opened read-only (as a file the daemon's user cannot write, which root can).
    write_config(
        config,
        database=f"sqlite:///file:{db}?mode=ro&uri=true",
        feeds=[{"id": "cn", "url": feed_server.url("/cn")}],
        channels={},
        rules=[],
    )
    for command in ("run", "once"):
        done = run_cli(command, "-c", str(config))
        assert done.returncode == 1, done.stderr
        lines = (done.stdout + done.stderr).splitlines()
        assert len(lines) == 1, lines
        assert "readonly database" in lines[0] and str(db) in lines[0].replace("%3A", ":")


# -- 15: one daemon per SQLite file -----------------------------------------------------


def test_a_second_daemon_on_the_same_sqlite_file_refuses_naming_the_first(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = feed_config(tmp_path, feed_server)
    with Daemon(config) as first:
        first.wait_for_line("feed-monitor running")
        assert first.proc is not None
        done = run_cli("run", "-c", str(config))
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert f"pid {first.proc.pid} on host {socket.gethostname()}" in lines[0]
        assert "PostgreSQL" in lines[0]
        # A daemon killed outright leaves no lock behind: the OS drops it.
        first.stop(signal.SIGKILL)
    with Daemon(config) as second:
        second.wait_for_line("feed-monitor running")
        assert second.stop() == 0


# -- 16: a start that fails ---------------------------------------------------------------


def test_a_taken_listen_port_ends_the_start_with_one_line_and_no_job_running(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = feed_config(
            tmp_path,
            feed_server,
            scheduler={"tick": 0.01},
            http={"enabled": True, "listen": f"127.0.0.1:{port}"},
        )
        daemon = InProcessDaemon.open(str(config))
        with pytest.raises(MonitorError, match=f"cannot listen on 127.0.0.1:{port}"):
            daemon.run(grace=1)
        # Nothing was started that could race the exit: no job, no claimed feed.
        assert not daemon.jobs.running
        with sqlite3.connect(tmp_path / "monitor.db") as conn:
            assert conn.execute(
                "SELECT count(*) FROM feeds WHERE lease_owner IS NOT NULL "
                "OR last_poll_ms IS NOT NULL"
            ).fetchone() == (0,)
        done = run_cli("run", "-c", str(config))
    assert done.returncode == 1
    assert (done.stdout + done.stderr).splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (http.listen): Address already in use"
    ]
