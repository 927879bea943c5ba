"""The system clock: the only place that reads the wall clock and ``random``."""

from __future__ import annotations

import random
import time


class SystemClock:
    """``types.Clock`` on the real time and a process-wide random generator."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def random(self) -> float:
        return random.random()


SYSTEM_CLOCK = SystemClock()
