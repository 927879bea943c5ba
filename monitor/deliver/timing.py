"""When a held alert goes out: the end of quiet hours and the release of a digest.

Pure: every function takes the times it needs and reads no clock. Datetimes are aware
(UTC unless a name says otherwise); ``*_ms`` values are UTC epoch milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.deliver.settings import DigestSchedule, QuietHours
from monitor.schedule.cron import next_cron_time


def _minutes(hh_mm: str) -> tuple[int, int]:
    hours, minutes = hh_mm.split(":")
    return int(hours), int(minutes)


def quiet_end(quiet: QuietHours, at: datetime) -> datetime | None:
    """The end of the quiet period containing ``at``, or None when ``at`` is not quiet."""
    zone = ZoneInfo(quiet.timezone)
    local = at.astimezone(zone)
    sh, sm = _minutes(quiet.start)
    eh, em = _minutes(quiet.end)
    minute = local.hour * 60 + local.minute
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        return None
    quiet_now = start <= minute < end if start < end else minute >= start or minute < end
    if not quiet_now:
        return None
    end_day = local.date()
    if start > end and minute >= start:
        end_day += timedelta(days=1)
    end_local = datetime(end_day.year, end_day.month, end_day.day, eh, em, tzinfo=zone)
    return end_local.astimezone(UTC)


def digest_release(
    digest: DigestSchedule, created: datetime, opened: datetime | None = None
) -> datetime:
    """When the digest an alert created at ``created`` belongs to goes out.

    A cron schedule releases at its next time; a window opens with the first alert and
    collects those that follow, so an alert joins the window already ``opened`` (its
    release time) if there is one.
    """
    if digest.schedule:
        return next_cron_time(digest.schedule, digest.timezone, created)
    if opened is not None:
        return opened
    assert digest.window_s is not None  # DigestSchedule holds one of the two
    return created + timedelta(seconds=digest.window_s)


def hold_until_ms(
    now_ms: int,
    created_ms: int,
    digest: DigestSchedule | None,
    quiet: QuietHours | None,
    opened_ms: int | None = None,
) -> int | None:
    """Until when a new alert is held back (by its digest, then by quiet hours at the
    time it would go out), or None when it goes out now."""
    now = _utc(now_ms)
    release: datetime | None = None
    if digest is not None:
        opened = _utc(opened_ms) if opened_ms is not None else None
        release = digest_release(digest, _utc(created_ms), opened)
    if quiet is not None:
        end = quiet_end(quiet, release or now)
        if end is not None:
            release = end
    if release is None or release <= now:
        return None
    return int(release.timestamp() * 1000)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
