"""A clock for tests: time moves only when the test moves it; chance is fixed."""

from __future__ import annotations


class FakeClock:
    """``monitor.types.Clock`` under the test's control.

    ``now_ms`` starts at ``start_ms`` and moves with ``advance``; ``monotonic`` moves with
    it. ``random`` returns ``chance`` (0.5: the middle of every jitter range).
    """

    def __init__(self, start_ms: int = 1_700_000_000_000, chance: float = 0.5) -> None:
        self._ms = start_ms
        self.chance = chance

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._ms / 1000

    def random(self) -> float:
        return self.chance

    def advance(self, seconds: float) -> None:
        self._ms += int(seconds * 1000)

    def set(self, ms: int) -> None:
        self._ms = ms
