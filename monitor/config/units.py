"""Quantities written with a unit in the config: durations, sizes, rates, backlogs (pure)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS: dict[str | None, float] = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    None: 1,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_SIZE_UNITS: dict[str | None, int] = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 10**6,
    "mib": 2**20,
    "gb": 10**9,
    "gib": 2**30,
    None: 1,
}
RATE_PATTERN = (
    r"^\s*(\d+)\s*/\s*(?:(\d+(?:\.\d+)?)\s*)?"
    r"(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$"
)
_RATE = re.compile(RATE_PATTERN)
_RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"30s"``, ``"5m"``, ``"24h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 24h")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"expected a duration such as 30s, 5m, 24h, got {value!r}")
    return float(m[1]) * _DURATION_UNITS[m[2]]


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"15MiB"``, ``"500KB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"expected a size such as 15MiB, got {value!r}")
    return int(float(m[1]) * _SIZE_UNITS[m[2].lower() if m[2] else None])


def parse_rate(text: str) -> tuple[int, float]:
    """(count, period in seconds) from ``"20/min"``, ``"5/10s"``, ``"100 / hour"``."""
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"expected a rate such as 20/min or 5/10s, got {text!r}")
    return int(m[1]), float(m[2] or 1) * _RATE_UNITS[m[3]]


def check_backlog(value: str) -> str:
    """``value`` if it is a backlog: ``none``, ``all`` or a duration; else ValueError."""
    if value not in ("none", "all"):
        parse_duration(value)
    return value


def backlog_seconds(value: str) -> float | None:
    """Seconds of backlog to alert for: None means all, 0 none."""
    if value == "all":
        return None
    if value == "none":
        return 0.0
    return parse_duration(value)
