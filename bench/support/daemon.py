"""Our daemon in its own process, driven through poll cycles and measured from outside
(/proc, its database)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.support.machine import cpu_seconds, proc_status

REPO = Path(__file__).resolve().parents[2]


def wait_until(check: Any, timeout: float, what: str) -> None:
    """Until ``check()`` is true; exits the benchmark after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def db_scalar(db: Path, sql: str, *params: Any) -> Any:
    """One value from the daemon's SQLite file (None before its tables exist)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchone()[0]
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


class Daemon:
    """``python -m monitor run`` in its own process; alerts (console://) discarded."""

    def __init__(self, config: Path, db: Path, log: Path, source: Path = REPO) -> None:
        """``source``: the tree whose ``monitor`` package runs (another version of the
        code, for a baseline in the same run)."""
        self.db = db
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config), "--log-level", "warning"],
            cwd=source,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the daemon exited with {self.proc.returncode}:\n{tail}")

    def wait_for(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.1)

    def wait_started(self, n: int, timeout: float = 300) -> None:
        """Until the daemon has created its tables and the rows of all ``n`` feeds."""
        self.wait_for(
            lambda: (db_scalar(self.db, "SELECT count(*) FROM feeds") or 0) >= n,
            timeout,
            "the daemon to start",
        )

    def idle(self, timeout: float = 300) -> None:
        """Until every feed has been polled once and no poll is in flight.

        A cycle starts only then: a poll still running when the benchmark makes every
        feed due could record its (earlier) finish after that, and overwrite "due now"
        with its next poll time; that feed would then never be polled in the cycle.
        """
        self.wait_for(
            lambda: (
                db_scalar(
                    self.db,
                    "SELECT count(*) FROM feeds WHERE last_poll_ms IS NULL "
                    "OR lease_owner IS NOT NULL",
                )
                == 0
            ),
            timeout,
            "the daemon's polls in flight",
        )

    def cycle(self, n: int, timeout: float = 300) -> dict[str, Any]:
        """Make every feed due now, as an interval ending does; measure until every feed's
        poll is recorded (``seconds``) and until no alert waits (``drained_s``)."""
        self.idle(timeout)
        pid = self.proc.pid
        items0 = db_scalar(self.db, "SELECT count(*) FROM items") or 0
        alerts0 = db_scalar(self.db, "SELECT count(*) FROM alerts") or 0
        cpu0 = cpu_seconds(pid)
        due = int(time.time() * 1000)
        conn = sqlite3.connect(self.db, timeout=30)
        with conn:
            conn.execute("UPDATE feeds SET next_poll_ms = ?", (due,))
        conn.close()
        self.wait_for(
            lambda: (
                db_scalar(self.db, "SELECT count(*) FROM feeds WHERE last_poll_ms >= ?", due) == n
            ),
            timeout,
            "a cycle",
        )
        cpu = cpu_seconds(pid) - cpu0
        status = proc_status(pid)
        last = db_scalar(self.db, "SELECT max(last_poll_ms) FROM feeds")
        self.wait_for(
            lambda: db_scalar(self.db, "SELECT count(*) FROM alerts WHERE status = 'pending'") == 0,
            timeout,
            "the alerts",
        )
        drained = time.time() - due / 1000
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            outcomes = Counter(
                dict(
                    conn.execute(
                        "SELECT last_outcome, count(*) FROM feeds WHERE last_poll_ms >= ? "
                        "GROUP BY last_outcome",
                        (due,),
                    ).fetchall()
                )
            )
        finally:
            conn.close()
        return {
            "wall_s": (last - due) / 1000,
            "drained_s": drained,
            "cpu_s": cpu,
            "rss_mb": status["VmRSS"],
            "peak_rss_mb": status["VmHWM"],
            "outcomes": dict(outcomes),
            "feeds": n,
            "new_items": (db_scalar(self.db, "SELECT count(*) FROM items") or 0) - items0,
            "alerts": (db_scalar(self.db, "SELECT count(*) FROM alerts") or 0) - alerts0,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
