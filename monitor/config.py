"""YAML configuration -> validated, typed models; errors carry file:line and key path.

The YAML parser's events are turned into plain data one at a time (no node tree:
a config with thousands of feeds and rules stays cheap to load); pydantic
validates the data. Lines are not kept for every value: when an error needs one,
the text is parsed again for the key paths in question. ``${VAR}`` in a string is
replaced from the environment and remembered as a secret, so it can be masked
wherever it might be shown.
"""

from __future__ import annotations

import os
import re
import zlib
from array import array
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor._malloc import release_free_memory
from monitor.errors import ConfigError, ConfigErrors
from monitor.types import RuleSpec

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 2**20, "gb": 10**9,
               "gib": 2**30, None: 1}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"30s"``, ``"5m"``, ``"24h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 24h")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"expected a duration such as 30s, 5m, 24h, got {value!r}")
    return float(m[1]) * _UNITS[m[2]]


def parse_size(value: Any) -> int:
    """Bytes from ``1048576``, ``"15MiB"``, ``"500KB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"expected a size such as 15MiB, got {value!r}")
    return int(float(m[1]) * _SIZE_UNITS[m[2].lower() if m[2] else None])


class _NumberOrText:
    """JSON Schema of a value written as a plain number or as text with a unit.

    Pydantic alone would describe a Duration as a number; editors would then flag
    ``interval: 5m``. The number branch keeps pydantic's bounds (e.g. > 0).
    """

    def __init__(self, pattern: str, description: str, examples: list[Any]) -> None:
        self.pattern = pattern
        self.description = description
        self.examples = examples

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        number = handler(core_schema)
        text = {"type": "string", "pattern": self.pattern, "description": self.description}
        return {"anyOf": [number, text], "examples": self.examples}


Duration = Annotated[float, BeforeValidator(parse_duration), _NumberOrText(
    r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*$",
    "seconds, or a number with a unit: ms, s, m, h, d, w", [90, "30s", "5m", "24h"])]
Size = Annotated[int, BeforeValidator(parse_size), _NumberOrText(
    r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgG][iI]?[bB])?\s*$",
    "bytes, or a number with a unit: B, KB, KiB, MB, MiB, GB, GiB", [1048576, "15MiB"])]
# What a backlog may say, for editors (the validators below say why a value is wrong).
_BACKLOG_SCHEMA = {"pattern": r"^(none|all|\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*)$",
                   "examples": ["none", "all", "24h"]}


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
        "window such as 24h.", json_schema_extra=_BACKLOG_SCHEMA,
    )
    user_agent: str | None = Field(None, description="User-Agent header; default "
                                   "feed-monitor/VERSION.")
    max_redirects: int = Field(5, ge=0, le=20, description="Redirect hops followed per fetch.")
    per_host_concurrency: int = Field(
        2, ge=1, le=64, description="Requests to one host name at once, across all feeds.")
    max_backoff: Duration = Field(
        6 * 3600, gt=0, description="Longest wait between polls of a failing feed (the "
        "interval doubles per failure up to this).")
    unhealthy_after: int = Field(
        5, ge=1, description="Consecutive failures after which status shows a feed as "
        "unhealthy (it is still retried).")
    allow_private_addresses: bool = Field(
        False, description="Poll feeds on private, loopback and link-local addresses.")
    allowed_networks: list[str] = Field(
        default_factory=list, description="CIDR ranges polled even though not public, "
        "e.g. 10.1.2.0/24 (narrower than allow_private_addresses).")

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for net in v:
            try:
                ipaddress.ip_network(str(net).strip(), strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network such as 10.0.0.0/8 or "
                                 "fd00::/8") from None
        return [str(n).strip() for n in v]

    @field_validator("backlog")
    @classmethod
    def _backlog(cls, v: str) -> str:
        if v not in ("none", "all"):
            parse_duration(v)
        return v

    def backlog_window(self) -> float | None:
        """Seconds of backlog to alert for; None means all, 0 none."""
        if self.backlog == "all":
            return None
        if self.backlog == "none":
            return 0.0
        return parse_duration(self.backlog)


class FeedConfig(_Model):
    """One feed to poll: RSS, Atom or JSON Feed."""

    id: str = Field(pattern=_SLUG, description="Short unique name used in rules and logs.")
    url: str = Field(description="http:// or https:// URL of the feed.")
    title: str | None = Field(None, description="Name shown in alerts; default the id.")
    interval: Duration | None = Field(None, gt=0, description="Overrides defaults.interval.")
    backlog: str | None = Field(None, description="Overrides defaults.backlog.",
                                json_schema_extra=_BACKLOG_SCHEMA)
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
        if v is not None and v not in ("none", "all"):
            parse_duration(v)
        return v


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use a name such as Asia/Shanghai)") \
            from None
    return name


TimeZone = Annotated[str, BeforeValidator(lambda v: _zone(str(v)))]
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(?:(\d+(?:\.\d+)?)\s*)?"
                   r"(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
               "hour": 3600, "d": 86400, "day": 86400}


def _also_text(pattern: str | None, description: str) -> Any:
    """json_schema_extra for a model that may also be written as one string."""

    def extra(schema: dict[str, Any]) -> None:
        obj = dict(schema)
        schema.clear()
        for key in ("title", "description"):
            if key in obj:
                schema[key] = obj.pop(key)
        text: dict[str, Any] = {"type": "string", "description": description}
        if pattern:
            text["pattern"] = pattern
        schema["anyOf"] = [obj, text]

    return extra


class RateLimit(_Model):
    """At most count messages per period; written as an object or as 20/min, 5/10s."""

    model_config = ConfigDict(json_schema_extra=_also_text(
        _RATE.pattern, "count/period, e.g. 20/min or 5/10s"))
    count: int = Field(gt=0)
    per: Duration = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = _RATE.match(data)
            if not m:
                raise ValueError(f"expected a rate such as 20/min or 5/10s, got {data!r}")
            return {"count": int(m[1]), "per": float(m[2] or 1) * _RATE_UNITS[m[3]]}
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
            from monitor.schedule.cron import check_cron

            check_cron(self.schedule, self.timezone)
        return self


class QuietHours(_Model):
    """Hold alerts between start and end; release them afterwards as one digest."""

    start: str = Field(pattern=r"^([01]?\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]?\d|2[0-3]):[0-5]\d$")
    timezone: TimeZone = "UTC"


def _channel_schema(schema: dict[str, Any]) -> None:
    """A channel is written with urls, with a single url, or as one URL string."""
    schema["properties"]["url"] = {"type": "string", "title": "Url",
                                   "description": "One Apprise URL (instead of urls)."}
    schema.pop("required", None)
    schema["oneOf"] = [{"required": ["urls"]}, {"required": ["url"]}]
    _also_text(None, "one Apprise URL")(schema)


class ChannelConfig(_Model):
    """Where alerts go: one or more Apprise URLs, each sent to on its own."""

    model_config = ConfigDict(json_schema_extra=_channel_schema)
    urls: list[str] = Field(min_length=1, description="Apprise URLs; console:// prints.")
    format: Literal["text", "markdown", "html"] | None = Field(
        None, description="Body format; default html for email-only channels, else text.")
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
        86400, gt=0, description="Items whose folded titles are equal and whose publish "
        "times are at most this far apart are one story.")
    hold: Duration = Field(
        300, ge=0, description="New alerts of the rule wait this long, so the other "
        "edition, polled minutes later, joins the same message; 0 sends at once.")


class RuleConfig(_Model):
    """Keywords to look for, and the channels to alert."""

    name: str = Field(pattern=_SLUG, description="Unique name, shown in alerts.")
    query: str | None = Field(None, description="Boolean query, e.g. '习近平 AND 普京'.")
    # Tuples: a rule list has thousands of entries, and an empty tuple costs nothing.
    any: tuple[str, ...] = Field((), description="Alert when any of these occurs.")
    all: tuple[str, ...] = Field((), description="... and all of these occur.")
    none: tuple[str, ...] = Field((), description="... and none of these occurs.")
    feeds: tuple[str, ...] = Field((), description="Limit to these feed ids.")
    notify: tuple[str, ...] = Field(min_length=1, description="Channel names.")
    digest: DigestConfig | None = Field(None, description="Send this rule's alerts as digests.")
    on_update: Literal["ignore", "rematch", "always"] = Field(
        "rematch", description="An updated item (same URL, new time): ignore never alerts; "
        "rematch alerts when the rule newly matches; always alerts again while it matches.")
    cross_edition: bool | CrossEditionConfig = Field(
        False, description="true (or window/hold): a story in several editions "
        "(Simplified /cn, Traditional /tw) gives one alert naming every link.")
    archive: str | None = Field(
        None, description="Folder that receives every item this rule alerts for, as an "
        "archive file (<!--ms--> format); relative to the working directory.")

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
    parallel: int = Field(4, ge=1, le=64, description="Messages sent at once (each channel's "
                          "rate limit still holds; 1 sends strictly one after another).")
    lease: Duration | None = Field(
        None, gt=0, description="How long leased alerts stay with one daemon before another "
        "may take them over (default: 10 intervals, at least 60s).")

    def lease_seconds(self) -> float:
        return self.lease or max(60.0, self.interval * 10)


class SchedulerConfig(_Model):
    """How due feeds are claimed and polled."""

    tick: Duration = Field(5, gt=0, description="How often due feeds are claimed.")
    workers: int = Field(8, ge=1, le=256, description="Concurrent polls.")
    lease: Duration | None = Field(
        None, gt=0, description="How long a claimed feed stays with one daemon before another "
        "may take it over; longer than defaults.timeout (default: defaults.timeout + 60s).")


class HttpConfig(_Model):
    """The /healthz and /metrics endpoint."""

    enabled: bool = Field(True, description="Serve /healthz and /metrics.")
    listen: str = Field("127.0.0.1:9321", pattern=r"^\[?[^\s\]]*\]?:\d{1,5}$",
                        description="host:port for /healthz and /metrics.")

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class RetentionConfig(_Model):
    """How long stored items are kept; by default, forever."""

    items: Duration | None = Field(
        None, gt=0, description="Empty the body of items published longer ago than this "
        "(title, URL, dedupe key and matches stay), e.g. 90d.")
    keys: Duration | None = Field(
        None, gt=0, description="Delete items published longer ago than this, dedupe key "
        "included; at least items. An item this old that a feed still lists is recorded "
        "without alerting.")

    @model_validator(mode="after")
    def _keys_outlive_bodies(self) -> RetentionConfig:
        if self.items is not None and self.keys is not None and self.keys < self.items:
            raise ValueError("retention.keys must be at least retention.items: a key "
                             "deleted before its body would let the item alert again")
        return self


class Config(_Model):
    """feed-monitor configuration: feeds to poll, rules to match, channels to alert."""

    database: str = Field("sqlite:///data/feed-monitor.db", description="SQLAlchemy URL.")
    database_upgrade: Literal["auto", "never"] = Field(
        "auto", description="auto: migrate the schema at start; never: refuse to start on an "
        "older schema until 'feed-monitor db upgrade' has run.")
    defaults: Defaults = Field(Defaults(), description="Settings every feed inherits.")
    scheduler: SchedulerConfig = SchedulerConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    http: HttpConfig = HttpConfig()
    feeds: list[FeedConfig] = Field(default_factory=list, description="Feeds to poll.")
    channels: dict[str, ChannelConfig] = Field(
        default_factory=dict, description="Channels by name, used in rules[].notify.")
    rules: list[RuleConfig] = Field(default_factory=list, description="Keyword rules.")
    retention: RetentionConfig = Field(
        RetentionConfig(), description="Pruning of old items (daily, and feed-monitor prune).")

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
        return self


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus what is needed to report on it.

    Lines are not kept for every key: only each rule's (part of its spec), and the
    text, compressed, from which ``line_of`` finds any other when an error needs it.
    """

    config: Config
    path: str
    secrets: frozenset[str] = frozenset()
    rule_lines: Sequence[int] = ()
    source: bytes = b""  # the YAML text, zlib-compressed

    def rule_specs(self) -> list[RuleSpec]:
        lines = self.rule_lines
        return [
            RuleSpec(
                name=r.name, query=r.query, any=tuple(r.any), all=tuple(r.all),
                none=tuple(r.none), feeds=tuple(r.feeds), notify=tuple(r.notify),
                source=self.path, line=lines[i] if i < len(lines) else None,
            )
            for i, r in enumerate(self.config.rules)
        ]

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval or self.config.defaults.interval

    def feed_backlog_window(self, feed: FeedConfig) -> float | None:
        if feed.backlog is None:
            return self.config.defaults.backlog_window()
        return Defaults(backlog=feed.backlog).backlog_window()

    def line_of(self, *path: Any) -> int | None:
        """The line of a key path (None if the file does not have it): for errors."""
        if (len(path) == 2 and path[0] == "rules" and isinstance(path[1], int)
                and 0 <= path[1] < len(self.rule_lines)):
            return self.rule_lines[path[1]]
        return self.lines_of([path]).get(path)

    def lines_of(self, paths: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
        """The lines of these key paths, found by parsing the text again."""
        if not self.source:
            return {}
        return _lines_of(zlib.decompress(self.source).decode("utf-8"), self.path, paths)


def key_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# libyaml's parser when PyYAML was built with it: several times faster than the
# pure-Python one. Either way the data is built from the parser's events, one at a
# time: a config with thousands of feeds never exists as a tree of YAML nodes.
_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"


class _Builder:
    """YAML events -> plain data, ``${VAR}`` substituted, duplicate keys found.

    Records the line of each rule (``rules[i]``) and, when asked (``want``), of the
    given key paths; line numbers are 1-based.
    """

    def __init__(self, path: str, want: Container[tuple[Any, ...]] | None = None,
                 parser: type[Any] = _PARSER) -> None:
        self.path = path
        self.want = want
        self.lines: dict[tuple[Any, ...], int] = {}
        self.rule_lines = array("I")
        self.secrets: set[str] = set()
        self.errors: list[ConfigError] = []
        self._parser = parser
        self._events: Iterator[yaml.Event] = iter(())
        self._anchors: dict[str, Any] = {}
        self._strings: dict[str, str] = {}  # one object per distinct string
        self._resolver = yaml.resolver.Resolver()
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, text: str) -> Any:
        """The document's data, None for an empty one; raises yaml.YAMLError."""
        events = self._events = iter(yaml.parse(text, Loader=self._parser))
        try:
            next(events)  # stream start
            if isinstance(next(events), yaml.StreamEndEvent):
                return None
            data = self._node(next(events), ())
            next(events)  # document end
            end = next(events)
            if not isinstance(end, yaml.StreamEndEvent):
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream", None,
                    "but found another document", end.start_mark)
            return data
        finally:
            self._anchors.clear()
            self._strings.clear()

    def _node(self, ev: Any, loc: tuple[Any, ...]) -> Any:
        if self.want is not None and loc in self.want:
            self.lines.setdefault(loc, ev.start_mark.line + 1)
        if isinstance(ev, yaml.ScalarEvent):
            value = self._scalar(ev, loc)
        elif isinstance(ev, yaml.MappingStartEvent):
            value = self._mapping(loc)
        elif isinstance(ev, yaml.SequenceStartEvent):
            value = self._sequence(loc)
        else:  # an alias; an anchor is known once its node is complete (no cycles)
            if ev.anchor not in self._anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {ev.anchor!r}", ev.start_mark)
            return self._anchors[ev.anchor]
        if ev.anchor is not None:
            self._anchors[ev.anchor] = value
        return value

    def _mapping(self, loc: tuple[Any, ...]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        events = self._events
        for ev in events:
            if isinstance(ev, yaml.MappingEndEvent):
                break
            key = self._node(ev, loc + ("<key>",))
            line = ev.start_mark.line + 1
            try:
                duplicate = key in out
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", None, "found an unhashable key",
                    ev.start_mark) from None
            if duplicate:
                self.errors.append(ConfigError(
                    f"duplicate key {key!r}", self.path, line, key_path(loc + (key,))))
            if self.want is not None and loc + (key,) in self.want:
                self.lines[loc + (key,)] = line
            out[key] = self._node(next(events), loc + (key,))
        return out

    def _sequence(self, loc: tuple[Any, ...]) -> list[Any]:
        out: list[Any] = []
        rules = self.rule_lines if loc == ("rules",) else None
        for ev in self._events:
            if isinstance(ev, yaml.SequenceEndEvent):
                break
            if rules is not None:
                rules.append(ev.start_mark.line + 1)
            out.append(self._node(ev, loc + (len(out),)))
        return out

    def _scalar(self, ev: Any, loc: tuple[Any, ...]) -> Any:
        tag = ev.tag
        if tag is None or tag == "!":
            tag = self._resolver.resolve(yaml.ScalarNode, ev.value, ev.implicit)
        if tag == _STR_TAG:
            value = ev.value
        else:
            c = self._constructor
            try:
                value = c.construct_object(yaml.ScalarNode(
                    tag, ev.value, ev.start_mark, ev.end_mark, ev.style), deep=True)
            except (ValueError, OverflowError) as e:  # a date such as 2024-13-45
                raise yaml.constructor.ConstructorError(
                    None, None, f"{ev.value!r}: {e}", ev.start_mark) from None
            finally:
                c.constructed_objects.clear()
            if not isinstance(value, str):
                return value
        if "${" in value:
            value = self._substitute(value, ev.start_mark.line + 1, loc)
        return self._strings.setdefault(value, value)

    def _substitute(self, value: str, line: int, loc: tuple[Any, ...]) -> str:
        def repl(m: re.Match[str]) -> str:
            name, default = m[1], m[2]
            if name in os.environ:
                secret = os.environ[name]
            elif default is not None:
                secret = default
            else:
                self.errors.append(ConfigError(
                    f"environment variable {name} is not set", self.path, line,
                    key_path(loc)))
                return ""
            if secret:
                self.secrets.add(secret)
            return secret

        return _ENV.sub(repl, value)


def _with_prefixes(paths: Iterable[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {p[:n] for p in paths for n in range(len(p) + 1)}


def _lines_of(text: str, path: str,
              paths: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
    """The lines of these key paths in ``text`` (those it has)."""
    builder = _Builder(path, want=set(paths))
    try:
        builder.build(text)
    except yaml.YAMLError:
        pass
    return builder.lines


def _yaml_error(e: yaml.YAMLError, text: str, path: str) -> ConfigError:
    """The error as the pure-Python parser locates it (the way users count lines)."""
    if _PARSER is not yaml.SafeLoader:
        try:
            _Builder(path, parser=yaml.SafeLoader).build(text)
        except yaml.YAMLError as again:
            e = again
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        return ConfigError(f"invalid YAML: {e.problem or e}", path,
                           mark.line + 1 if mark else None)
    return ConfigError(f"invalid YAML: {e}", path)


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read, substitute and validate a config file; raise ConfigError(s) with locations."""
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", p) from e
    try:
        return parse_config(text, p)
    finally:
        del text
        # What loading freed goes back to the system, not only to the allocator.
        release_free_memory()


def parse_config(text: str, path: str = "<config>") -> LoadedConfig:
    builder = _Builder(path)
    try:
        data = builder.build(text)
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, path) from None
    if builder.errors:
        raise ConfigErrors(builder.errors)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (database, feeds, channels, rules)",
                          path, 1)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        errors = _located(e, path, text)
        if builder.secrets:  # a validator may quote the bad value: a ${ENV} secret
            from monitor.secrets import Masker

            mask = Masker(builder.secrets)
            errors = ConfigErrors([ConfigError(mask(x.message), x.path, x.line, x.key)
                                   for x in errors.errors])
        raise errors from None
    finally:
        del data
    loaded = LoadedConfig(config, path, frozenset(builder.secrets), builder.rule_lines,
                          zlib.compress(text.encode("utf-8")))
    _check_references(loaded)
    return loaded


def _located(e: ValidationError, path: str, text: str) -> ConfigErrors:
    found = []
    for err in e.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x))
        found.append((err, loc))
    lines = _lines_of(text, path, _with_prefixes(loc for _, loc in found))
    errors = []
    for err, loc in found:
        line = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        errors.append(ConfigError(msg, path, line, key_path(loc) or None))
    return ConfigErrors(errors)


def _check_references(loaded: LoadedConfig) -> None:
    cfg = loaded.config
    # (message, key paths whose line to give, most precise first, shown key path)
    found: list[tuple[str, tuple[tuple[Any, ...], ...], str]] = []
    feed_ids = {f.id for f in cfg.feeds}
    for i, rule in enumerate(cfg.rules):
        for j, name in enumerate(rule.notify):
            if name not in cfg.channels:
                known = ", ".join(sorted(cfg.channels)) or "none defined"
                found.append((f"unknown channel '{name}' (channels: {known})",
                              (("rules", i, "notify", j), ("rules", i)), f"rules[{i}].notify"))
        for j, fid in enumerate(rule.feeds):
            if fid not in feed_ids:
                found.append((f"unknown feed '{fid}'",
                              (("rules", i, "feeds", j), ("rules", i)), f"rules[{i}].feeds"))
    lease = cfg.scheduler.lease
    if lease is not None and lease <= cfg.defaults.timeout:
        # A poll may run for defaults.timeout; a shorter lease would let a second daemon
        # poll the same feed while the first is still at it.
        found.append((f"must be longer than defaults.timeout ({cfg.defaults.timeout:g} s)",
                      (("scheduler", "lease"),), "scheduler.lease"))
    if not found:
        return
    lines = loaded.lines_of(p for _, paths, _ in found for p in paths)
    raise ConfigErrors([
        ConfigError(message, loaded.path,
                    next((lines[p] for p in paths if p in lines), None), key)
        for message, paths, key in found])


_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum",
           "le": "maximum"}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (``feed-monitor schema``), for editors."""
    schema = Config.model_json_schema()

    def fix(node: Any, names: bool = False) -> Any:
        # Pydantic leaves bounds it could not place (on an optional Duration) under
        # its own names; JSON Schema spells them otherwise, and they apply to numbers
        # only, which is what they mean here. Keys of properties/$defs are field names.
        if isinstance(node, dict):
            return {(k if names else _BOUNDS.get(k, k)):
                    fix(v, names=not names and k in ("properties", "$defs"))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **fix(schema)}
