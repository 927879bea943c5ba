"""The daemon's in-memory log of recent polls per feed: bounded, newest first."""

from __future__ import annotations

from monitor.polllog import PollLog
from monitor.types import PollOutcome, PollRecord


def poll(n: int) -> PollRecord:
    return PollRecord(n, 0.1, PollOutcome.OK, 200, n, 0, 0, None)


def test_recent_polls_are_bounded_per_feed_and_newest_first() -> None:
    log = PollLog(kept=3)
    for n in range(5):
        log.record("cn", poll(n))
    log.record("tw", poll(9))
    assert [p.started_ms for p in log.recent("cn")] == [4, 3, 2]
    assert [p.started_ms for p in log.recent("tw")] == [9]
    assert log.recent("unknown") == []
