"""Cron expressions (digest schedules): checking one, and the next time it fires."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger


def check_cron(expr: str, timezone: str) -> None:
    """Raise ValueError for a cron expression APScheduler cannot read."""
    try:
        CronTrigger.from_crontab(expr, timezone=ZoneInfo(timezone))
    except ValueError as e:
        raise ValueError(f"invalid cron expression {expr!r}: {e}") from None


def next_cron_time(expr: str, timezone: str, after: datetime) -> datetime:
    """The first time the cron expression fires strictly after ``after``."""
    trigger = CronTrigger.from_crontab(expr, timezone=ZoneInfo(timezone))
    fire = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    assert fire is not None
    return fire
