"""One daemon per SQLite file: an exclusive OS lock (``fcntl.flock``) on a file beside the
database, held while the daemon runs and dropped by the operating system when the process
ends, however it ends (a crash or kill -9 leaves no stale lock behind).

The file holds the holder's pid and host, so a second daemon can say who has the database.
Several daemons share one PostgreSQL database instead (leases in the database).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from monitor.errors import StoreError


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (``file:`` URIs included); None for another database or
    an in-memory one."""
    u = url
    name = u.database
    if u.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:"):
        name = name[len("file:") :].split("?", 1)[0]
        if not name or name == ":memory:" or u.query.get("mode") == "memory":
            return None
    return Path(name)


class DaemonLock:
    """The held lock; ``release`` (or the end of the process) lets the next daemon in."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None


def lock_database(url: str) -> DaemonLock | None:
    """Take the one-daemon lock of a SQLite database (None for PostgreSQL); StoreError
    naming the daemon holding it (pid, host) when another one runs."""
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy raises ArgumentError: opening the database reports it
        return None
    db = sqlite_file(parsed)
    if db is None:
        return None
    safe_url = parsed.render_as_string(hide_password=True)
    path = db.with_name(db.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(
            f"cannot open database {safe_url}: cannot create its lock file "
            f"{path}: {e.strerror or e}"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read(fd)
        os.close(fd)
        raise StoreError(
            f"database {safe_url} is in use by another feed-monitor daemon ({holder}); "
            "a SQLite database serves one daemon: stop that one first, or use PostgreSQL "
            "to run several daemons"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    return DaemonLock(path, fd)


def _read(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "pid and host unknown"
