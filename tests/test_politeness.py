"""monitor.schedule.politeness: when to poll next and whether a feed is healthy (pure, tables)."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from monitor.schedule import politeness as p

NOW = 1_700_000_000.0
DAY = 24 * 3600.0


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, None),
        ({"Cache-Control": "max-age=600"}, 600.0),
        ({"cache-control": "public, max-age=0"}, 0.0),
        ({"Cache-Control": 'private, max-age="120", must-revalidate'}, 120.0),
        ({"Cache-Control": "s-maxage=900"}, None),  # for shared caches, not for us
        ({"Cache-Control": "no-cache, max-age=600"}, None),
        ({"Cache-Control": "no-store"}, None),
        # max-age wins over Expires (RFC 9111 5.3)
        ({"Cache-Control": "max-age=60", "Expires": http_date(NOW + 3600)}, 60.0),
        ({"Expires": http_date(NOW + 3600)}, 3600.0),
        ({"Expires": http_date(NOW - 3600)}, 0.0),
        ({"Expires": "0"}, None),  # invalid: already expired
        ({"Expires": "tomorrow-ish"}, None),
        # Expires is read against the response's Date: a server clock 1 h behind still
        # means "fresh for 10 minutes".
        ({"Expires": http_date(NOW - 3000), "Date": http_date(NOW - 3600)}, 600.0),
    ],
)
def test_freshness_from_headers(headers: dict[str, str], expected: float | None) -> None:
    got = p.freshness_s(headers, NOW)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    "headers, ttl, expected",
    [
        ({}, None, 0.0),
        ({}, 3600, 3600.0),
        ({"Cache-Control": "max-age=600"}, 1800, 1800.0),  # the longest hint
        ({"Cache-Control": "max-age=7200"}, 1800, 7200.0),
        ({"Cache-Control": "max-age=31536000"}, None, DAY),  # a year is capped at a day
        ({"Expires": http_date(NOW + 10 * DAY)}, None, DAY),
        ({}, 60 * 24 * 60 * 30, DAY),  # ttl of a month
    ],
)
def test_min_interval_is_the_longest_hint_capped(
    headers: dict[str, str], ttl: int | None, expected: float
) -> None:
    assert p.min_interval_s(headers, ttl, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "interval, headers, ttl, rand, delay, reason",
    [
        (300, {}, None, 0.0, 300, "interval"),
        (300, {}, None, 0.5, 315, "interval"),  # half of the 30 s jitter
        (300, {"Cache-Control": "max-age=60"}, None, 0.0, 300, "interval"),  # shorter: ignored
        (300, {"Cache-Control": "max-age=900"}, None, 0.0, 900, "server asks"),
        (300, {}, 3600, 1.0, 3630, "server asks"),
        (300, {"Cache-Control": "max-age=999999"}, None, 0.0, DAY, "server asks"),
    ],
)
def test_after_success(
    interval: float,
    headers: dict[str, str],
    ttl: int | None,
    rand: float,
    delay: float,
    reason: str,
) -> None:
    nxt = p.after_success(interval, 30, headers, ttl, NOW, rand)
    assert nxt.delay_s == pytest.approx(delay)
    assert nxt.reason.startswith(reason)


@pytest.mark.parametrize(
    "interval, failures, cap, rand, expected",
    [
        (60, 1, 3600, 0.0, 60),
        (60, 2, 3600, 0.0, 120),
        (60, 3, 3600, 0.0, 240),
        (60, 3, 3600, 1.0, 300),  # +25 % jitter at most
        (60, 6, 3600, 0.0, 1920),
        (60, 7, 3600, 0.0, 3600),  # 3840 capped
        (60, 7, 3600, 0.99, 3600),  # jitter never passes the cap
        (60, 10_000, 3600, 0.5, 3600),  # no overflow after very many failures
        (7200, 1, 3600, 0.0, 7200),  # the cap is never below the interval
        (7200, 4, 3600, 0.0, 7200),
        (60, 0, 3600, 0.0, 60),  # defensive: treated as the first failure
    ],
)
def test_backoff_doubles_with_jitter_up_to_the_cap(
    interval: float, failures: int, cap: float, rand: float, expected: float
) -> None:
    assert p.backoff_s(interval, failures, cap, rand) == pytest.approx(expected)


def test_backoff_jitter_spreads_feeds_that_failed_together() -> None:
    delays = {p.backoff_s(60, 3, 3600, r / 10) for r in range(10)}
    assert len(delays) == 10 and min(delays) == 240 and max(delays) < 300


@pytest.mark.parametrize(
    "status, value, expected",
    [
        (429, "120", 120.0),
        (503, "  30 ", 30.0),
        (503, http_date(NOW + 90), 90.0),
        (429, http_date(NOW - 90), 0.0),  # a date in the past: no wait
        (429, "999999999", p.MAX_RETRY_AFTER_S),  # capped
        (429, "soon", None),
        (429, "", None),
        (429, None, None),
        (500, "120", None),  # only 429 and 503 carry it for us
        (301, "120", None),
        (None, "120", None),
    ],
)
def test_retry_after(status: int | None, value: str | None, expected: float | None) -> None:
    got = p.retry_after_s(status, value, NOW)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    "failures, retry_after, delay, reason",
    [
        (1, None, 60, "back-off after 1 failure"),
        (3, None, 240, "back-off after 3 failures"),
        (1, 120.0, 120, "Retry-After 120 s"),  # longer than the back-off: honoured
        (3, 120.0, 240, "back-off"),  # shorter than the back-off: the back-off stands
        (1, 10 * DAY, DAY, "Retry-After"),  # capped
        (1, 0.0, 60, "back-off"),
    ],
)
def test_after_failure(failures: int, retry_after: float | None, delay: float, reason: str) -> None:
    nxt = p.after_failure(60, failures, 3600, retry_after, 0.0)
    assert nxt.delay_s == pytest.approx(delay)
    assert nxt.reason.startswith(reason)


@pytest.mark.parametrize(
    "failures, threshold, sick",
    [
        (0, 5, False),
        (4, 5, False),
        (5, 5, True),
        (50, 5, True),
        (1, 1, True),
        (3, 0, False),
    ],
)
def test_unhealthy_after_n_consecutive_failures(failures: int, threshold: int, sick: bool) -> None:
    assert p.unhealthy(failures, threshold) is sick
    reason = p.unhealthy_reason(failures, threshold, "timeout", "body not complete within 3 s")
    if sick:
        assert reason == (
            f"{failures} consecutive failures; last: timeout: body not complete within 3 s"
        )
    else:
        assert reason is None


def test_unhealthy_reason_without_error_text() -> None:
    assert (
        p.unhealthy_reason(6, 5, "http-error", None) == "6 consecutive failures; last: http-error"
    )
    assert p.unhealthy_reason(6, 5, None, None) == "6 consecutive failures; last: unknown"
