"""The system clock: the only place that reads the wall clock and ``random``; and the
one formatter of epoch milliseconds as UTC text."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime


class SystemClock:
    """``types.Clock`` on the real time and a process-wide random generator."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def random(self) -> float:
        return random.random()


SYSTEM_CLOCK = SystemClock()


def utc_text(ms: int, pattern: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """Epoch milliseconds as UTC text, for output (``pattern`` as for ``strftime``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(pattern)
