"""Per-host politeness: how many requests go to one host name at once, and requests that
get no answer stepping aside, so a host's hanging feeds do not hold up its healthy ones.

A request takes one of its host's ``limit`` slots before it connects and gives it back as
soon as its response is read (or fails). One that has had no response headers for a while
steps aside, provided the host answered a request within ``ANSWERING_S`` (the host works;
this route hangs): its slot goes to the next request of the host while it waits on, up to its
own timeouts. "A while" is four times the host's usual time to answer (a moving average),
at least ``MIN_STALL`` and at most ``stall`` (also the time allowed before the host has
answered anything). At most ``aside_cap(limit)`` requests of a host stand aside at once;
beyond that, or while the host answers nobody, a stalled request keeps its slot, so a
host that is down or overloaded gets no more than ``limit`` requests from us.

A URL whose last request stalled (a route that hangs every time) waits for a place among
those standing aside instead of a slot, while its host answers others: it does not hold
up the host's other feeds again, until it answers.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable

from monitor.types import Clock

ASIDE_MIN = 16  # requests of a host that may stand aside: this, or 2 × its limit
ANSWERING_S = 60.0  # a host that answered within this long still answers
STALL_FACTOR = 4.0  # a request is stalled after this many times the host's usual answer
MIN_STALL = 0.5  # seconds: never sooner


def literal_is_private(host: str) -> bool | None:
    """Whether a host written as an address (or ``localhost``) is not public; None for a
    name, which only a connection can tell."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None
    return not ip.is_global


def aside_cap(limit: int) -> int:
    """Requests of a host with this limit that may stand aside at once."""
    return max(ASIDE_MIN, 2 * limit)


class HostGate:
    """The slots of one host name: ``busy`` requests hold one, ``aside`` stepped aside."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.aside = 0
        self.answer_s: float | None = None  # moving average of the time to answer
        self.answered_at: float | None = None  # when the last answer came (monotonic)
        self.lock = threading.Condition()

    def stall_after(self, most: float) -> float:
        """Seconds without an answer after which a request of this host steps aside."""
        usual = self.answer_s
        if usual is None:
            return most
        return min(most, max(MIN_STALL, STALL_FACTOR * usual))

    def answered_in(self, seconds: float, now: float) -> None:
        with self.lock:
            usual = self.answer_s
            self.answer_s = seconds if usual is None else 0.8 * usual + 0.2 * seconds
            self.answered_at = now

    def answering(self, since: float) -> bool:
        """Whether the host answered a request after ``since``."""
        at = self.answered_at
        return at is not None and at > since

    def acquire(self, timeout: float, aside: bool = False) -> bool:
        """A slot (or, ``aside``, a place among the requests standing aside) within
        ``timeout`` seconds; False when none came free."""
        with self.lock:
            if aside:
                room = self.lock.wait_for(
                    lambda: self.aside < aside_cap(self.limit), max(timeout, 0)
                )
                if room:
                    self.aside += 1
                return room
            if not self.lock.wait_for(lambda: self.busy < self.limit, max(timeout, 0)):
                return False
            self.busy += 1
            return True

    def raise_limit(self, limit: int) -> None:
        """A higher limit for this host (it turned out to be on a private address)."""
        with self.lock:
            if limit > self.limit:
                self.limit = limit
                self.lock.notify_all()


class Slot:
    """One request's place at its host: held, stood aside, or given back.

    The watchdog thread calls ``expire`` at ``deadline`` (``stall`` seconds after the slot
    was taken); the fetching thread calls ``answered`` and ``release``.
    """

    def __init__(self, gate: HostGate, stall: float, clock: Clock, aside: bool = False) -> None:
        """``aside``: the place ``gate.acquire(..., aside=True)`` gave, not a slot."""
        self.gate = gate
        self.clock = clock
        self.start = clock.monotonic()
        self.stall = gate.stall_after(stall)
        self.deadline = self.start + self.stall
        self.done = False  # answered or given back: the watchdog leaves it alone
        self.aside = aside
        self.got_answer = False

    def answered(self) -> None:
        """Response headers came: the request keeps its slot until its body is read."""
        self.done = True
        self.got_answer = True
        now = self.clock.monotonic()
        self.gate.answered_in(now - self.start, now)

    def stalled(self) -> bool:
        """No answer came within the stall time (or ever, for one that started aside)."""
        return not self.got_answer and (
            self.aside or self.clock.monotonic() - self.start >= self.stall
        )

    def expire(self) -> bool:
        """Step aside if there is room; False when the slot is kept (room may come later)."""
        gate = self.gate
        with gate.lock:
            if self.done or self.aside:
                return True
            answering = gate.answering(self.clock.monotonic() - ANSWERING_S)
            if gate.aside >= aside_cap(gate.limit) or not answering:
                self.deadline += self.stall
                return False
            self.aside = True
            gate.busy -= 1
            gate.aside += 1
            gate.lock.notify_all()
            return True

    def release(self) -> None:
        gate = self.gate
        with gate.lock:
            self.done = True
            if self.aside:
                gate.aside -= 1
            else:
                gate.busy -= 1
            gate.lock.notify_all()


AUTO_WORKERS = (8, 64)  # the bounds of scheduler.workers: auto


def auto_workers(feeds_per_host: dict[str, int], limit_of: Callable[[str], int]) -> int:
    """Polls worth running at once for these feeds (count per host name): per host, as
    many as can be in flight there (its limit, and ``aside_cap`` standing aside), and
    ``AUTO_WORKERS[0]`` more for polls past their fetch (parsing, storing), within
    ``AUTO_WORKERS``. Threads cost little while they wait on the network, and a pool
    starts them only when there is work for them."""
    low, high = AUTO_WORKERS
    total = low
    for host, n in feeds_per_host.items():
        limit = limit_of(host)
        total += min(n, limit + aside_cap(limit))
        if total >= high:
            return high
    return total
