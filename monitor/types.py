"""The boundaries between the layers of the data path: frozen records, enums, Protocols.

Records are frozen dataclasses; outcomes and states are ``StrEnum`` (their values are
what the database and the logs hold). Times are UTC epoch milliseconds unless a name
says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Final, Protocol


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
    repeat from an update. ``dated`` is False for an entry the feed gave no
    date: its ``published_ms`` is then the poll's time, which the store uses
    only the first time it sees the key (the stored time is kept after that,
    and such an entry is never an update).
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
    dated: bool = True


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What the parser made of one response body."""

    outcome: PollOutcome  # OK, OK_WITH_WARNINGS, NOT_A_FEED or EMPTY
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
    aliases: bool = True  # keywords match every form in the alias table (普京 / 普丁 / Putin)
    exact: bool = False  # plain substring matching: no word-boundary check for Chinese


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
    status: AlertState
    attempts: int
    keywords: tuple[str, ...]
    snippet: str
    created_ms: int
    item: Item
    feeds: tuple[str, ...]
    item_id: int = 0
    revision: int = 0  # times on_update: always re-armed it


@dataclass(frozen=True)
class IngestStats:
    """What storing one poll's items did; ``+`` adds up several polls."""

    new: int = 0
    updated: int = 0
    repeats: int = 0
    alerts: int = 0
    matched: int = 0
    rules: Mapping[str, int] = field(default_factory=dict)  # new matches per rule
    # (rule, item) for every alert created or re-armed, and every edition joined to
    # one: what rules[].archive folders receive once the transaction has committed.
    alerted: tuple[tuple[str, Item], ...] = ()

    def __add__(self, other: IngestStats) -> IngestStats:
        rules = dict(self.rules)
        for rule, n in other.rules.items():
            rules[rule] = rules.get(rule, 0) + n
        return IngestStats(
            self.new + other.new,
            self.updated + other.updated,
            self.repeats + other.repeats,
            self.alerts + other.alerts,
            self.matched + other.matched,
            rules,
            self.alerted + other.alerted,
        )


@dataclass(frozen=True)
class RuleOptions:
    """What a rule's config says about updates and editions, as the store needs it."""

    on_update: str = "rematch"  # "ignore", "rematch" or "always"
    edition_window_ms: int | None = None  # cross-edition dedupe when set
    hold_ms: int = 0  # new alerts wait this long, so a sibling edition can join them


DEFAULT_RULE_OPTIONS: Final = RuleOptions()


@dataclass(frozen=True)
class Edition:
    """One edition of a story: where it was seen and its link."""

    item_id: int
    url: str
    feeds: tuple[str, ...]
    published_ms: int


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ItemSummary:
    """An item as the console lists it: no body."""

    id: int
    title: str
    url: str
    published_ms: int
    first_seen_ms: int


@dataclass(frozen=True)
class Delivery:
    """One channel's state of one alert (the console's alert list)."""

    alert_id: int
    channel: str
    status: AlertState
    attempts: int
    next_attempt_ms: int
    sent_ms: int | None
    last_error: str | None
    silence_id: int | None
    silence_comment: str | None = None
    silence_ends_ms: int | None = None


@dataclass(frozen=True)
class PollRecord:
    """One finished poll as the console's feed page lists it."""

    started_ms: int
    seconds: float  # the whole poll: fetch, parse, store, match
    outcome: PollOutcome
    status: int | None
    new: int
    updated: int
    alerts: int
    error: str | None


@dataclass(frozen=True)
class ConsoleAlert:
    """One rule's alert about one item, with its delivery state per channel."""

    rule: str
    item: ItemSummary
    feeds: tuple[str, ...]
    keywords: tuple[str, ...]
    snippet: str
    created_ms: int
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True)
class AlertFilter:
    """What the console's alert list is limited to; None: no limit."""

    rule: str | None = None
    channel: str | None = None
    state: str | None = None  # an AlertState value, or "retrying"
    feed: str | None = None


@dataclass(frozen=True)
class RecentMatch:
    """An item a rule matched, and when."""

    item: ItemSummary
    matched_ms: int
    alerted: bool
    keywords: tuple[str, ...]
    snippet: str


class Fetcher(Protocol):
    """Fetches one feed URL, conditionally. Raises ``FeedError`` (never a foreign error)
    classified by outcome; a 304 is a result with ``body=None``."""

    def fetch(
        self, feed_id: str, url: str, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PollResult:
    feed: str
    outcome: PollOutcome
    stats: IngestStats = field(default_factory=IngestStats)
    error: str | None = None
    status: int | None = None
    fetch_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What one delivery run did; runs add up with ``+``."""

    sent: int = 0  # alerts delivered (a digest counts all it carried)
    messages: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0
    silenced: int = 0
    deferred: int = 0
    leased: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    @property
    def touched(self) -> int:
        return self.sent + self.failed + self.dead + self.held + self.silenced


@dataclass(frozen=True)
class OnceReport:
    """What ``feed-monitor once`` did: each feed's poll, and the totals."""

    results: tuple[PollResult, ...]
    ingest: IngestStats
    delivery: DeliveryStats


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one send through one channel came to; ``error`` is masked, "" when ok;
    ``retry_after``: the Retry-After values of the 429 or 503 answers it got, as sent
    (delta-seconds or an HTTP date)."""

    ok: bool
    error: str = ""
    retry_after: tuple[str, ...] = ()


class Notifier(Protocol):
    """Sends one rendered message through one channel (all of its URLs).

    Never raises for a failed send: the outcome says so, with the service's error text,
    secrets masked. ``message_id`` is the alert's stable id (email uses it as Message-ID,
    so a resend carries the same one). A notifier may keep connections open from one
    send to the next; ``close()`` ends them (the deliverer calls it after each run)."""

    def send(self, title: str, body: str, message_id: str) -> SendOutcome: ...

    def close(self) -> None: ...


class Parser(Protocol):
    """Turns a response body into Items; never raises for bad input (the outcome and
    the warnings say what was wrong)."""

    def __call__(
        self, body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int, base_url: str = ""
    ) -> ParsedFeed: ...


class Matching(Protocol):
    """What ingest needs of the rules: which match an item seen in ``feeds``, where each
    rule's alerts go, and its update and cross-edition options. Called inside the
    store's transaction: it must not touch the store."""

    def match(self, item: Item, feeds: Collection[str]) -> Sequence[RuleMatch]: ...

    def channels_for(self, rule: str) -> Sequence[str]: ...

    def options_for(self, rule: str) -> RuleOptions: ...

    def feeds_named(self) -> Collection[str] | None:
        """The only feeds ``match`` looks for in ``feeds`` (those that rules limited to
        some feeds name), so the store reads no others of the feeds an item was seen
        in; None: any of them may matter."""
        ...


def _default_options(_rule: str) -> RuleOptions:
    return DEFAULT_RULE_OPTIONS


def _any_feed() -> Collection[str] | None:
    return None


@dataclass(frozen=True)
class MatchingFunctions:
    """``Matching`` made of three functions (rules that a reload may swap; tests)."""

    match: Callable[[Item, Collection[str]], Sequence[RuleMatch]]
    channels_for: Callable[[str], Sequence[str]]
    options_for: Callable[[str], RuleOptions] = _default_options
    feeds_named: Callable[[], Collection[str] | None] = _any_feed


# -- storage ------------------------------------------------------------------------------
#
# The contract of every storage part: a method either does all it says or raises
# monitor.errors.StoreError (never a driver's error), whose message names the database
# (password masked) and the cause. Times are UTC epoch milliseconds. Work is taken with
# leases: a row leased by ``owner`` until ``now_ms + lease_ms`` is left alone by other
# owners until then, and the updates that finish it only apply while ``owner`` holds it,
# so work whose lease expired (and that another owner took) is never overwritten.


class FeedSchedule(Protocol):
    """Each configured feed's schedule: next poll time, validators, failures, leases."""

    def sync(self, specs: Iterable[FeedSpec], now_ms: int, first_spread_s: float) -> None:
        """Add rows for new feeds (first poll spread at random over ``first_spread_s``)
        and update the URLs and titles of known ones; a changed URL drops its validators,
        a shortened interval applies now."""

    def claim_due(
        self,
        owner: str,
        now_ms: int,
        limit: int,
        lease_ms: int,
        feed_ids: Collection[str],
        due_ms: int | None = None,
    ) -> list[FeedRow]:
        """Lease up to ``limit`` of ``feed_ids`` whose poll is due by ``due_ms`` (default
        ``now_ms``) and that nobody else holds; concurrent claimers get disjoint sets."""

    def finish_poll(
        self,
        feed_id: str,
        owner: str,
        *,
        now_ms: int,
        next_poll_ms: int,
        outcome: PollOutcome,
        error: str | None,
        status: int | None,
        failures: int,
        etag: str | None = None,
        last_modified: str | None = None,
        keep_validators: bool = True,
        first_poll_done: bool | None = None,
    ) -> None:
        """Record a poll's outcome and the next poll time, and release the lease."""

    def release_leases(self, owner: str) -> None:
        """Hand back every feed ``owner`` holds (shutdown, a failed poll)."""


class ItemStore(Protocol):
    """Items and their dedupe history; alerts are written with them (the outbox)."""

    def ingest(
        self,
        feed_id: str,
        parsed: Sequence[Item],
        now_ms: int,
        rules: Matching,
        alert_min_published_ms: int | None = None,
    ) -> IngestStats:
        """Store one poll's items and, in the same transaction, the alerts they cause.

        Same key and timestamp: a repeat. Same key, new timestamp: an update, re-matched;
        a rule alerts for an item once unless its ``on_update`` says otherwise. Items
        published before ``alert_min_published_ms`` record their matches without alerting.
        """

    def iter_stored(
        self, since_ms: int | None = None, feed_ids: Collection[str] = (), batch: int = 500
    ) -> Iterator[StoredItem]:
        """Stored items, oldest first, with the feeds each was seen in."""


class Outbox(Protocol):
    """The alerts waiting for delivery and what became of them; silences."""

    def lease(
        self, owner: str, now_ms: int, limit: int, lease_ms: int, channels: Collection[str]
    ) -> list[AlertRow]:
        """Lease up to ``limit`` due alerts (pending or held) of ``channels``, oldest first."""

    def mark_sent(self, ids: Sequence[int], owner: str, now_ms: int) -> None: ...

    def mark_failed(
        self, ids: Sequence[int], owner: str, error: str, next_attempt_ms: int, dead: bool
    ) -> None:
        """Count an attempt; retry at ``next_attempt_ms``, or a dead letter if ``dead``."""

    def hold(self, ids: Sequence[int], owner: str, release_ms: int) -> None:
        """Keep alerts back until ``release_ms`` (a digest or quiet hours)."""

    def defer(self, ids: Sequence[int], owner: str, next_attempt_ms: int) -> None:
        """Put alerts back for later without counting an attempt (a rate limit)."""

    def mark_silenced(self, ids: Sequence[int], owner: str, silence_id: int) -> None: ...

    def held_release(self, channel: str, rule: str | None, now_ms: int) -> int | None:
        """When alerts already held for this channel (and rule) will be released."""

    def redeliver(self, now_ms: int, channel: str | None = None, rule: str | None = None) -> int:
        """Dead letters back to pending; how many."""

    def release_leases(self, owner: str) -> None: ...

    def editions(self, item_id: int, rule: str, window_ms: int) -> list[Edition]:
        """The item and its other editions the rule matched, the item first."""

    def add_silence(
        self,
        rule: str,
        channel: str | None,
        starts_ms: int,
        ends_ms: int,
        comment: str,
        created_by: str,
        now_ms: int,
    ) -> int: ...

    def silences(self, now_ms: int, include_expired: bool = False) -> list[Silence]: ...

    def expire_silence(self, silence_id: int, now_ms: int) -> bool:
        """End a silence now; False if it had already ended or does not exist."""


class History(Protocol):
    """Archive imports and exports, and retention."""

    def import_items(
        self, feed_id: str, batch: Sequence[tuple[Item, Sequence[RuleMatch]]], now_ms: int
    ) -> set[str]:
        """Store archive items as already seen (matches recorded, no alerts); the keys
        this call added. A stored key is left as it is."""

    def stored_keys(self, keys: Collection[str]) -> set[str]: ...

    def export_rows(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        rule: str | None = None,
        feed_ids: Collection[str] = (),
        batch: int = 500,
    ) -> Iterator[ExportRow]: ...

    def count_matches(self, rule: str) -> int: ...

    def known_feed_ids(self) -> set[str]: ...

    def prune(
        self,
        now_ms: int,
        bodies_before_ms: int | None,
        keys_before_ms: int | None,
        batch: int = 1000,
    ) -> PruneStats:
        """Empty old bodies, delete old keys; an item with a waiting alert stays whole."""


class Readouts(Protocol):
    """Counts for ``status``, the console and /metrics."""

    def counts(self) -> dict[str, int]: ...

    def alert_summary(self) -> dict[str, dict[str, int]]:
        """Per channel: pending, retrying, held, sent, dead, silenced."""

    def rule_match_counts(self, since_ms: int) -> dict[str, int]: ...

    def feed_rows(self) -> list[FeedRow]: ...

    def alert_page(
        self, where: AlertFilter, before_id: int | None, limit: int
    ) -> tuple[list[ConsoleAlert], int | None]:
        """Alerts newest first (by id, below ``before_id``), at most ``limit`` rule/item
        pairs; and the id to pass as ``before_id`` for the next page (None: no more)."""

    def latest_alert_id(self) -> int: ...

    def feed_row(self, feed_id: str) -> FeedRow | None: ...

    def feed_items(self, feed_id: str, limit: int) -> list[ItemSummary]:
        """The items most recently first seen in the feed."""

    def rule_match_times(self, rule: str, since_ms: int) -> list[int]:
        """When each match of the rule since ``since_ms`` was recorded (epoch ms)."""

    def recent_matches(self, rule: str, limit: int) -> list[RecentMatch]: ...


class Storage(Protocol):
    """The whole store: its parts share one database."""

    @property
    def feeds(self) -> FeedSchedule: ...

    @property
    def items(self) -> ItemStore: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def history(self) -> History: ...

    @property
    def readouts(self) -> Readouts: ...

    @property
    def safe_url(self) -> str:
        """The database URL with its password masked."""

    def ping(self) -> None: ...

    def schema_revision(self) -> tuple[str | None, str]: ...

    def close(self) -> None: ...
