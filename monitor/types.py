"""Frozen records passed between the modules of the data path."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Item:
    """One feed entry, normalised for storage and matching.

    ``key`` is the dedupe identity: the canonical URL, or ``id:<entry id>``
    when the entry has no link. ``published_ms`` is epoch milliseconds (the
    archive format's ``<!--ms-->`` stamp); together with ``key`` it tells a
    repeat from an update.
    """

    key: str
    url: str
    title: str
    published_ms: int
    feed_id: str
    entry_id: str | None = None
    summary: str = ""
    content: str = ""
    author: str = ""
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What the parser made of one response body."""

    outcome: str  # "ok", "ok-with-warnings", "not-a-feed", "empty"
    items: tuple[Item, ...]
    warnings: tuple[str, ...] = ()
    title: str | None = None
    ttl_seconds: int | None = None  # RSS <ttl>, when the feed states one


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as configured; the matcher compiles a list of these."""

    name: str
    query: str | None = None
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()  # empty: every feed
    notify: tuple[str, ...] = ()
    source: str | None = None  # config file, for error messages
    line: int | None = None  # line of the rule in that file


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched an item: which keywords hit, and where."""

    rule: str
    keywords: tuple[str, ...]
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one HTTP poll, before parsing."""

    status: int
    body: bytes | None  # None for 304
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    url: str = ""  # final URL after redirects
    elapsed: float = 0.0
