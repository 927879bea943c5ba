"""Small helpers shared by the local test servers: free ports and polling waits."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``.

    Prefer letting a server bind port 0 itself (all servers here do); this is for the
    rare test that must know a port before anything listens on it, e.g. to configure a
    feed URL that is refused until the test starts the server. Another process could
    take the port in between, which on a test machine is unlikely enough.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    Raises ``TimeoutError`` after ``timeout`` seconds; ``message`` (or a callable giving
    it, evaluated only on failure) says what was awaited and what was seen instead.
    The predicate is always tried once more at the deadline, so a slow machine that
    sleeps past the deadline does not fail a condition that has in fact come true.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    result = predicate()
    if result:
        return result
    text = message() if callable(message) else message
    raise TimeoutError(text or f"condition not met within {timeout:.2f}s: {predicate!r}")
