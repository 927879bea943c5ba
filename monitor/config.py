"""YAML configuration -> validated, typed models; errors carry file:line and key path.

The YAML is composed into nodes first so every value keeps the line it came
from; pydantic validates the plain data, and its error locations are mapped
back to those lines. ``${VAR}`` in a string is replaced from the environment
and remembered as a secret, so it can be masked wherever it might be shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

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


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Model):
    interval: Duration = Field(300, gt=0, description="Poll interval per feed (e.g. 5m).")
    jitter: Duration = Field(30, ge=0, description="Random spread added to each interval.")
    timeout: Duration = Field(30, gt=0, description="Total deadline of one fetch.")
    connect_timeout: Duration = Field(10, gt=0)
    read_timeout: Duration = Field(20, gt=0)
    max_bytes: Size = Field(15 * 2**20, gt=0, description="Body cap after decompression.")
    backlog: str = Field(
        "none",
        description="On a feed's first poll, alert for: none, all, or items newer than a "
        "window such as 24h.",
    )
    user_agent: str | None = None

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
    id: str = Field(pattern=_SLUG, description="Short unique name used in rules and logs.")
    url: str
    title: str | None = None
    interval: Duration | None = Field(None, gt=0)
    backlog: str | None = None
    enabled: bool = True

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


class ChannelConfig(_Model):
    urls: list[str] = Field(min_length=1, description="Apprise URLs; console:// prints.")
    format: Literal["text", "markdown", "html"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _single_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data and "urls" not in data:
            data = dict(data)
            data["urls"] = [data.pop("url")]
        elif isinstance(data, str):
            data = {"urls": [data]}
        return data


class RuleConfig(_Model):
    name: str = Field(pattern=_SLUG)
    query: str | None = None
    any: list[str] = Field(default_factory=list)
    all: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)
    feeds: list[str] = Field(default_factory=list, description="Limit to these feed ids.")
    notify: list[str] = Field(min_length=1, description="Channel names.")

    @model_validator(mode="after")
    def _has_terms(self) -> RuleConfig:
        if not (self.query or self.any or self.all):
            raise ValueError("a rule needs a query, or keywords under any or all")
        return self


class DeliveryConfig(_Model):
    interval: Duration = Field(2, gt=0, description="How often pending alerts are sent.")
    max_attempts: int = Field(8, ge=1)
    backoff: Duration = Field(30, gt=0, description="First retry delay; doubles per attempt.")
    max_backoff: Duration = Field(3600, gt=0)
    batch: int = Field(100, ge=1)


class SchedulerConfig(_Model):
    tick: Duration = Field(5, gt=0, description="How often due feeds are claimed.")
    workers: int = Field(8, ge=1, le=256, description="Concurrent polls.")


class HttpConfig(_Model):
    enabled: bool = True
    listen: str = Field("127.0.0.1:9321", pattern=r"^\[?[^\s\]]*\]?:\d{1,5}$",
                        description="host:port for /healthz and /metrics.")

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class Config(_Model):
    database: str = Field("sqlite:///data/feed-monitor.db", description="SQLAlchemy URL.")
    defaults: Defaults = Defaults()
    scheduler: SchedulerConfig = SchedulerConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    http: HttpConfig = HttpConfig()
    feeds: list[FeedConfig] = Field(default_factory=list)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Config:
        ids = [f.id for f in self.feeds]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate feed id {sorted(dupes)[0]!r}")
        names = [r.name for r in self.rules]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate rule name {sorted(dupes)[0]!r}")
        return self


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus what is needed to report on it."""

    config: Config
    path: str
    secrets: frozenset[str] = frozenset()
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def rule_specs(self) -> list[RuleSpec]:
        return [
            RuleSpec(
                name=r.name, query=r.query, any=tuple(r.any), all=tuple(r.all),
                none=tuple(r.none), feeds=tuple(r.feeds), notify=tuple(r.notify),
                source=self.path, line=self.lines.get(("rules", i)),
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
        return self.lines.get(tuple(path))


def key_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Composer:
    """YAML nodes -> plain data and a map of key path -> line (1-based)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[tuple[Any, ...], int] = {}
        self.secrets: set[str] = set()
        self.errors: list[ConfigError] = []
        self._loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: tuple[Any, ...]) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in node.value:
                key = self.build(k_node, loc + ("<key>",))
                if key in out:
                    self.errors.append(ConfigError(
                        f"duplicate key {key!r}", self.path, k_node.start_mark.line + 1,
                        key_path(loc + (key,))))
                self.lines[loc + (key,)] = k_node.start_mark.line + 1
                out[key] = self.build(v_node, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, loc + (i,)) for i, v in enumerate(node.value)]
        value = self._loader.construct_object(node, deep=True)
        if isinstance(value, str):
            value = self._substitute(value, node, loc)
        return value

    def _substitute(self, value: str, node: yaml.Node, loc: tuple[Any, ...]) -> str:
        def repl(m: re.Match[str]) -> str:
            name, default = m[1], m[2]
            if name in os.environ:
                secret = os.environ[name]
            elif default is not None:
                secret = default
            else:
                self.errors.append(ConfigError(
                    f"environment variable {name} is not set", self.path,
                    node.start_mark.line + 1, key_path(loc)))
                return ""
            if secret:
                self.secrets.add(secret)
            return secret

        return _ENV.sub(repl, value)


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read, substitute and validate a config file; raise ConfigError(s) with locations."""
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", p) from e
    return parse_config(text, p)


def parse_config(text: str, path: str = "<config>") -> LoadedConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {e.problem or e}", path, line) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", path) from None
    composer = _Composer(path)
    data = composer.build(node, ()) if node is not None else {}
    if composer.errors:
        raise ConfigErrors(composer.errors)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (database, feeds, channels, rules)",
                          path, 1)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise _located(e, path, composer.lines) from None
    loaded = LoadedConfig(config, path, frozenset(composer.secrets), composer.lines)
    _check_references(loaded)
    return loaded


def _located(e: ValidationError, path: str, lines: dict[tuple[Any, ...], int]) -> ConfigErrors:
    errors = []
    for err in e.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x))
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
    errors = []
    feed_ids = {f.id for f in cfg.feeds}
    for i, rule in enumerate(cfg.rules):
        for j, name in enumerate(rule.notify):
            if name not in cfg.channels:
                known = ", ".join(sorted(cfg.channels)) or "none defined"
                errors.append(ConfigError(
                    f"unknown channel '{name}' (channels: {known})", loaded.path,
                    loaded.line_of("rules", i, "notify", j) or loaded.line_of("rules", i),
                    f"rules[{i}].notify"))
        for j, fid in enumerate(rule.feeds):
            if fid not in feed_ids:
                errors.append(ConfigError(
                    f"unknown feed '{fid}'", loaded.path,
                    loaded.line_of("rules", i, "feeds", j) or loaded.line_of("rules", i),
                    f"rules[{i}].feeds"))
    if errors:
        raise ConfigErrors(errors)
