"""Config file -> LoadedConfig: YAML read event by event, ``${ENV}`` substituted, errors
located as ``file:line key.path``.

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
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor._malloc import release_free_memory
from monitor.config.models import Config, FeedConfig
from monitor.config.units import backlog_seconds
from monitor.errors import ConfigError, ConfigErrors
from monitor.secrets import Masker
from monitor.types import RuleSpec

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
                name=r.name,
                query=r.query,
                any=tuple(r.any),
                all=tuple(r.all),
                none=tuple(r.none),
                feeds=tuple(r.feeds),
                notify=tuple(r.notify),
                source=self.path,
                line=lines[i] if i < len(lines) else None,
                aliases=r.aliases,
                exact=r.exact,
            )
            for i, r in enumerate(self.config.rules)
        ]

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval or self.config.defaults.interval

    def feed_backlog_window(self, feed: FeedConfig) -> float | None:
        return backlog_seconds(
            feed.backlog if feed.backlog is not None else self.config.defaults.backlog
        )

    def line_of(self, *path: Any) -> int | None:
        """The line of a key path (None if the file does not have it): for errors."""
        if (
            len(path) == 2
            and path[0] == "rules"
            and isinstance(path[1], int)
            and 0 <= path[1] < len(self.rule_lines)
        ):
            return self.rule_lines[path[1]]
        return self.lines_of([path]).get(path)

    def lines_of(self, paths: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
        """The lines of these key paths, found by parsing the text again."""
        if not self.source:
            return {}
        return _lines_of(zlib.decompress(self.source).decode("utf-8"), self.path, paths)


def key_path(loc: Iterable[Any]) -> str:
    """A location as errors show it: ``("rules", 0, "notify")`` -> ``rules[0].notify``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# libyaml's parser when PyYAML was built with it: several times faster than the
# pure-Python one. Either way the data is built from the parser's events, one at a
# time: a config with thousands of feeds never exists as a tree of YAML nodes.
_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
# An alias is the value its anchor names, shared, not copied; but whoever walks the data
# (validation, str(), a template) walks it as if expanded, and nine nested aliases of
# nine make a billion values out of a few lines. A document whose aliases stand for more
# values than this is refused, whatever it is (a config, an archive file's front matter).
MAX_ALIASED_VALUES = 100_000


class _Builder:
    """YAML events -> plain data, ``${VAR}`` substituted, duplicate keys found.

    Records the line of each rule (``rules[i]``) and, when asked (``want``), of the
    given key paths; line numbers are 1-based.
    """

    def __init__(
        self,
        path: str,
        want: Container[tuple[Any, ...]] | None = None,
        parser: type[Any] = _PARSER,
        environment: bool = True,
    ) -> None:
        self.path = path
        self.environment = environment  # substitute ${VAR}: only in a config
        self.want = want
        self.lines: dict[tuple[Any, ...], int] = {}
        self.rule_lines = array("I")
        self.secrets: set[str] = set()
        self.errors: list[ConfigError] = []
        self._parser = parser
        self._events: Iterator[Any] = iter(())
        self._anchors: dict[str, Any] = {}
        self._weights: dict[str, int] = {}  # values under each anchor, aliases expanded
        self._values = 0  # values so far, aliases expanded
        self._aliased = 0  # of which reached through aliases
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
                    "expected a single document in the stream",
                    None,
                    "but found another document",
                    end.start_mark,
                )
            return data
        finally:
            self._anchors.clear()
            self._weights.clear()
            self._strings.clear()

    def _node(self, ev: Any, loc: tuple[Any, ...]) -> Any:
        if self.want is not None and loc in self.want:
            self.lines.setdefault(loc, ev.start_mark.line + 1)
        start = self._values
        self._values += 1
        if isinstance(ev, yaml.ScalarEvent):
            value = self._scalar(ev, loc)
        elif isinstance(ev, yaml.MappingStartEvent):
            value = self._mapping(loc)
        elif isinstance(ev, yaml.SequenceStartEvent):
            value = self._sequence(loc)
        else:  # an alias; an anchor is known once its node is complete (no cycles)
            if ev.anchor not in self._anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {ev.anchor!r}", ev.start_mark
                )
            weight = self._weights[ev.anchor]
            self._values += weight - 1
            self._aliased += weight
            if self._aliased > MAX_ALIASED_VALUES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases stand for more than {MAX_ALIASED_VALUES:,} values "
                    f"(at alias {ev.anchor!r}); write the values out instead",
                    ev.start_mark,
                )
            return self._anchors[ev.anchor]
        if ev.anchor is not None:
            self._anchors[ev.anchor] = value
            self._weights[ev.anchor] = self._values - start
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
                    "while constructing a mapping", None, "found an unhashable key", ev.start_mark
                ) from None
            if duplicate:
                self.errors.append(
                    ConfigError(f"duplicate key {key!r}", self.path, line, key_path(loc + (key,)))
                )
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
                value = c.construct_object(
                    yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style), deep=True
                )
            except (ValueError, OverflowError) as e:  # a date such as 2024-13-45
                raise yaml.constructor.ConstructorError(
                    None, None, f"{ev.value!r}: {e}", ev.start_mark
                ) from None
            finally:
                c.constructed_objects.clear()
            if not isinstance(value, str):
                return value
        if self.environment and "${" in value:
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
                self.errors.append(
                    ConfigError(
                        f"environment variable {name} is not set", self.path, line, key_path(loc)
                    )
                )
                return ""
            if secret:
                self.secrets.add(secret)
            return secret

        return _ENV.sub(repl, value)


def _with_prefixes(paths: Iterable[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {p[:n] for p in paths for n in range(len(p) + 1)}


def _lines_of(text: str, path: str, paths: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
    """The lines of these key paths in ``text`` (those it has)."""
    builder = _Builder(path, want=set(paths))
    try:
        builder.build(text)
    except yaml.YAMLError:
        pass
    return builder.lines


def load_yaml(text: str, source: str = "<string>") -> Any:
    """Plain data from one YAML document that is not a config (an archive file's front
    matter): no ``${VAR}``, a later duplicate key wins, aliases bounded as in a config.

    Raises yaml.YAMLError, located as the pure-Python parser counts lines."""
    try:
        return _Builder(source, environment=False).build(text)
    except yaml.YAMLError:
        if _PARSER is yaml.SafeLoader:
            raise
        return _Builder(source, parser=yaml.SafeLoader, environment=False).build(text)


def _yaml_error(e: yaml.YAMLError, text: str, path: str) -> ConfigError:
    """The error as the pure-Python parser locates it (the way users count lines)."""
    if _PARSER is not yaml.SafeLoader:
        try:
            _Builder(path, parser=yaml.SafeLoader).build(text)
        except yaml.YAMLError as again:
            e = again
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        return ConfigError(f"invalid YAML: {e.problem or e}", path, mark.line + 1 if mark else None)
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
        raise ConfigError(
            "the top level must be a mapping (database, feeds, channels, rules)", path, 1
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        errors = _located(e, path, text)
        # A validator may quote the bad value: a ${ENV} secret, a URL with its token.
        mask = _raw_masker(builder.secrets, data)
        raise ConfigErrors(
            [ConfigError(mask(x.message), x.path, x.line, x.key) for x in errors.errors]
        ) from None
    finally:
        del data
    loaded = LoadedConfig(
        config,
        path,
        frozenset(builder.secrets),
        builder.rule_lines,
        zlib.compress(text.encode("utf-8")),
    )
    _check_references(loaded)
    return loaded


def _raw_masker(secrets: Iterable[str], data: dict[str, Any]) -> Masker:
    """The masker of a config that did not validate: the policy of ``masker_for``
    applied to whatever URLs the data holds where they belong."""

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))

    feeds = data.get("feeds")
    feed_urls = (
        [u for f in feeds if isinstance(f, dict) for u in strings(f.get("url"))]
        if isinstance(feeds, list)
        else []
    )
    channels = data.get("channels")
    channel_urls: list[str] = []
    for ch in channels.values() if isinstance(channels, dict) else ():
        if isinstance(ch, dict):
            channel_urls += [*strings(ch.get("url")), *strings(ch.get("urls"))]
        else:
            channel_urls += strings(ch)
    database = data.get("database")
    masker = Masker()
    masker.add_config(
        secrets, feed_urls, channel_urls, database if isinstance(database, str) else None
    )
    return masker


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
            msg = msg[len("Value error, ") :]
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
                found.append(
                    (
                        f"unknown channel '{name}' (channels: {known})",
                        (("rules", i, "notify", j), ("rules", i)),
                        f"rules[{i}].notify",
                    )
                )
        for j, fid in enumerate(rule.feeds):
            if fid not in feed_ids:
                found.append(
                    (
                        f"unknown feed '{fid}'",
                        (("rules", i, "feeds", j), ("rules", i)),
                        f"rules[{i}].feeds",
                    )
                )
    lease = cfg.scheduler.lease
    if lease is not None and lease <= cfg.defaults.timeout:
        # A poll may run for defaults.timeout; a shorter lease would let a second daemon
        # poll the same feed while the first is still at it.
        found.append(
            (
                f"must be longer than defaults.timeout ({cfg.defaults.timeout:g} s)",
                (("scheduler", "lease"),),
                "scheduler.lease",
            )
        )
    if not found:
        return
    lines = loaded.lines_of(p for _, paths, _ in found for p in paths)
    raise ConfigErrors(
        [
            ConfigError(
                message, loaded.path, next((lines[p] for p in paths if p in lines), None), key
            )
            for message, paths, key in found
        ]
    )
