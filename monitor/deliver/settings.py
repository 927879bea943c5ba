"""What the deliverer is told by the configuration, as frozen records.

Built from the config models by ``monitor.deliver.from_config``; nothing here knows the
config file, so the deliverer can be built and tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.errors import ConfigError


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Hold alerts from ``start`` to ``end`` ("HH:MM", local time in ``timezone``); a
    period whose end is before its start runs over midnight."""

    start: str
    end: str
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """Alerts go out together: at each time of a cron ``schedule`` (read in ``timezone``),
    or ``window_s`` seconds after the first of a group. Exactly one of the two is set."""

    schedule: str | None = None
    window_s: float | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.schedule is None) == (self.window_s is None):
            raise ConfigError("a digest needs exactly one of schedule (cron) or window")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` messages in any ``per_s`` seconds."""

    count: int
    per_s: float


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """One channel: its Apprise URLs, how its messages look, and when they may go."""

    name: str
    urls: tuple[str, ...]
    body_format: str  # "text", "markdown" or "html"
    language: str = "en"
    timezone: str = "UTC"  # of the times shown in messages
    title_template: str | None = None
    body_template: str | None = None
    digest_title_template: str | None = None
    digest_body_template: str | None = None
    rate_limit: RateLimit | None = None
    digest: DigestSchedule | None = None
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How the outbox is sent and retried; durations in seconds."""

    max_attempts: int  # failed sends before a dead letter
    max_age_s: float  # an alert older than this is a dead letter when a send fails
    backoff_s: float  # first retry delay; doubles per attempt
    max_backoff_s: float
    batch: int  # alerts leased per run
    parallel: int  # messages sent at once
    lease_s: float  # how long leased alerts stay with this process
