"""Backtesting: run one rule over the items already stored and show what it would send.

``feed-monitor test-rule NAME`` takes a rule from the config file,
``feed-monitor test-rule --query '...'`` a query typed on the command line.
Every stored item (``--since 7d`` for a recent window, ``--feed ID`` to limit
to some feeds) is matched with the same engine the daemon uses; each match is
printed with its snippet, then a total. ``--render CHANNEL`` also prints each
message as that channel's templates would write it; ``--explain`` prints, for every item in
which a keyword of the rule occurs, each occurrence and why it counted or was rejected.

Nothing is sent and nothing is written: no Apprise object is ever built, and the
store (opened by ``monitor.app`` under the config's ``database_upgrade``, never
created) is only read.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO
from zoneinfo import ZoneInfo

from monitor.app import open_store
from monitor.clock import SYSTEM_CLOCK, utc_text
from monitor.config import LoadedConfig, parse_duration
from monitor.deliver import MessageTemplates, alert_context
from monitor.deliver.from_config import channel_settings
from monitor.deliver.sanitize import one_line
from monitor.errors import RuleError, UsageError
from monitor.match import RuleSet, compile_query, compile_rules
from monitor.match.normalize import plain_text
from monitor.store import Store
from monitor.types import AlertRow, AlertState, Clock, RuleMatch, RuleSpec, StoredItem


@dataclass(frozen=True)
class Hit:
    """One stored item the rule matches."""

    stored: StoredItem
    match: RuleMatch


@dataclass(frozen=True)
class Backtest:
    """The outcome of one run: every hit, and how many items were looked at."""

    rule: str
    hits: list[Hit]
    scanned: int
    since_ms: int | None
    feeds: tuple[str, ...]


def since_ms(since: str | None, now_ms: int) -> int | None:
    """``--since 7d`` as the earliest publish time (epoch ms); None: no limit."""
    if since is None:
        return None
    try:
        seconds = parse_duration(since)
    except ValueError as e:
        raise UsageError(f"--since: {e}") from None
    return now_ms - int(seconds * 1000)


def rule_spec(loaded: LoadedConfig, name: str) -> RuleSpec:
    """The configured rule ``name``; an unknown name lists the rules there are."""
    for spec in loaded.rule_specs():
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in loaded.rule_specs()) or "none defined"
    raise UsageError(f"unknown rule '{name}' in {loaded.path} (rules: {known})")


def compile_one(loaded: LoadedConfig, name: str | None, query: str | None) -> RuleSet:
    """The rule to test, compiled: from the config by name, or from ``--query``."""
    if query is not None:
        return compile_query(query, aliases=loaded.config.aliases)
    assert name is not None
    return compile_rules([rule_spec(loaded, name)], loaded.config.aliases)


def run(
    store: Store,
    ruleset: RuleSet,
    since: int | None,
    feed_ids: Sequence[str] = (),
    explain: TextIO | None = None,
) -> Backtest:
    """Match every stored item (published at ``since`` or later, seen in ``feed_ids``);
    with ``explain``, write there every item in which a keyword of the rule occurs, each
    occurrence and why it counted or not."""
    # Read everything first: on SQLite a read transaction held open while matching
    # would keep the running daemon from writing.
    stored = list(store.items.iter_stored(since, feed_ids))
    hits: list[Hit] = []
    for entry in stored:
        # Rules limited to feeds see every feed the item was seen in, as in the daemon.
        found = ruleset.match(entry.item, entry.feeds)
        for m in found:
            hits.append(Hit(entry, m))
        if explain is not None:
            lines = ruleset.explain(entry.item)
            if lines:
                item = entry.item
                verdict = "matches" if found else "does not match"
                print(
                    f"{_when(item.published_ms)}  {plain_text(item.title)}\n  {item.url}\n"
                    f"  rule {verdict}; occurrences:",
                    file=explain,
                )
                for line in lines:
                    print(f"    {line}", file=explain)
                print(file=explain)
    return Backtest(ruleset.names[0], hits, len(stored), since, tuple(feed_ids))


def _when(ms: int) -> str:
    return utc_text(ms, "%Y-%m-%d %H:%M UTC")


def format_hit(hit: Hit) -> str:
    """A match as printed: time, feeds, title; URL; keywords; snippet."""
    item = hit.stored.item
    feeds = ", ".join(hit.stored.feeds) or item.feed_id
    # Titles are stored as feeds send them, entities and all ("&quot;"): shown decoded,
    # on one line and without control characters (an ESC would restyle the terminal).
    lines = [
        f"{_when(item.published_ms)}  [{one_line(feeds)}]  {one_line(plain_text(item.title))}",
        f"  {one_line(item.url)}",
        f"  keywords: {', '.join(hit.match.keywords)}",
    ]
    if hit.match.snippet:
        lines.append(f"  {one_line(hit.match.snippet)}")
    return "\n".join(lines)


def format_total(result: Backtest) -> str:
    scope = []
    if result.since_ms is not None:
        scope.append(f"published since {_when(result.since_ms)}")
    if result.feeds:
        scope.append(f"in {', '.join(result.feeds)}")
    where = f" ({'; '.join(scope)})" if scope else ""
    items = "item" if result.scanned == 1 else "items"
    matches = "match" if len(result.hits) == 1 else "matches"
    return (
        f"rule '{result.rule}': {len(result.hits)} {matches} in {result.scanned} "
        f"stored {items}{where}; nothing was sent"
    )


class Renderer:
    """A channel's messages, written by the templates the deliverer uses."""

    def __init__(self, loaded: LoadedConfig, channel: str) -> None:
        cfg = loaded.config
        if channel not in cfg.channels:
            known = ", ".join(sorted(cfg.channels)) or "none defined"
            raise UsageError(f"--render: unknown channel '{channel}' (channels: {known})")
        self.name = channel
        settings = channel_settings(channel, cfg.channels[channel])
        self.format = settings.body_format
        self.templates = MessageTemplates.for_channel(settings, loaded.path)
        self.tz = ZoneInfo(settings.timezone)
        self.feed_titles = cfg.feed_titles()

    def context(self, hit: Hit, now_ms: int) -> dict[str, object]:
        # The alert the daemon would have stored for this match; it exists only here.
        alert = AlertRow(
            id=0,
            rule=hit.match.rule,
            channel=self.name,
            status=AlertState.PENDING,
            attempts=0,
            keywords=hit.match.keywords,
            snippet=hit.match.snippet,
            created_ms=now_ms,
            item=hit.stored.item,
            feeds=hit.stored.feeds,
        )
        return alert_context(alert, self.feed_titles, self.tz, self.name)

    def message(self, hit: Hit, now_ms: int) -> str:
        rendered = self.templates.render(self.context(hit, now_ms))
        return _boxed(f"message to '{self.name}' ({self.format})", rendered.title, rendered.body)

    def digest(self, hits: Sequence[Hit], now_ms: int) -> str:
        rendered = self.templates.render_digest([self.context(h, now_ms) for h in hits])
        return _boxed(
            f"digest to '{self.name}' ({self.format}), as its schedule would send it",
            rendered.title,
            rendered.body,
        )


def _boxed(label: str, title: str, body: str) -> str:
    lines = [f"  ┌─ {label}", f"  │ title: {title}", "  │"]
    lines += [f"  │ {line}".rstrip() for line in body.splitlines()]
    lines.append("  └─")
    return "\n".join(lines)


def query_error(query: str, err: RuleError) -> str:
    """A --query syntax error with a caret under the column (CJK counts two columns)."""
    out = f"error: --query: {err.message}"
    if err.column is None:
        return out
    lines = query.split("\n")
    line = lines[err.line - 1] if err.line is not None and 0 < err.line <= len(lines) else lines[-1]
    before = line[: max(err.column - 1, 0)]
    width = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in before)
    return f"{out}\n  {line}\n  {' ' * width}^"


def backtest(
    loaded: LoadedConfig,
    *,
    name: str | None,
    query: str | None,
    since: str | None,
    feeds: Iterable[str],
    render: str | None,
    out: TextIO,
    err: TextIO,
    clock: Clock = SYSTEM_CLOCK,
    explain: bool = False,
) -> int:
    """``feed-monitor test-rule``: the exit code; output goes to ``out``, notes and query
    errors to ``err``. Raises UsageError for an argument that cannot be used."""
    now_ms = clock.now_ms()
    start = since_ms(since, now_ms)
    renderer = Renderer(loaded, render) if render is not None else None
    try:
        ruleset = compile_one(loaded, name, query)
    except RuleError as e:
        if query is None:
            raise  # a rule of the config file: file:line like every config error
        print(query_error(query, e), file=err)
        return 2
    known = {f.id for f in loaded.config.feeds}
    for feed in feeds:
        if feed not in known:  # items of a feed removed from the config are still stored
            print(f"note: feed '{feed}' is not in {loaded.path}", file=err)
    store = open_store(loaded.config, clock=clock, must_exist=True)
    try:
        result = run(store, ruleset, start, tuple(feeds), out if explain else None)
    finally:
        store.close()
    # A channel that batches alerts never receives them one by one: show its digest.
    digest = renderer is not None and _digests(loaded, renderer.name, name)
    for hit in result.hits:
        print(format_hit(hit), file=out)
        if renderer is not None and not digest:
            print(renderer.message(hit, now_ms), file=out)
        print(file=out)
    if renderer is not None and digest and result.hits:
        print(renderer.digest(result.hits, now_ms), file=out)
        print(file=out)
    print(format_total(result), file=out)
    return 0


def _digests(loaded: LoadedConfig, channel: str, rule: str | None) -> bool:
    """Whether the channel (or the rule, for a configured rule) batches alerts."""
    cfg = loaded.config
    if cfg.channels[channel].digest is not None:
        return True
    return any(r.name == rule and r.digest is not None for r in cfg.rules)
