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


def test_a_poll_reads_back_as_recorded() -> None:
    log = PollLog()
    polls = [
        PollRecord(1_700_000_000_123, 0.123456789, PollOutcome.NOT_MODIFIED, 304, 0, 0, 0, None),
        PollRecord(1_700_000_001_000, 5.0, PollOutcome.TIMEOUT, None, 0, 0, 0, "timed out"),
        PollRecord(1_700_000_002_000, 1.5, PollOutcome.OK, 200, 50, 3, 120, None),
    ]
    for p in polls:
        log.record("cn", p)
    assert log.recent("cn") == polls[::-1]
