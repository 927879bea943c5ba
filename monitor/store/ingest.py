"""Ingest: one poll's items into the store, deduplicated by key, matched, and the alerts
they cause written in the same transaction (the outbox); cross-edition dedupe.

A poll costs a handful of statements whatever its size: one lookup each of the keys,
the feeds they were seen in and their earlier matches, and one multi-row insert per
table, not several statements per item. Nor does it grow with the feeds that carry its
items too: of the feeds an item was seen in, only this one and those rules name are read.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import Connection, and_, bindparam, exists, select, text, update

from monitor.items import title_key
from monitor.store.database import Database, insert_rows
from monitor.store.outbox import alert_row, insert_alerts, keywords_json, rearm
from monitor.store.rows import (
    chunks,
    feeds_of,
    item_rows,
    item_values,
    keys_pruned_before,
    matched_rules,
    row_item,
    seen_in,
)
from monitor.store.schema import item_feeds, items, matches
from monitor.types import IngestStats, Item, Matching, RuleMatch, StoredItem

log = logging.getLogger("monitor.store")

# Namespace of the transaction-scoped advisory locks taken per title key on PostgreSQL
# (the two-int form; migrate.py's single-bigint lock lives in another key space).
_EDITION_LOCK = 0x6564  # "ed"

Kind = Literal["new", "updated", "repeat"]


@dataclass(slots=True)
class _Plan:
    """What storing one item of a poll means, decided from what was read."""

    item: Item
    row_id: int | None  # None: not stored yet
    kind: Kind
    new_feed: bool  # first time seen in this feed
    hits: list[RuleMatch]
    quiet: bool = False  # imported, and seen in a polled feed for the first time


@dataclass(frozen=True, slots=True)
class _Work:
    """A planned item and its row, once every new item has one."""

    item: Item
    item_id: int
    kind: Kind
    new_feed: bool
    hits: list[RuleMatch]
    quiet: bool


class ItemStore:
    """``types.ItemStore`` on the ``items``, ``item_feeds`` and ``matches`` tables, writing
    alert rows through ``outbox``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ingest(
        self,
        feed_id: str,
        parsed: Sequence[Item],
        now_ms: int,
        rules: Matching,
        alert_min_published_ms: int | None = None,
    ) -> IngestStats:
        """Store one poll's items and, in the same transaction, the alerts they cause.

        Same key and timestamp: a repeat (only the feed is recorded). Same key,
        new timestamp: an update, stored and re-matched. An undated item
        (``Item.dated`` False) keeps the stored time: never an update. A rule alerts for an
        item once: only rules that did not match it before create alerts.
        ``alert_min_published_ms`` holds back alerts for older items (a new
        feed's backlog); their matches are still recorded so they never alert.
        Likewise a new item published before the horizon of a past key prune
        (``History.prune``): its key may be one retention deleted.
        ``rules.options_for`` gives each rule's ``on_update`` policy and
        cross-edition settings. An item an import stored is recorded quietly the
        first time a poll carries it.
        """
        unique: dict[str, Item] = {}
        for it in parsed:  # a feed that repeats a key: keep the newest version
            old = unique.get(it.key)
            if old is None or it.published_ms > old.published_ms:
                unique[it.key] = it
        if not unique:
            return IngestStats()
        with self._db.begin(f"storing items of feed '{feed_id}'") as conn:
            return _Batch(conn, feed_id, now_ms, rules, alert_min_published_ms).run(unique)

    def iter_stored(
        self, since_ms: int | None = None, feed_ids: Collection[str] = (), batch: int = 500
    ) -> Iterator[StoredItem]:
        """Stored items, oldest first, with the feeds each was seen in."""
        q = select(items).order_by(items.c.published_ms, items.c.id)
        if since_ms is not None:
            q = q.where(items.c.published_ms >= since_ms)
        if feed_ids:
            q = q.where(
                items.c.id.in_(
                    select(item_feeds.c.item_id).where(item_feeds.c.feed_id.in_(list(feed_ids)))
                )
            )
        with self._db.connect("reading stored items") as conn:
            rows = conn.execute(q).mappings().all()
            for chunk in chunks(rows, batch):
                fmap = feeds_of(conn, [r["id"] for r in chunk])
                for r in chunk:
                    yield StoredItem(
                        r["id"], row_item(r, fmap.get(r["id"], ())), fmap.get(r["id"], ())
                    )


class _Batch:
    """One poll's items inside one transaction, and the counts of what it did."""

    def __init__(
        self,
        conn: Connection,
        feed_id: str,
        now_ms: int,
        rules: Matching,
        alert_min_published_ms: int | None,
    ) -> None:
        self.conn = conn
        self.feed_id = feed_id
        self.now_ms = now_ms
        self.rules = rules
        self.floor = alert_min_published_ms
        self.keys_horizon: int | None = None  # retention deleted keys published before it
        self.matched = 0
        self.alerts = 0
        self.per_rule: dict[str, int] = {}
        self.alerted: list[tuple[str, Item]] = []

    def run(self, unique: dict[str, Item]) -> IngestStats:
        conn, feed_id, now_ms = self.conn, self.feed_id, self.now_ms
        # One key order in every transaction (items, then where they were seen, matches
        # and alerts, each in key order): two daemons storing the same articles (listed
        # in another order by another feed) then wait for each other on the unique key
        # instead of deadlocking.
        keys = sorted(unique)
        found = item_rows(conn, keys)
        seen = self._seen_in([r.id for r in found.values()])
        # Matching runs on what was read, before this transaction writes anything.
        plans = [self._plan(unique[k], found.get(k), seen) for k in keys]

        new = [p for p in plans if p.row_id is None]
        ids: dict[str, int] = {}
        lost: list[str] = []
        if new:
            ids = self._insert_items([p.item for p in new])
            lost = [p.item.key for p in new if p.item.key not in ids]
            if lost:  # another process stored these keys since our SELECT: not new here
                rows = item_rows(conn, lost)
                lost_seen = self._seen_in([r.id for r in rows.values()])
                again = {k: self._plan(unique[k], rows[k], lost_seen) for k in lost}
                plans = [again.get(p.item.key, p) for p in plans]
        work = [
            _Work(
                p.item,
                ids[p.item.key] if p.row_id is None else p.row_id,
                p.kind,
                p.new_feed,
                p.hits,
                p.quiet,
            )
            for p in plans
        ]

        changed = [w for w in work if w.kind == "updated"]
        if changed:
            conn.execute(
                update(items).where(items.c.id == bindparam("_id")),
                [{"_id": w.item_id, **item_values(w.item, now_ms)} for w in changed],
            )
        insert_rows(
            conn,
            item_feeds,
            [
                {"item_id": w.item_id, "feed_id": feed_id, "first_seen_ms": now_ms}
                for w in work
                if w.new_feed
            ],
        )
        # Imported items a poll carries for the first time: their matches are recorded
        # below without alerting (whatever the timestamp: an archive mirror stamps
        # items with its own poll time), and from now on they are ordinary items.
        quiet = sorted({w.item_id for w in work if w.quiet})
        if quiet:
            conn.execute(update(items).where(items.c.id.in_(quiet)).values(imported=False))
        hit = [w for w in work if w.hits]
        if hit:
            self._record_matches(hit)
        return IngestStats(
            new=len(new) - len(lost),
            updated=len(changed),
            repeats=sum(w.kind == "repeat" for w in work),
            alerts=self.alerts,
            matched=self.matched,
            rules=self.per_rule,
            alerted=tuple(self.alerted),
        )

    def _seen_in(self, item_ids: list[int]) -> dict[int, set[str]]:
        """Of the feeds each stored item was seen in, those this poll needs: its own (is
        the item new here?) and those that rules limited to some feeds name (may such
        a rule now apply?); not the others, however many carry the item."""
        named = self.rules.feeds_named()
        return seen_in(self.conn, item_ids, None if named is None else {self.feed_id, *named})

    def _plan(self, it: Item, row: Any, seen: dict[int, set[str]]) -> _Plan:
        """What storing ``it`` means, given its stored row (or None) and where it was seen
        (``_seen_in``: only the feeds that can change a match)."""
        if row is None:
            return _Plan(it, None, "new", True, list(self.rules.match(it, {self.feed_id})))
        if not it.dated and it.published_ms != row.published_ms:
            # No date in the feed: the time first seen stays, and only a date that appears
            # (or changes) makes an update.
            it = replace(it, published_ms=row.published_ms)
        changed = row.published_ms != it.published_ms
        seen_in_feeds = set(seen.get(row.id, ()))
        new_feed = self.feed_id not in seen_in_feeds
        seen_in_feeds.add(self.feed_id)
        quiet = bool(row.imported)
        # An imported item is matched on its first sighting even when nothing changed, so
        # the rules that apply to the polled feed's version are recorded (not alerted).
        hits = list(self.rules.match(it, seen_in_feeds)) if changed or new_feed or quiet else []
        return _Plan(it, row.id, "updated" if changed else "repeat", new_feed, hits, quiet)

    def _insert_items(self, new: Sequence[Item]) -> dict[str, int]:
        """Insert items whose keys were not found; the ids of those this call inserted."""
        rows = [
            {"key": it.key, "first_seen_ms": self.now_ms, **item_values(it, self.now_ms)}
            for it in new
        ]
        inserted = insert_rows(self.conn, items, rows, items.c.key, items.c.id)
        if inserted is None:  # no RETURNING: see insert_rows, every row went in
            return {r.key: r.id for r in item_rows(self.conn, [it.key for it in new]).values()}
        return {key: item_id for key, item_id in inserted}

    def _may_alert(self, w: _Work, rule: str) -> bool:
        if w.quiet or (self.floor is not None and w.item.published_ms < self.floor):
            return False
        if (
            w.kind == "new"
            and self.keys_horizon is not None
            and w.item.published_ms < self.keys_horizon
        ):
            return False  # its key was probably pruned after it was seen (and alerted)
        return not (w.kind == "updated" and self.rules.options_for(rule).on_update == "ignore")

    def _record_matches(self, hit: list[_Work]) -> None:
        """New, updated, or seen in a new feed (a rule limited to that feed may now apply):
        record the rules that did not match the item before, and alert for them."""
        conn, now_ms, options = self.conn, self.now_ms, self.rules.options_for
        before = matched_rules(conn, [w.item_id for w in hit if w.kind != "new"])
        candidates: list[tuple[_Work, RuleMatch]] = []
        again: list[tuple[_Work, RuleMatch]] = []  # on_update: always
        for w in hit:
            done = set(before.get(w.item_id, ()))
            for h in w.hits:
                if h.rule not in done:
                    done.add(h.rule)
                    candidates.append((w, h))
                elif w.kind == "updated" and options(h.rule).on_update == "always":
                    again.append((w, h))

        if any(w.kind == "new" for w, _ in candidates):
            # Read after the keys (a prune committing in between has recorded its horizon
            # before deleting anything), and only when a new item has a rule to alert for:
            # a poll whose new items match nothing costs no statement for it.
            self.keys_horizon = keys_pruned_before(conn)
        alerting = {(w.item.key, h.rule): self._may_alert(w, h.rule) for w, h in candidates}
        # Cross-edition rules: another edition of the story already matched gives no
        # second alert; the first alert's message lists both (Outbox.editions).
        joined = _edition_joins(
            conn,
            self.feed_id,
            [
                (w.item_id, w.item, h.rule, window)
                for w, h in candidates
                if alerting[(w.item.key, h.rule)]
                and (window := options(h.rule).edition_window_ms) is not None
            ],
        )
        for item_key_rule in joined:
            alerting[item_key_rule] = False
        returned = insert_rows(
            conn,
            matches,
            [
                {
                    "item_id": w.item_id,
                    "rule": h.rule,
                    "matched_ms": now_ms,
                    "alerted": alerting[(w.item.key, h.rule)],
                }
                for w, h in candidates
            ],
            matches.c.item_id,
            matches.c.rule,
        )
        inserted = None if returned is None else set(returned)
        new_alerts: list[dict[str, Any]] = []
        as_json: dict[tuple[str, ...], str] = {}
        for w, h in candidates:
            # A concurrent poll of another feed may have matched it first (and alerted).
            if inserted is not None and (w.item_id, h.rule) not in inserted:
                continue
            self.matched += 1
            self.per_rule[h.rule] = self.per_rule.get(h.rule, 0) + 1
            if (w.item.key, h.rule) in joined:
                self.alerted.append((h.rule, w.item))
            if not alerting[(w.item.key, h.rule)]:
                continue
            self.alerted.append((h.rule, w.item))
            keywords = as_json.get(h.keywords)
            if keywords is None:  # rules repeat their keywords from item to item
                keywords = as_json[h.keywords] = keywords_json(h.keywords)
            due = now_ms + options(h.rule).hold_ms  # a hold lets another edition join
            new_alerts.extend(
                alert_row(h.rule, w.item_id, channel, keywords, h.snippet, now_ms, due)
                for channel in self.rules.channels_for(h.rule)
            )
        self.alerts += insert_alerts(conn, new_alerts)
        for w, h in again:
            if self._may_alert(w, h.rule):
                n = rearm(
                    conn,
                    w.item_id,
                    h,
                    self.rules.channels_for(h.rule),
                    now_ms,
                    now_ms + options(h.rule).hold_ms,
                )
                self.alerts += n
                if n:
                    self.alerted.append((h.rule, w.item))


# -- cross-edition dedupe ---------------------------------------------------------------


def _edition_joins(
    conn: Connection, feed_id: str, wanted: Sequence[tuple[int, Item, str, int]]
) -> set[tuple[str, str]]:
    """(item key, rule) of the ``wanted`` (item id, item, rule, window) whose story the
    rule already matched in another edition: the same title key, published within
    the window, in an item not seen in ``feed_id``."""
    keyed = [
        (item_id, it, rule, window, k)
        for item_id, it, rule, window in wanted
        if (k := title_key(it.title)) is not None
    ]
    if not keyed:
        return set()
    keys = {k for *_, k in keyed}
    _lock_title_keys(conn, keys)
    siblings = _matched_siblings(conn, feed_id, keys, {rule for _, _, rule, _, _ in keyed})
    out: set[tuple[str, str]] = set()
    for item_id, it, rule, window, k in keyed:
        for sib_id, sib_ms in siblings.get((k, rule), ()):
            if sib_id != item_id and abs(sib_ms - it.published_ms) <= window:
                out.add((it.key, rule))
                log.info(
                    "rule '%s': %s is another edition of item %d, already matched: no second alert",
                    rule,
                    it.url,
                    sib_id,
                )
                break
    return out


def _lock_title_keys(conn: Connection, keys: Collection[str]) -> None:
    """Serialise cross-edition decisions per story across processes (PostgreSQL).

    Two daemons storing the /cn and the /tw edition at the same moment would
    each miss the other's uncommitted match and both alert. SQLite has one
    writer at a time, so it needs nothing. Sorted, so two transactions never
    wait for each other's locks in opposite orders.
    """
    if conn.dialect.name == "sqlite":
        return
    for h in sorted({_lock_id(k) for k in keys}):
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :k)"), {"ns": _EDITION_LOCK, "k": h})


def _lock_id(key: str) -> int:
    # A stable 32-bit signed id (Python's hash() changes between processes).
    return zlib.crc32(key.encode("utf-8")) - 2**31


def _matched_siblings(
    conn: Connection, feed_id: str, keys: Collection[str], rules: Collection[str]
) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(title key, rule) -> [(item id, published_ms)] of items the rule matched that
    carry the title key and were not seen in ``feed_id``."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    if not keys or not rules:
        return out
    in_feed = exists().where(
        and_(item_feeds.c.item_id == items.c.id, item_feeds.c.feed_id == feed_id)
    )
    q = (
        select(items.c.id, items.c.title_key, items.c.published_ms, matches.c.rule)
        .join(matches, matches.c.item_id == items.c.id)
        .where(
            and_(items.c.title_key.in_(sorted(keys)), matches.c.rule.in_(sorted(rules)), ~in_feed)
        )
    )
    for r in conn.execute(q):
        out.setdefault((r.title_key, r.rule), []).append((r.id, r.published_ms))
    return out
