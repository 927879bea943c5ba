"""Cron expressions (digest schedules): checking one, and the next time it fires."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger


def check_cron(expr: str, timezone: str) -> None:
    """Raise ValueError for a cron expression APScheduler cannot read or that never fires."""
    zone = ZoneInfo(timezone)
    try:
        trigger = CronTrigger.from_crontab(expr, timezone=zone)
    except ValueError as e:
        raise ValueError(f"invalid cron expression {expr!r}: {e}") from None
    # Five fields name no year: an expression that fires once fires every year or every
    # leap year, so one fire time after any fixed date tells; "0 8 30 2 *" has none.
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=zone)) is None:
        raise ValueError(f"invalid cron expression {expr!r}: it never fires")


def next_cron_time(expr: str, timezone: str, after: datetime) -> datetime:
    """The first time the cron expression fires strictly after ``after``."""
    trigger = CronTrigger.from_crontab(expr, timezone=ZoneInfo(timezone))
    fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    assert fire is not None
    return fire
