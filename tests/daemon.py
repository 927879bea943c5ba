"""Running ``feed-monitor`` as a real subprocess in tests, and writing its config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(
    path: Path,
    *,
    db: Path | None = None,
    feeds: list[dict[str, Any]],
    channels: dict[str, Any],
    rules: list[dict[str, Any]],
    database: str | None = None,
    **extra: Any,
) -> Path:
    """A config tuned for tests: fast ticks, no jitter, short intervals.

    The database is the SQLite file ``db``, or any SQLAlchemy URL given as ``database``
    (e.g. the test PostgreSQL, for several daemons on one database).
    """
    if (db is None) == (database is None):
        raise TypeError("write_config needs exactly one of db (a SQLite file) or database")
    cfg: dict[str, Any] = {
        "database": database or f"sqlite:///{db}",
        # Every test server listens on loopback, which feeds may not use by default.
        "defaults": {
            "interval": "1s",
            "jitter": 0,
            "timeout": "5s",
            "backlog": "none",
            "allowed_networks": ["127.0.0.0/8", "::1/128"],
        },
        "scheduler": {"tick": 0.2, "workers": 4},
        "delivery": {"interval": 0.2, "backoff": 0.2, "max_backoff": 1},
        "http": {"enabled": False},
        "feeds": feeds,
        "channels": channels,
        "rules": rules,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def no_feed_config(folder: Path) -> Path:
    """``folder/m.yaml``: no feed, the SQLite file ``folder/m.db``, one console channel
    and one rule (``r``: any of ``x``) sending to it; for commands that need a config
    but poll nothing (import, export, prune, once)."""
    return write_config(
        folder / "m.yaml",
        db=folder / "m.db",
        feeds=[],
        channels={"c": "console://"},
        rules=[{"name": "r", "any": ["x"], "notify": ["c"]}],
    )


class Daemon:
    """``feed-monitor run`` in a subprocess, its output collected line by line."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Daemon:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(self.config), *self.args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 15.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in list(self.lines)) >= count:
                return
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {text!r} in daemon output:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop in {timeout} s:\n{self.output}") from None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET, error statuses included (for /healthz and /metrics)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")
