"""The boundaries between the layers of the data path: frozen records, enums, Protocols.

Records are frozen dataclasses; outcomes and states are ``StrEnum`` (their values are
what the database and the logs hold). Times are UTC epoch milliseconds unless a name
says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class PollOutcome(StrEnum):
    """How one poll of one feed ended: stored as ``feeds.last_outcome``."""

    OK = "ok"
    OK_WITH_WARNINGS = "ok-with-warnings"
    NOT_MODIFIED = "not-modified"
    NOT_A_FEED = "not-a-feed"
    EMPTY = "empty"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http-error"
    TOO_LARGE = "too-large"
    CONNECTION_ERROR = "connection-error"
    REFUSED = "refused"
    REMOVED = "removed"  # dropped from the config while claimed
    STORE_ERROR = "store-error"
    ERROR = "error"  # an unexpected exception inside the poll


class AlertState(StrEnum):
    """Where an alert stands in the outbox: stored as ``alerts.status``."""

    PENDING = "pending"  # due at next_attempt_ms; attempts > 0 means retrying
    HELD = "held"  # waiting for a digest or the end of quiet hours
    SENT = "sent"
    DEAD = "dead"  # retries exhausted; `redeliver` puts it back
    SILENCED = "silenced"


class Clock(Protocol):
    """The one source of time and chance. Nothing else reads the wall clock or ``random``.

    ``now_ms`` is UTC epoch milliseconds; ``monotonic`` is seconds for measuring spans;
    ``random`` is uniform in [0, 1).
    """

    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...

    def random(self) -> float: ...


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
    link: str | None = None  # the feed's web site (RSS channel link, Atom alternate link)


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


@dataclass(frozen=True)
class FeedSpec:
    """What the store needs to know of a configured feed."""

    id: str
    url: str
    title: str | None
    interval_s: float


@dataclass(frozen=True)
class FeedRow:
    id: str
    url: str
    title: str | None
    next_poll_ms: int
    etag: str | None
    last_modified: str | None
    failures: int
    first_poll_done: bool
    last_poll_ms: int | None
    last_outcome: str | None
    last_error: str | None
    last_status: int | None


@dataclass(frozen=True)
class StoredItem:
    id: int
    item: Item
    feeds: tuple[str, ...]


@dataclass(frozen=True)
class AlertRow:
    id: int
    rule: str
    channel: str
    status: str
    attempts: int
    keywords: tuple[str, ...]
    snippet: str
    created_ms: int
    item: Item
    feeds: tuple[str, ...]
    item_id: int = 0
    revision: int = 0  # times on_update: always re-armed it


@dataclass
class IngestStats:
    new: int = 0
    updated: int = 0
    repeats: int = 0
    alerts: int = 0
    matched: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # new matches per rule
    # (rule, item) for every alert created or re-armed, and every edition joined to
    # one: what rules[].archive folders receive once the transaction has committed.
    alerted: list[tuple[str, Item]] = field(default_factory=list)

    def add(self, other: IngestStats) -> None:
        for name in ("new", "updated", "repeats", "alerts", "matched"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for rule, n in other.rules.items():
            self.rules[rule] = self.rules.get(rule, 0) + n
        self.alerted.extend(other.alerted)


@dataclass(frozen=True)
class RuleOptions:
    """What a rule's config says about updates and editions, as the store needs it."""

    on_update: str = "rematch"  # "ignore", "rematch" or "always"
    edition_window_ms: int | None = None  # cross-edition dedupe when set
    hold_ms: int = 0  # new alerts wait this long, so a sibling edition can join them


@dataclass(frozen=True)
class Edition:
    """One edition of a story: where it was seen and its link."""

    item_id: int
    url: str
    feeds: tuple[str, ...]
    published_ms: int


@dataclass
class PruneStats:
    emptied: int = 0  # bodies removed, keys kept
    deleted: int = 0  # items (and their keys) removed
    kept: int = 0  # old enough, but an alert for them is still waiting


@dataclass(frozen=True)
class ExportRow:
    item: Item
    pruned: bool


@dataclass(frozen=True)
class Silence:
    id: int
    rule: str
    channel: str | None
    starts_ms: int
    ends_ms: int
    comment: str
    created_by: str
    created_ms: int

    def active(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms

    def covers(self, rule: str, channel: str) -> bool:
        return self.rule == rule and self.channel in (None, channel)


class Fetcher(Protocol):
    """Fetches one feed URL, conditionally. Raises ``FeedError`` (never a foreign error)
    classified by outcome; a 304 is a result with ``body=None``."""

    def fetch(self, feed_id: str, url: str, etag: str | None = None,
              last_modified: str | None = None) -> FetchResult: ...

    def close(self) -> None: ...


class Parser(Protocol):
    """Turns a response body into Items; never raises for bad input (the outcome and
    the warnings say what was wrong)."""

    def __call__(self, body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int,
                 base_url: str = "") -> ParsedFeed: ...
