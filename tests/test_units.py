"""monitor.config.units: durations, sizes, rates and backlogs as the config writes them."""

from __future__ import annotations

import pytest

from monitor.config.units import (
    backlog_seconds,
    check_backlog,
    parse_duration,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    "value, seconds",
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        (" 24h ", 86400.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("1.5h", 5400.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [True, "soon", "5 min", "-5s", "", "5y"])
def test_not_durations(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 30s"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value, size",
    [
        (1048576, 1048576),
        ("512", 512),
        ("15MiB", 15 * 2**20),
        ("500KB", 500_000),
        ("1 kib", 1024),
        ("2GB", 2 * 10**9),
        ("1.5MiB", int(1.5 * 2**20)),
        ("7b", 7),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [True, "big", "15 MiBs", "-1", "1TB"])
def test_not_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="expected a size such as 15MiB"):
        parse_size(value)


@pytest.mark.parametrize(
    "text, rate",
    [
        ("20/min", (20, 60.0)),
        ("5/10s", (5, 10.0)),
        ("100 / hour", (100, 3600.0)),
        ("1/day", (1, 86400.0)),
        ("3/2.5minutes", (3, 150.0)),
        ("10/sec", (10, 1.0)),
    ],
)
def test_rates(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["20", "20/fortnight", "/min", "1.5/min", "20 per min"])
def test_not_rates(text: str) -> None:
    with pytest.raises(ValueError, match="expected a rate such as 20/min"):
        parse_rate(text)


@pytest.mark.parametrize(
    "text, window",
    [
        ("none", 0.0),
        ("all", None),
        ("24h", 86400.0),
        ("90", 90.0),
    ],
)
def test_backlogs(text: str, window: float | None) -> None:
    assert check_backlog(text) == text
    assert backlog_seconds(text) == window


def test_not_a_backlog() -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        check_backlog("some")
