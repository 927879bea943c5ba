"""One total deadline per fetch: the sockets a fetch uses, and the watchdog thread that
shuts them down when the deadline passes (and tells a stalled request to give its host's
slot up, fetch/hosts.py)."""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
from typing import Protocol

from monitor.types import Clock


class Timed(Protocol):
    """What the watchdog keeps: ``expire()`` is called at ``deadline`` unless ``done``;
    an ``expire()`` that returns False is called again at the (moved) ``deadline``."""

    deadline: float
    done: bool

    def expire(self) -> bool: ...


class Attempt:
    """One fetch in progress: its deadline and the sockets its connections report.

    ``deadline`` is on the scale of ``clock.monotonic()``.
    """

    def __init__(self, deadline: float, clock: Clock) -> None:
        self.deadline = deadline
        self.clock = clock
        self.expired = False
        self.done = False  # the fetch has returned: the watchdog leaves it alone
        self.private = False  # a connection went to a non-public address (allowed)
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []  # duplicates we may shut down

    def left(self) -> float:
        return self.deadline - self.clock.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Remember a socket this fetch uses, so the watchdog can cut it."""
        if sock is None:
            return
        try:
            # A duplicate descriptor: shutdown() acts on the connection itself, so it
            # also reaches the TLS socket that wraps (and detaches) the original. Made
            # with os.dup: SSLSocket has no dup(), and the blocking mode, shared by both
            # descriptors, is left as it is.
            fd = sock.fileno()
            if fd < 0:
                return
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        with self._lock:
            self._socks.append(dup)
            expired = self.expired
        if expired:
            _cut(dup)

    def expire(self) -> bool:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for s in socks:
            _cut(s)
        return True

    def close(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class Watchdog:
    """One thread for every fetch's deadline and every host slot's stall time, in
    ``clock.monotonic()`` seconds (see docs/architecture.md, 'One watchdog thread')."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Timed]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: Timed) -> None:
        with self._cond:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="fetch-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is attempt:  # sooner than what the thread waits for
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._thread = None
                        return
                    now = self._clock.monotonic()
                    if self._heap[0][0] <= now:
                        attempt = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(self._heap[0][0] - now)
            if not attempt.done and not attempt.expire():
                self.watch(attempt)


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
