"""The last few polls of each feed, kept in the daemon's memory for the console's feed
page: no write on the poll path, nothing to prune; lost at a restart, and each daemon
sharing a database keeps only its own."""

from __future__ import annotations

import struct
import threading

from monitor.types import PollOutcome, PollRecord

KEPT = 20
# A poll as kept: started_ms, seconds, outcome, status (-1: none), new, updated, alerts;
# 33 bytes where a record takes about 150 (20 polls of 5,000 feeds: 8 MB, not 17).
_PACKED = struct.Struct("<qdBiiii")
_OUTCOMES = tuple(PollOutcome)
_OUTCOME_INDEX = {outcome: i for i, outcome in enumerate(_OUTCOMES)}
Packed = bytes | tuple[bytes, str]  # with the error, when there is one


def _pack(poll: PollRecord) -> Packed:
    status = -1 if poll.status is None else poll.status
    packed = _PACKED.pack(
        poll.started_ms,
        poll.seconds,
        _OUTCOME_INDEX[poll.outcome],
        status,
        poll.new,
        poll.updated,
        poll.alerts,
    )
    return packed if poll.error is None else (packed, poll.error)


def _unpack(entry: Packed) -> PollRecord:
    packed, error = (entry, None) if isinstance(entry, bytes) else entry
    started_ms, seconds, outcome, status, new, updated, alerts = _PACKED.unpack(packed)
    return PollRecord(
        started_ms,
        seconds,
        _OUTCOMES[outcome],
        None if status == -1 else status,
        new,
        updated,
        alerts,
        error,
    )


class PollLog:
    """Per feed, the ``kept`` most recent polls, newest first when read."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        # Lists, oldest first: a deque takes a block of 64 slots however short it is
        # (about 1 KB a feed, 5 MB at 5,000 feeds; a list of 20 takes a fifth of that).
        self._polls: dict[str, list[Packed]] = {}
        self._lock = threading.Lock()

    def record(self, feed_id: str, poll: PollRecord) -> None:
        with self._lock:
            polls = self._polls.get(feed_id)
            if polls is None:
                polls = self._polls[feed_id] = []
            polls.append(_pack(poll))
            if len(polls) > self._kept:
                del polls[0]

    def recent(self, feed_id: str) -> list[PollRecord]:
        with self._lock:
            kept = list(self._polls.get(feed_id, ()))
        return [_unpack(entry) for entry in reversed(kept)]
