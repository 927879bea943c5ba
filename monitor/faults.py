"""Repeated failures of the daemon's jobs: the first logged in full, the repeats counted
and summed up at most once a minute, and what is failing right now kept for /healthz.

A full disk or a locked database fails every tick the same way; logging each one (with
its traceback) would bury the first line that says why, and fill the disk further.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from monitor.errors import MonitorError
from monitor.types import Clock

REPEAT_EVERY_S = 60.0  # a repeated failure is summed up in the log at most this often


@dataclass
class _Streak:
    """One job's failures in a row with the same message."""

    message: str
    since_s: float  # the clock's monotonic reading at the first failure
    count: int = 1
    logged_s: float = 0.0
    logged_count: int = 1


def one_line(error: BaseException) -> str:
    """An error's message on one line (a log line, a /healthz reason)."""
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or error.__class__.__name__


class Faults:
    """The failing jobs of one process, by name; thread-safe enough for one thread per
    job (each job touches only its own entry)."""

    def __init__(self, log: logging.Logger, clock: Clock, every_s: float = REPEAT_EVERY_S) -> None:
        self._log = log
        self._clock = clock
        self._every_s = every_s
        self._streaks: dict[str, _Streak] = {}

    def failed(self, name: str, error: BaseException) -> None:
        """Job ``name`` failed with ``error``: log it if it is new, count it if not."""
        now = self._clock.monotonic()
        message = one_line(error)
        streak = self._streaks.get(name)
        if streak is None or streak.message != message:
            first = streak is None
            self._streaks[name] = _Streak(message, now, logged_s=now)
            # A traceback only for the unexpected, and only once: errors of our own say
            # what happened in their message.
            trace = first and not isinstance(error, MonitorError)
            self._log.error("job '%s' failed: %s", name, message, exc_info=error if trace else None)
            return
        streak.count += 1
        if now - streak.logged_s >= self._every_s:
            self._log.error(
                "job '%s' still failing: %d times in %.0f s (%d since the last report): %s",
                name,
                streak.count,
                now - streak.since_s,
                streak.count - streak.logged_count,
                message,
            )
            streak.logged_s = now
            streak.logged_count = streak.count

    def succeeded(self, name: str) -> None:
        """Job ``name`` ran without error: a failure streak ends (and says so)."""
        streak = self._streaks.pop(name, None)
        if streak is not None:
            self._log.info(
                "job '%s' recovered after %d failure(s) in %.0f s",
                name,
                streak.count,
                self._clock.monotonic() - streak.since_s,
            )

    def failing(self) -> dict[str, str]:
        """Each failing job's name and its last error message."""
        return {name: s.message for name, s in list(self._streaks.items())}
