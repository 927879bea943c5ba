"""The configuration's pydantic models: what each key means, its default and its bounds.

Models are frozen; a model validator checks what one model can see (a digest's cron
expression, duplicate ids); references between parts are checked by the loader.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from monitor.config.fields import BACKLOG_SCHEMA, Duration, Size, TimeZone, also_text
from monitor.config.units import RATE_PATTERN, backlog_seconds, check_backlog, parse_rate
from monitor.schedule.cron import check_cron

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # feed ids and channel names


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Model):
    """Settings every feed inherits unless it sets its own."""

    interval: Duration = Field(300, gt=0, description="Poll interval per feed (e.g. 5m).")
    jitter: Duration = Field(30, ge=0, description="Random spread added to each interval.")
    timeout: Duration = Field(30, gt=0, description="Total deadline of one fetch.")
    connect_timeout: Duration = Field(10, gt=0, description="Socket connect timeout.")
    read_timeout: Duration = Field(20, gt=0, description="Socket read timeout.")
    max_bytes: Size = Field(15 * 2**20, gt=0, description="Body cap after decompression.")
    backlog: str = Field(
        "none",
        description="On a feed's first poll, alert for: none, all, or items newer than a "
        "window such as 24h.",
        json_schema_extra=BACKLOG_SCHEMA,
    )
    user_agent: str | None = Field(
        None, description="User-Agent header; default feed-monitor/VERSION."
    )
    max_redirects: int = Field(5, ge=0, le=20, description="Redirect hops followed per fetch.")
    per_host_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Requests to one public host name at once, across all feeds "
        "(hosts.NAME.concurrency overrides it for one host).",
    )
    private_host_concurrency: int = Field(
        16,
        ge=1,
        le=64,
        description="Requests at once to one host on a private or loopback address "
        "that allow_private_addresses or allowed_networks lets us poll (your own server).",
    )
    max_backoff: Duration = Field(
        6 * 3600,
        gt=0,
        description="Longest wait between polls of a failing feed (the "
        "interval doubles per failure up to this).",
    )
    unhealthy_after: int = Field(
        5,
        ge=1,
        description="Consecutive failures after which status shows a feed as "
        "unhealthy (it is still retried).",
    )
    allow_private_addresses: bool = Field(
        False, description="Poll feeds on private, loopback and link-local addresses."
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDR ranges polled even though not public, "
        "e.g. 10.1.2.0/24 (narrower than allow_private_addresses).",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(str(net).strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{net!r} is not a network such as 10.0.0.0/8 or fd00::/8"
                ) from None
        return [str(n).strip() for n in v]

    @field_validator("backlog")
    @classmethod
    def _backlog(cls, v: str) -> str:
        return check_backlog(v)

    def backlog_window(self) -> float | None:
        """Seconds of backlog to alert for; None means all, 0 none."""
        return backlog_seconds(self.backlog)


def _host_name(v: str) -> str:
    name = v.strip().lower().rstrip(".")
    if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[?[0-9a-f:.]+\]?", name):
        raise ValueError(
            f"{v!r} is not a host name: write the name alone, as in the feed URL "
            "(rsshub.example.org, 10.0.0.5), without scheme, port or path"
        )
    return name.strip("[]")


HostName = Annotated[str, AfterValidator(_host_name)]


class HostConfig(_Model):
    """Politeness towards one host name, for all feeds on it."""

    concurrency: int = Field(
        ge=1,
        le=64,
        description="Requests to this host at once, across all feeds (instead of "
        "defaults.per_host_concurrency or private_host_concurrency).",
    )


class FeedConfig(_Model):
    """One feed to poll: RSS, Atom or JSON Feed."""

    id: str = Field(pattern=ID_PATTERN, description="Short unique name used in rules and logs.")
    url: str = Field(description="http:// or https:// URL of the feed.")
    title: str | None = Field(None, description="Name shown in alerts; default the id.")
    interval: Duration | None = Field(None, gt=0, description="Overrides defaults.interval.")
    backlog: str | None = Field(
        None, description="Overrides defaults.backlog.", json_schema_extra=BACKLOG_SCHEMA
    )
    enabled: bool = Field(True, description="false keeps the feed here but stops polling it.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"feed URL must be http:// or https://, got {v!r}")
        return v

    @field_validator("backlog")
    @classmethod
    def _backlog(cls, v: str | None) -> str | None:
        return v if v is None else check_backlog(v)


class RateLimit(_Model):
    """At most count messages per period; written as an object or as 20/min, 5/10s."""

    model_config = ConfigDict(
        json_schema_extra=also_text(RATE_PATTERN, "count/period, e.g. 20/min or 5/10s")
    )
    count: int = Field(gt=0)
    per: Duration = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            count, per = parse_rate(data)
            return {"count": count, "per": per}
        return data


class DigestConfig(_Model):
    """Collect alerts and send them as one message: on a cron schedule or per window."""

    schedule: str | None = Field(None, description="Cron expression, e.g. '0 8 * * *'.")
    window: Duration | None = Field(None, gt=0, description="Group alerts for this long.")
    timezone: TimeZone = "UTC"

    @model_validator(mode="after")
    def _one_kind(self) -> DigestConfig:
        if (self.schedule is None) == (self.window is None):
            raise ValueError("a digest needs exactly one of schedule (cron) or window")
        if self.schedule is not None:
            check_cron(self.schedule, self.timezone)
        return self


class QuietHours(_Model):
    """Hold alerts between start and end; release them afterwards as one digest."""

    start: str = Field(pattern=r"^([01]?\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]?\d|2[0-3]):[0-5]\d$")
    timezone: TimeZone = "UTC"


def _channel_schema(schema: dict[str, Any]) -> None:
    """A channel is written with urls, with a single url, or as one URL string."""
    schema["properties"]["url"] = {
        "type": "string",
        "title": "Url",
        "description": "One Apprise URL (instead of urls).",
    }
    schema.pop("required", None)
    schema["oneOf"] = [{"required": ["urls"]}, {"required": ["url"]}]
    also_text(None, "one Apprise URL")(schema)


class ChannelConfig(_Model):
    """Where alerts go: one or more Apprise URLs, each sent to on its own."""

    model_config = ConfigDict(json_schema_extra=_channel_schema)
    urls: list[str] = Field(min_length=1, description="Apprise URLs; console:// prints.")
    format: Literal["text", "markdown", "html"] | None = Field(
        None, description="Body format; default html for email-only channels, else text."
    )
    language: Literal["en", "zh"] = "en"
    timezone: TimeZone = Field("UTC", description="Time zone of times shown in messages.")
    title_template: str | None = None
    body_template: str | None = None
    digest_title_template: str | None = None
    digest_body_template: str | None = None
    rate_limit: RateLimit | None = Field(None, description="e.g. 20/min; bursts are queued.")
    digest: DigestConfig | None = None
    quiet_hours: QuietHours | None = None

    def body_format(self) -> str:
        if self.format:
            return self.format
        emails = all(u.split(":", 1)[0].lower() in ("mailto", "mailtos") for u in self.urls)
        return "html" if emails else "text"

    @model_validator(mode="before")
    @classmethod
    def _single_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data and "urls" not in data:
            data = dict(data)
            data["urls"] = [data.pop("url")]
        elif isinstance(data, str):
            data = {"urls": [data]}
        return data


class CrossEditionConfig(_Model):
    """One alert for one story published in several editions (RFI /cn and /tw)."""

    window: Duration = Field(
        86400,
        gt=0,
        description="Items whose folded titles are equal and whose publish "
        "times are at most this far apart are one story.",
    )
    hold: Duration = Field(
        300,
        ge=0,
        description="New alerts of the rule wait this long, so the other "
        "edition, polled minutes later, joins the same message; 0 sends at once.",
    )


class RuleConfig(_Model):
    """Keywords to look for, and the channels to alert."""

    name: str = Field(pattern=ID_PATTERN, description="Unique name, shown in alerts.")
    query: str | None = Field(None, description="Boolean query, e.g. '习近平 AND 普京'.")
    # Tuples: a rule list has thousands of entries, and an empty tuple costs nothing.
    any: tuple[str, ...] = Field((), description="Alert when any of these occurs.")
    all: tuple[str, ...] = Field((), description="... and all of these occur.")
    none: tuple[str, ...] = Field((), description="... and none of these occurs.")
    feeds: tuple[str, ...] = Field((), description="Limit to these feed ids.")
    notify: tuple[str, ...] = Field(min_length=1, description="Channel names.")
    digest: DigestConfig | None = Field(None, description="Send this rule's alerts as digests.")
    on_update: Literal["ignore", "rematch", "always"] = Field(
        "rematch",
        description="An updated item (same URL, new time): ignore never alerts; "
        "rematch alerts when the rule newly matches; always alerts again while it matches.",
    )
    cross_edition: bool | CrossEditionConfig = Field(
        False,
        description="true (or window/hold): a story in several editions "
        "(Simplified /cn, Traditional /tw) gives one alert naming every link.",
    )
    archive: str | None = Field(
        None,
        description="Folder that receives every item this rule alerts for, as an "
        "archive file (<!--ms--> format); relative to the working directory.",
    )
    aliases: bool = Field(
        True,
        description="false: keywords match only as written, not every form of the "
        "name in the alias table (普京 / 普丁 / Putin).",
    )
    exact: bool = Field(
        False,
        description="true: Chinese keywords of 2-3 characters match anywhere, "
        "also inside other words (中法 in 集中法律).",
    )

    def editions(self) -> CrossEditionConfig | None:
        """The cross-edition settings, or None when the rule does not opt in."""
        if self.cross_edition is True:
            return CrossEditionConfig()
        return self.cross_edition or None

    @model_validator(mode="after")
    def _has_terms(self) -> RuleConfig:
        if not (self.query or self.any or self.all):
            raise ValueError("a rule needs a query, or keywords under any or all")
        return self


class DeliveryConfig(_Model):
    """How the outbox is sent and retried."""

    interval: Duration = Field(2, gt=0, description="How often pending alerts are sent.")
    max_attempts: int = Field(8, ge=1, description="Failed sends before a dead letter.")
    max_age: Duration = Field(86400, gt=0, description="Give up (dead letter) after this long.")
    backoff: Duration = Field(30, gt=0, description="First retry delay; doubles per attempt.")
    max_backoff: Duration = Field(3600, gt=0, description="Longest retry delay.")
    batch: int = Field(100, ge=1, description="Alerts leased per delivery run.")
    parallel: int = Field(
        4,
        ge=1,
        le=64,
        description="Messages sent at once (each channel's "
        "rate limit still holds; 1 sends strictly one after another).",
    )
    lease: Duration | None = Field(
        None,
        gt=0,
        description="How long leased alerts stay with one daemon before another "
        "may take them over (default: 10 intervals, at least 60s).",
    )

    def lease_seconds(self) -> float:
        return self.lease or max(60.0, self.interval * 10)


class SchedulerConfig(_Model):
    """How due feeds are claimed and polled."""

    tick: Duration = Field(5, gt=0, description="How often due feeds are claimed.")
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        "auto",
        description="Polls running at once; auto: from the feeds and their hosts' "
        "limits, between 8 and 64.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 256):
            return v
        raise ValueError(f"must be auto or a number from 1 to 256, not {v!r}")

    lease: Duration | None = Field(
        None,
        gt=0,
        description="How long a claimed feed stays with one daemon before another "
        "may take it over; longer than defaults.timeout (default: defaults.timeout + 60s).",
    )


class HttpConfig(_Model):
    """The HTTP address: the web console, /healthz and /metrics."""

    enabled: bool = Field(True, description="Serve the console, /healthz and /metrics.")
    listen: str = Field(
        "127.0.0.1:9321",
        pattern=r"^\[?[^\s\]]*\]?:\d{1,5}$",
        description="host:port of the console, /healthz and /metrics.",
    )
    console: bool = Field(True, description="Serve the web console at /.")
    language: Literal["en", "zh"] = Field("en", description="Language of the console.")
    timezone: TimeZone = Field("UTC", description="Time zone of times the console shows.")
    admin_token: str | None = Field(
        None,
        min_length=12,
        description="Enables the console's actions (silence, expire, "
        "redeliver) after logging in with this token; write it as ${ENV}. Without it the "
        "console is read-only.",
    )

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class LogConfig(_Model):
    """What the daemon says on its own while it runs."""

    heartbeat: Duration = Field(
        300,
        ge=0,
        description="Every this long, 'run' logs one line: feeds polled, new "
        "items, alerts sent and failures since the last line (the first a minute after "
        "start); 0 turns it off.",
    )


class RetentionConfig(_Model):
    """How long stored items are kept; by default, forever."""

    items: Duration | None = Field(
        None,
        gt=0,
        description="Empty the body of items published longer ago than this "
        "(title, URL, dedupe key and matches stay), e.g. 90d.",
    )
    keys: Duration | None = Field(
        None,
        gt=0,
        description="Delete items published longer ago than this, dedupe key "
        "included; at least items. An item this old that a feed still lists is recorded "
        "without alerting.",
    )

    @model_validator(mode="after")
    def _keys_outlive_bodies(self) -> RetentionConfig:
        if self.items is not None and self.keys is not None and self.keys < self.items:
            raise ValueError(
                "retention.keys must be at least retention.items: a key "
                "deleted before its body would let the item alert again"
            )
        return self


class Config(_Model):
    """feed-monitor configuration: feeds to poll, rules to match, channels to alert."""

    database: str = Field("sqlite:///data/feed-monitor.db", description="SQLAlchemy URL.")
    database_upgrade: Literal["auto", "never"] = Field(
        "auto",
        description="auto: migrate the schema at start; never: refuse to start on an "
        "older schema until 'feed-monitor db upgrade' has run.",
    )
    defaults: Defaults = Field(Defaults(), description="Settings every feed inherits.")
    scheduler: SchedulerConfig = SchedulerConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = Field(LogConfig(), description="What the daemon logs on its own.")
    feeds: list[FeedConfig] = Field(default_factory=list, description="Feeds to poll.")
    channels: dict[str, ChannelConfig] = Field(
        default_factory=dict, description="Channels by name, used in rules[].notify."
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="Keyword rules.")
    aliases: list[list[str]] = Field(
        default_factory=list,
        description="Groups of equivalent names added to the built-in "
        "table, e.g. [[赖清德, 賴清德, William Lai]]; a keyword in any form matches all.",
    )
    retention: RetentionConfig = Field(
        RetentionConfig(), description="Pruning of old items (daily, and feed-monitor prune)."
    )
    hosts: dict[HostName, HostConfig] = Field(
        default_factory=dict,
        description="Politeness per host name, e.g. {rsshub.example.org: {concurrency: 16}}.",
    )

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts_once(cls, v: Any) -> Any:
        """Two keys naming one host (``RSSHub.example.org`` and ``rsshub.example.org.``)
        are an error, not a silent choice of one of them."""
        if isinstance(v, dict):
            seen: dict[str, str] = {}
            for key in v:
                name = str(key).strip().lower().rstrip(".")
                if name in seen:
                    raise ValueError(f"{seen[name]!r} and {key!r} name the same host; keep one")
                seen[name] = str(key)
        return v

    def feed_titles(self) -> dict[str, str]:
        """Feed id -> the name alerts show for it (its title, else the id)."""
        return {f.id: f.title or f.id for f in self.feeds}

    def feed_lease_seconds(self) -> float:
        return self.scheduler.lease or self.defaults.timeout + 60

    @model_validator(mode="after")
    def _references(self) -> Config:
        dupes = {i for i, n in Counter(f.id for f in self.feeds).items() if n > 1}
        if dupes:
            raise ValueError(f"duplicate feed id {sorted(dupes)[0]!r}")
        dupes = {i for i, n in Counter(r.name for r in self.rules).items() if n > 1}
        if dupes:
            raise ValueError(f"duplicate rule name {sorted(dupes)[0]!r}")
        for group in self.aliases:
            if len({g.strip() for g in group if g.strip()}) < 2:
                raise ValueError(f"an aliases group needs two names or more, not {group!r}")
        return self
