"""Storage of history: archive imports, exports, retention, editions and re-armed alerts.

Mixed into ``Store`` (like the outbox operations); relies on its engine and its
insert helpers. The orchestration (files, progress, reports) is in
``monitor.history``; this module only speaks SQL.

- **Imports** store items as already seen: ``imported`` is set, the rules'
  matches are recorded as not alerted, and no alert row is written. The first
  time a polled feed carries such an item, ``Store.ingest`` records it quietly
  too (see ``_Work.quiet`` there), whatever its timestamp says.
- **Title keys** (``title_key``) make one story in RFI's Simplified (/cn) and
  Traditional (/tw) editions comparable: a rule with ``cross_edition`` gives
  one alert for both, whose message lists every edition (``editions``).
- **Retention** empties old bodies, then deletes old keys, never touching an
  item that still has an alert waiting (pending, held, or a dead letter that
  may be re-driven).
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, text, true, update

from monitor.match.normalize import normalize_text
from monitor.store.schema import alerts, item_feeds, items, matches
from monitor.types import Edition, ExportRow, Item, PruneStats, RuleMatch, RuleOptions

log = logging.getLogger("monitor.store")

_NOT_ALNUM = re.compile(r"[\W_]+")  # Unicode-aware: what is not a letter or digit
# Shorter folded titles ("快讯", "Live") are too generic to call two articles one story.
_TITLE_KEY_MIN = 4
# Long enough to tell headlines apart, short enough for any B-tree index entry.
_TITLE_KEY_MAX = 200
# Alert states whose item must keep its body: not delivered yet, or re-drivable.
UNFINISHED = ("pending", "held", "dead")
# Namespace of the transaction-scoped advisory locks taken per title key on PostgreSQL
# (the two-int form; migrate.py's single-bigint lock lives in another key space).
_EDITION_LOCK = 0x6564  # "ed"


def title_key(title: str) -> str | None:
    """The title as compared across editions, or None when it is too short to trust.

    ``fold_text`` of the plain title (NFKC, case folding, Traditional to Simplified),
    then only letters and digits: the /tw edition writes 「」 where /cn writes “”,
    and full-width punctuation is not part of the story.
    """
    key = _NOT_ALNUM.sub("", normalize_text(title, markup=False))[:_TITLE_KEY_MAX]
    return key if len(key) >= _TITLE_KEY_MIN else None


DEFAULT_OPTIONS = RuleOptions()
OptionsFn = Callable[[str], RuleOptions]


class HistoryMixin:
    """Mixed into Store; relies on ``engine``, ``is_sqlite`` and the insert helpers."""

    engine: Any
    is_sqlite: bool
    _insert_rows: Callable[..., Any]
    _item_rows: Callable[..., dict[str, Any]]

    # -- import --------------------------------------------------------------------------

    def import_items(self, feed_id: str, batch: Sequence[tuple[Item, Sequence[RuleMatch]]],
                     now_ms: int) -> set[str]:
        """Store archive items as already seen; the keys this call added.

        A key already stored (by a poll or an earlier import) is left exactly as it is:
        importing twice adds nothing. Each new item is recorded as seen in ``feed_id``
        with its rule matches, none of them alerted, and no alert row.
        """
        from monitor.store.store import _item_values  # store.py imports this module

        unique: dict[str, tuple[Item, Sequence[RuleMatch]]] = {}
        for it, hits in batch:
            unique.setdefault(it.key, (it, hits))
        if not unique:
            return set()
        keys = sorted(unique)  # one key order in every transaction, as ingest does
        with self.engine.begin() as conn:
            fresh = keys
            if not conn.dialect.insert_executemany_returning:
                # No RETURNING to say which rows went in: look first (SQLite before 3.35;
                # one writer at a time, so the lookup is exact).
                found = self._item_rows(conn, keys)
                fresh = [k for k in keys if k not in found]
                if not fresh:
                    return set()
            rows = [{"key": k, "first_seen_ms": now_ms, "imported": True,
                     **_item_values(unique[k][0], now_ms)} for k in fresh]
            # ON CONFLICT DO NOTHING leaves a stored key exactly as it was.
            returned = self._insert_rows(conn, items, rows, items.c.key, items.c.id)
            if returned is None:  # every row went in (see above)
                ids = {k: r.id for k, r in self._item_rows(conn, fresh).items()}
            else:
                ids = dict(returned)
            self._insert_rows(conn, item_feeds, [
                {"item_id": ids[k], "feed_id": feed_id, "first_seen_ms": now_ms} for k in ids])
            # matched_ms is the article's own time: `status` counts matches of the last
            # 24 hours, and an import of last year's archive is not today's news.
            self._insert_rows(conn, matches, [
                {"item_id": ids[k], "rule": rule, "alerted": False,
                 "matched_ms": min(now_ms, unique[k][0].published_ms)}
                for k in ids for rule in dict.fromkeys(h.rule for h in unique[k][1])])
        return set(ids)

    def stored_keys(self, keys: Collection[str]) -> set[str]:
        """Those of ``keys`` that are stored."""
        with self.engine.connect() as conn:
            return set(self._item_rows(conn, sorted(set(keys))))

    # -- export --------------------------------------------------------------------------

    def export_rows(self, since_ms: int | None = None, until_ms: int | None = None,
                    rule: str | None = None, feed_ids: Collection[str] = (),
                    batch: int = 500) -> Iterator[ExportRow]:
        """Stored items oldest first, optionally those ``rule`` matched or seen in feeds.

        Read in pages by (published_ms, id), so an export of a large database holds
        one page in memory, not the whole table.
        """
        cond: list[Any] = []
        if since_ms is not None:
            cond.append(items.c.published_ms >= since_ms)
        if until_ms is not None:
            cond.append(items.c.published_ms < until_ms)
        if rule is not None:
            cond.append(exists().where(and_(matches.c.item_id == items.c.id,
                                            matches.c.rule == rule)))
        if feed_ids:
            cond.append(exists().where(and_(item_feeds.c.item_id == items.c.id,
                                            item_feeds.c.feed_id.in_(list(feed_ids)))))
        from monitor.store.store import _row_item  # store.py imports this module

        after: tuple[int, int] | None = None
        while True:
            page = list(cond)
            if after is not None:
                page.append(or_(items.c.published_ms > after[0],
                                and_(items.c.published_ms == after[0], items.c.id > after[1])))
            q = select(items).where(and_(true(), *page)) \
                .order_by(items.c.published_ms, items.c.id).limit(batch)
            with self.engine.connect() as conn:
                rows = conn.execute(q).mappings().all()
                fmap = _feeds_of(conn, [r["id"] for r in rows])
            if not rows:
                return
            for r in rows:
                yield ExportRow(_row_item(r, fmap.get(r["id"], ())), r["pruned_ms"] is not None)
            after = (rows[-1]["published_ms"], rows[-1]["id"])

    def count_matches(self, rule: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(matches)
                                    .where(matches.c.rule == rule)).scalar_one())

    def known_feed_ids(self) -> set[str]:
        """Every feed id items were seen in (configured or not: 'archive', removed feeds)."""
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(item_feeds.c.feed_id).distinct())}

    # -- retention -----------------------------------------------------------------------

    def prune(self, now_ms: int, bodies_before_ms: int | None, keys_before_ms: int | None,
              batch: int = 1000) -> PruneStats:
        """Delete items published before ``keys_before_ms``; empty the bodies of those
        published before ``bodies_before_ms``. Items with a waiting alert stay whole.

        Short transactions of ``batch`` items each, so a large first prune does not
        hold the write lock against the pollers for long.
        """
        stats = PruneStats()
        waiting = exists().where(and_(alerts.c.item_id == items.c.id,
                                      alerts.c.status.in_(UNFINISHED)))
        if keys_before_ms is not None:
            old = and_(items.c.published_ms < keys_before_ms, ~waiting)
            while True:
                with self.engine.begin() as conn:
                    ids = [r.id for r in conn.execute(
                        select(items.c.id).where(old).order_by(items.c.id).limit(batch))]
                    if not ids:
                        break
                    # Item rows cascade to item_feeds, matches and (finished) alerts.
                    stats.deleted += conn.execute(
                        delete(items).where(items.c.id.in_(ids))).rowcount
        if bodies_before_ms is not None:
            old = and_(items.c.published_ms < bodies_before_ms, items.c.pruned_ms.is_(None),
                       ~waiting)
            while True:
                with self.engine.begin() as conn:
                    ids = [r.id for r in conn.execute(
                        select(items.c.id).where(old).order_by(items.c.id).limit(batch))]
                    if not ids:
                        break
                    stats.emptied += conn.execute(
                        update(items).where(items.c.id.in_(ids))
                        .values(summary="", content="", pruned_ms=now_ms)).rowcount
        cutoff = max(x for x in (bodies_before_ms, keys_before_ms, -1) if x is not None)
        if cutoff >= 0:
            with self.engine.connect() as conn:
                stats.kept = int(conn.execute(
                    select(func.count()).select_from(items)
                    .where(and_(items.c.published_ms < cutoff, waiting))).scalar_one())
        return stats

    # -- editions ------------------------------------------------------------------------

    def editions(self, item_id: int, rule: str, window_ms: int) -> list[Edition]:
        """The item and its other editions the rule matched: same title key, published
        within ``window_ms`` of it, seen in none of its feeds. The item comes first."""
        with self.engine.connect() as conn:
            me = conn.execute(select(items.c.title_key, items.c.published_ms, items.c.url)
                              .where(items.c.id == item_id)).first()
            if me is None:
                return []
            rows = [] if me.title_key is None else conn.execute(
                select(items.c.id, items.c.url, items.c.published_ms)
                .where(and_(items.c.title_key == me.title_key,
                            items.c.published_ms.between(me.published_ms - window_ms,
                                                         me.published_ms + window_ms),
                            exists().where(and_(matches.c.item_id == items.c.id,
                                                matches.c.rule == rule))))
                .order_by(items.c.published_ms, items.c.id)).all()
            fmap = _feeds_of(conn, [item_id, *(r.id for r in rows)])
        mine = set(fmap.get(item_id, ()))
        out = [Edition(item_id, me.url, fmap.get(item_id, ()), me.published_ms)]
        for r in rows:
            theirs = fmap.get(r.id, ())
            if r.id != item_id and not mine.intersection(theirs):
                out.append(Edition(r.id, r.url, theirs, r.published_ms))
        return out

    def _lock_title_keys(self, conn: Any, keys: Collection[str]) -> None:
        """Serialise cross-edition decisions per story across processes (PostgreSQL).

        Two daemons storing the /cn and the /tw edition at the same moment would
        each miss the other's uncommitted match and both alert. SQLite has one
        writer at a time, so it needs nothing. Sorted, so two transactions never
        wait for each other's locks in opposite orders.
        """
        if self.is_sqlite:
            return
        for h in sorted({_lock_id(k) for k in keys}):
            conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :k)"),
                         {"ns": _EDITION_LOCK, "k": h})

    def _edition_joins(self, conn: Any, feed_id: str,
                       wanted: Sequence[tuple[int | None, Item, str, int | None]]
                       ) -> set[tuple[str, str]]:
        """(item key, rule) of the ``wanted`` (item id, item, rule, window) whose story the
        rule already matched in another edition: the same title key, published within
        the window, in an item not seen in ``feed_id``."""
        keyed = [(item_id, it, rule, window or 0, k) for item_id, it, rule, window in wanted
                 if (k := title_key(it.title)) is not None]
        if not keyed:
            return set()
        keys = {k for *_, k in keyed}
        self._lock_title_keys(conn, keys)
        siblings = self._matched_siblings(conn, feed_id, keys, {rule for _, _, rule, _, _ in keyed})
        out: set[tuple[str, str]] = set()
        for item_id, it, rule, window, k in keyed:
            for sib_id, sib_ms in siblings.get((k, rule), ()):
                if sib_id != item_id and abs(sib_ms - it.published_ms) <= window:
                    out.add((it.key, rule))
                    log.info("rule '%s': %s is another edition of item %d, already matched: "
                             "no second alert", rule, it.url, sib_id)
                    break
        return out

    def _matched_siblings(self, conn: Any, feed_id: str, keys: Collection[str],
                          rules: Collection[str]) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """(title key, rule) -> [(item id, published_ms)] of items the rule matched that
        carry the title key and were not seen in ``feed_id``."""
        out: dict[tuple[str, str], list[tuple[int, int]]] = {}
        if not keys or not rules:
            return out
        in_feed = exists().where(and_(item_feeds.c.item_id == items.c.id,
                                      item_feeds.c.feed_id == feed_id))
        q = (select(items.c.id, items.c.title_key, items.c.published_ms, matches.c.rule)
             .join(matches, matches.c.item_id == items.c.id)
             .where(and_(items.c.title_key.in_(sorted(keys)),
                         matches.c.rule.in_(sorted(rules)), ~in_feed)))
        for r in conn.execute(q):
            out.setdefault((r.title_key, r.rule), []).append((r.id, r.published_ms))
        return out

    # -- on_update: always ---------------------------------------------------------------

    def _rearm(self, conn: Any, item_id: int, hit: RuleMatch, channels: Sequence[str],
               now_ms: int, due_ms: int) -> int:
        """Alert again for an updated item: a new row per channel that has none, and
        rows already finished (sent, dead, silenced) back to pending with the new
        keywords and snippet and ``revision`` + 1. Rows still waiting only get the
        new keywords and snippet: they will be sent with the updated item anyway.
        The unique (rule, item, channel) constraint stays: one row per channel, re-armed.
        """
        if not channels:
            return 0
        keywords = json.dumps(list(hit.keywords), ensure_ascii=False)
        mine = and_(alerts.c.rule == hit.rule, alerts.c.item_id == item_id,
                    alerts.c.channel.in_(list(channels)))
        rearmed = conn.execute(update(alerts).where(and_(
            mine, alerts.c.status.in_(("sent", "dead", "silenced")))).values(
            status="pending", attempts=0, revision=alerts.c.revision + 1, keywords=keywords,
            snippet=hit.snippet, created_ms=now_ms, next_attempt_ms=due_ms, sent_ms=None,
            last_error=None, silence_id=None, lease_owner=None, lease_until_ms=None)).rowcount
        conn.execute(update(alerts).where(and_(mine, alerts.c.status.in_(("pending", "held"))))
                     .values(keywords=keywords, snippet=hit.snippet))
        created = self._insert_rows(conn, alerts, [
            {"rule": hit.rule, "item_id": item_id, "channel": channel, "keywords": keywords,
             "snippet": hit.snippet, "status": "pending", "attempts": 0, "created_ms": now_ms,
             "next_attempt_ms": due_ms} for channel in channels], alerts.c.id, count=True)
        return max(rearmed, 0) + created


def _lock_id(key: str) -> int:
    # A stable 32-bit signed id (Python's hash() changes between processes).
    return zlib.crc32(key.encode("utf-8")) - 2**31


def _feeds_of(conn: Any, item_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    ids = list(dict.fromkeys(item_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for r in conn.execute(select(item_feeds.c.item_id, item_feeds.c.feed_id)
                              .where(item_feeds.c.item_id.in_(chunk))
                              .order_by(item_feeds.c.first_seen_ms, item_feeds.c.feed_id)):
            out.setdefault(r.item_id, []).append(r.feed_id)
    return {k: tuple(v) for k, v in out.items()}


__all__ = ["DEFAULT_OPTIONS", "Edition", "ExportRow", "HistoryMixin", "OptionsFn",
           "PruneStats", "RuleOptions", "UNFINISHED", "title_key"]
