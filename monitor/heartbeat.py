"""The daemon's heartbeat: what it did since the last line (polls, new items, alerts sent,
failures), counted as polls finish and delivery runs end, and told in one log line."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from monitor.types import DeliveryStats, PollOutcome, PollResult

# The outcomes of a poll that reached its feed and read it (or learnt it had not changed).
_ANSWERED = frozenset({PollOutcome.OK, PollOutcome.OK_WITH_WARNINGS, PollOutcome.NOT_MODIFIED})
_NAMED = 3  # failing feeds named in a line; the rest are counted


@dataclass(frozen=True)
class Beat:
    """What the daemon did between two heartbeat lines."""

    since_ms: int
    until_ms: int
    polls: int = 0
    feeds: int = 0  # distinct feeds among the polls
    new_items: int = 0
    alerts_sent: int = 0
    failed_polls: int = 0
    failed_feeds: tuple[str, ...] = ()  # sorted
    failed_sends: int = 0

    def line(self) -> str:
        """``heartbeat: last 5m: 2 feeds polled (60 polls), 3 new items, 2 alerts sent,
        no failures``."""
        failures = self.failed_polls + self.failed_sends
        told = [
            f"{self.failed_polls} failed poll{_s(self.failed_polls)}"
            + (f" ({_names(self.failed_feeds)})" if self.failed_feeds else "")
            if self.failed_polls
            else "",
            f"{self.failed_sends} failed send{_s(self.failed_sends)}" if self.failed_sends else "",
        ]
        failed = (
            "no failures"
            if not failures
            else f"{failures} failure{_s(failures)}: " + ", ".join(t for t in told if t)
        )
        return (
            f"heartbeat: last {span_text((self.until_ms - self.since_ms) / 1000)}: "
            f"{self.feeds} feed{_s(self.feeds)} polled ({self.polls} poll{_s(self.polls)}), "
            f"{self.new_items} new item{_s(self.new_items)}, "
            f"{self.alerts_sent} alert{_s(self.alerts_sent)} sent, {failed}"
        )


class Heartbeat:
    """Counts of polls and deliveries since the last ``beat``; safe across threads."""

    def __init__(self, start_ms: int) -> None:
        self._lock = threading.Lock()
        self._since = start_ms
        self._reset()

    def _reset(self) -> None:
        self._polls = 0
        self._feeds: set[str] = set()
        self._new = 0
        self._sent = 0
        self._failed_feeds: dict[str, int] = {}
        self._failed_sends = 0

    def polled(self, result: PollResult) -> None:
        """Count one finished poll (a feed removed while claimed is no poll)."""
        if result.outcome is PollOutcome.REMOVED:
            return
        with self._lock:
            self._polls += 1
            self._feeds.add(result.feed)
            self._new += result.stats.new
            if result.outcome not in _ANSWERED:
                self._failed_feeds[result.feed] = self._failed_feeds.get(result.feed, 0) + 1

    def delivered(self, stats: DeliveryStats) -> None:
        """Count one delivery run: alerts sent, and failed sends (dead letters included)."""
        with self._lock:
            self._sent += stats.sent
            self._failed_sends += stats.failed + stats.dead

    def beat(self, now_ms: int) -> Beat:
        """What happened since the last beat (or the start); the counts start again."""
        with self._lock:
            beat = Beat(
                since_ms=self._since,
                until_ms=now_ms,
                polls=self._polls,
                feeds=len(self._feeds),
                new_items=self._new,
                alerts_sent=self._sent,
                failed_polls=sum(self._failed_feeds.values()),
                failed_feeds=tuple(sorted(self._failed_feeds)),
                failed_sends=self._failed_sends,
            )
            self._since = now_ms
            self._reset()
        return beat


def span_text(seconds: float) -> str:
    """``45s``, ``5m``, ``5m30s``, ``2h``, ``2h5m``: a span as the config writes one."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m}m{rest}s" if rest else f"{m}m"
    h, rest = divmod(s // 60, 60)
    return f"{h}h{rest}m" if rest else f"{h}h"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _names(feeds: tuple[str, ...]) -> str:
    named = ", ".join(f"'{f}'" for f in feeds[:_NAMED])
    more = len(feeds) - _NAMED
    return named + (f" and {more} more feed{_s(more)}" if more > 0 else "")
