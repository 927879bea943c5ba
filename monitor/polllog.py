"""The last few polls of each feed, kept in the daemon's memory for the console's feed
page: no write on the poll path, nothing to prune; lost at a restart, and each daemon
sharing a database keeps only its own."""

from __future__ import annotations

import threading

from monitor.types import PollRecord

KEPT = 20


class PollLog:
    """Per feed, the ``kept`` most recent polls, newest first when read."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        # Lists, oldest first: a deque takes a block of 64 slots however short it is
        # (about 1 KB a feed, 5 MB at 5,000 feeds; a list of 20 takes a fifth of that).
        self._polls: dict[str, list[PollRecord]] = {}
        self._lock = threading.Lock()

    def record(self, feed_id: str, poll: PollRecord) -> None:
        with self._lock:
            polls = self._polls.get(feed_id)
            if polls is None:
                polls = self._polls[feed_id] = []
            polls.append(poll)
            if len(polls) > self._kept:
                del polls[0]

    def recent(self, feed_id: str) -> list[PollRecord]:
        with self._lock:
            return list(reversed(self._polls.get(feed_id, ())))
