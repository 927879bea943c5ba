"""When to poll a feed next, and whether it is healthy: pure decisions, no I/O.

Everything here takes the current time (epoch seconds) and, where randomness is
wanted, a uniform sample in [0, 1) as arguments, so the rules can be tested with
tables and the poll pipeline that calls them stays thin.

After a success the feed's interval is the floor, and what the server says about
freshness may raise it: ``Cache-Control: max-age``, ``Expires`` and RSS ``<ttl>``
(the longest of them, capped so a hostile or mistaken server cannot park a feed
for a year). After a failure the interval doubles per consecutive failure, with
jitter, up to a cap; ``Retry-After`` on 429 and 503 is honoured (capped too). A
feed that failed ``unhealthy_after`` times in a row is unhealthy: shown as such,
and still retried at the cap, so it recovers by itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

# A freshness hint (max-age, Expires, ttl) or a Retry-After never delays a poll by
# more than this: a server asking for "a year" gets a day.
MAX_HINT_S = 24 * 3600.0
MAX_RETRY_AFTER_S = 24 * 3600.0
DEFAULT_MAX_BACKOFF_S = 6 * 3600.0
DEFAULT_UNHEALTHY_AFTER = 5
# Back-off delays are stretched by up to this fraction, so feeds that failed together
# (one host down) do not all come back in the same second.
BACKOFF_JITTER = 0.25
RETRY_AFTER_STATUSES = frozenset({429, 503})

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.I)
_NO_HINT = re.compile(r"(?:^|[,\s])(?:no-store|no-cache)\b", re.I)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def freshness_s(headers: Mapping[str, str], now: float) -> float | None:
    """How long the response says it stays fresh, in seconds; None if it does not say.

    ``Cache-Control: max-age`` wins over ``Expires`` (RFC 9111 5.3). ``Expires`` is
    read against the response's own ``Date`` when present, so a server whose clock is
    off still means what it says. ``no-store``/``no-cache`` give no hint. An invalid
    ``Expires`` means "already expired" (RFC 9111), which is no hint either.
    """
    cache_control = _header(headers, "cache-control") or ""
    if _NO_HINT.search(cache_control):
        return None
    m = _MAX_AGE.search(cache_control)
    if m:
        return float(m[1])
    expires = _http_date(_header(headers, "expires"))
    if expires is None:
        return None
    date = _http_date(_header(headers, "date"))
    return max(0.0, expires - (date if date is not None else now))


def min_interval_s(headers: Mapping[str, str], ttl_s: float | None, now: float) -> float:
    """The server's lower bound on the polling interval: the longest of max-age /
    Expires and the feed's ``<ttl>``, capped at ``MAX_HINT_S``; 0 when none is given."""
    hints = [h for h in (freshness_s(headers, now), ttl_s) if h is not None and h > 0]
    return min(max(hints), MAX_HINT_S) if hints else 0.0


def retry_after_s(status: int | None, value: str | None, now: float) -> float | None:
    """Seconds a 429 or 503 asks us to wait (delta-seconds or an HTTP date), capped at
    ``MAX_RETRY_AFTER_S``; None for other statuses or a missing or unreadable value."""
    if status not in RETRY_AFTER_STATUSES or not value:
        return None
    seconds = retry_after_value_s(value, now)
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)


def retry_after_value_s(value: str, now: float) -> float | None:
    """Seconds a Retry-After value asks for, delta-seconds or an HTTP date (``now``: the
    wall clock, seconds), at least 0; None when it cannot be read."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    return None if when is None else max(when - now, 0.0)


def backoff_s(interval_s: float, failures: int, max_backoff_s: float, rand: float) -> float:
    """Delay after the ``failures``-th consecutive failure (1 for the first).

    ``interval * 2**(failures-1)``, stretched by up to ``BACKOFF_JITTER`` with ``rand``
    (uniform in [0, 1)), never above the cap; the cap is at least the interval, so a
    feed polled daily is not polled more often because it fails.
    """
    cap = max(interval_s, max_backoff_s)
    exponent = min(max(failures, 1) - 1, 60)  # 2**60 intervals is past any cap
    base = interval_s * math.ldexp(1.0, exponent)
    return min(base * (1.0 + BACKOFF_JITTER * rand), cap)


@dataclass(frozen=True)
class Next:
    """When to poll next and why (the reason goes to the log)."""

    delay_s: float
    reason: str


def after_success(
    interval_s: float,
    jitter_s: float,
    headers: Mapping[str, str],
    ttl_s: float | None,
    now: float,
    rand: float,
) -> Next:
    """Next poll after a 200 or 304: the interval, raised by the server's freshness hints,
    plus up to ``jitter_s`` of spread."""
    floor = min_interval_s(headers, ttl_s, now)
    spread = jitter_s * rand
    if floor > interval_s:
        return Next(floor + spread, f"server asks for at least {floor:.0f} s")
    return Next(interval_s + spread, "interval")


def after_failure(
    interval_s: float, failures: int, max_backoff_s: float, retry_after: float | None, rand: float
) -> Next:
    """Next poll after a failed one: back-off, or the server's Retry-After if longer.

    ``retry_after`` is what ``retry_after_s`` made of the response (None when the
    status was not 429 or 503, or it said nothing).
    """
    delay = backoff_s(interval_s, failures, max_backoff_s, rand)
    if retry_after is not None:
        wait = min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
        if wait >= delay:
            return Next(wait, f"Retry-After {wait:.0f} s")
    return Next(delay, f"back-off after {failures} failure{'s' if failures != 1 else ''}")


def unhealthy(failures: int, threshold: int) -> bool:
    """A feed is unhealthy once ``threshold`` consecutive polls have failed."""
    return threshold > 0 and failures >= threshold


def unhealthy_reason(
    failures: int, threshold: int, outcome: str | None, error: str | None
) -> str | None:
    """What ``status`` shows for an unhealthy feed; None for a healthy one."""
    if not unhealthy(failures, threshold):
        return None
    last = f"{outcome}: {error}" if outcome and error else outcome or error or "unknown"
    return f"{failures} consecutive failures; last: {last}"
