"""monitor.schedule: cron expressions, and the job runner's first-run times from its clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.schedule.cron import check_cron, next_cron_time
from monitor.schedule.jobs import JobRunner
from tests.support.clock import FakeClock


@pytest.mark.parametrize(
    "expr, after, fire",
    [
        # 08:00 in Shanghai is 00:00 UTC; strictly after a fire time is the next day's.
        (
            "0 8 * * *",
            datetime(2024, 3, 1, 0, 0, tzinfo=UTC),
            datetime(2024, 3, 2, 0, 0, tzinfo=UTC),
        ),
        (
            "0 8 * * *",
            datetime(2024, 3, 1, 23, 59, tzinfo=UTC),
            datetime(2024, 3, 2, 0, 0, tzinfo=UTC),
        ),
        ("0 0 29 2 *", datetime(2024, 3, 1, tzinfo=UTC), datetime(2028, 2, 28, 16, 0, tzinfo=UTC)),
    ],
)
def test_next_cron_time(expr: str, after: datetime, fire: datetime) -> None:
    assert next_cron_time(expr, "Asia/Shanghai", after) == fire


@pytest.mark.parametrize("expr", ["0 8 * *", "61 8 * * *", "0 0 30 2 *", "0 0 31 4,6 *"])
def test_a_bad_or_never_firing_cron_is_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        check_cron(expr, "UTC")


def test_a_digest_that_never_fires_is_a_config_error() -> None:
    text = "channels:\n  c:\n    url: console://\n    digest:\n      schedule: '0 8 30 2 *'\n"
    with pytest.raises(
        ConfigError,
        match=r"t.yaml:4 channels.c.digest: invalid cron "
        r"expression '0 8 30 2 \*': it never fires",
    ):
        parse_config(text, "t.yaml")


def test_first_run_times_come_from_the_clock() -> None:
    clock = FakeClock(start_ms=1_700_000_000_000)
    runner = JobRunner(clock)
    runner.add("tick", lambda: None, every=5, first_in=2.5)
    job = runner._sched.get_job("tick")
    assert job.next_run_time == datetime.fromtimestamp(1_700_000_002.5, UTC)
    clock.advance(60)
    runner.wake("tick")
    assert runner._sched.get_job("tick").next_run_time == datetime.fromtimestamp(1_700_000_060, UTC)
    runner.shutdown()
