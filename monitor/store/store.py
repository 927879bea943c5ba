"""The storage contract, on SQLAlchemy Core (SQLite by default, PostgreSQL by URL).

Every write is one short transaction. Items are stored together with the alerts
they cause (the transactional outbox), so an alert exists exactly when its item
does. Work (due feeds, pending alerts) is claimed with a leased update: a row
is taken only when its lease is free or expired, so a crashed worker's work
comes back by itself.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from monitor.errors import StoreError
from monitor.store import migrate
from monitor.store.schema import alerts, feeds, item_feeds, items, matches
from monitor.types import Item, RuleMatch

MatchFn = Callable[[Item, Collection[str]], list[RuleMatch]]
ChannelsFn = Callable[[str], Sequence[str]]


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


@dataclass
class IngestStats:
    new: int = 0
    updated: int = 0
    repeats: int = 0
    alerts: int = 0
    matched: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # new matches per rule

    def add(self, other: IngestStats) -> None:
        for name in ("new", "updated", "repeats", "alerts", "matched"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for rule, n in other.rules.items():
            self.rules[rule] = self.rules.get(rule, 0) + n


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


class Store:
    """One database, shared by the scheduler, the pollers and the deliverer."""

    def __init__(self, url: str, upgrade: bool | None = True) -> None:
        """Open the database; ``upgrade``: True migrates, False refuses an old schema,
        None leaves the schema alone (for inspecting it)."""
        self.url = url
        try:
            self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        except Exception as e:  # sqlalchemy raises ArgumentError for a malformed URL
            raise StoreError(f"invalid database URL: {e}") from e
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = self._engine(url)
            if upgrade is not None:
                self._migrate(upgrade)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open database {self.safe_url}: {e.__class__.__name__}: "
                             f"{getattr(e, 'orig', e)}") from e

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _engine(self, url: str) -> Engine:
        if not self.is_sqlite:
            return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event decide how transactions start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: a deferred transaction that
            # reads and then writes fails at once (SQLITE_BUSY) when another thread
            # wrote in between, and busy_timeout cannot save it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _migrate(self, upgrade: bool) -> None:
        head = migrate.head_revision()
        with self.engine.begin() as conn:
            migrate.lock(conn)
            current = migrate.current_revision(conn)
            if current == head:
                return
            if not upgrade:
                raise StoreError(
                    f"database {self.safe_url} has schema {current or 'none'}, this version "
                    f"needs {head}: run 'feed-monitor db upgrade'")
            migrate.upgrade(conn)

    def schema_revision(self) -> tuple[str | None, str]:
        """(the database's revision, the revision this code needs)."""
        with self.engine.connect() as conn:
            return migrate.current_revision(conn), migrate.head_revision()

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError as e:
            raise StoreError(f"database {self.safe_url} unreachable: {e.__class__.__name__}") \
                from e

    # -- feeds -------------------------------------------------------------------------

    def sync_feeds(self, specs: Iterable[FeedSpec], now_ms: int, first_spread_s: float) -> None:
        """Add rows for new feeds (first poll spread over ``first_spread_s``), update URLs.

        Existing feeds keep their schedule; a changed URL drops the validators
        (ETag, Last-Modified) that belonged to the old one.
        """
        with self.engine.begin() as conn:
            existing = {r.id: r for r in conn.execute(
                select(feeds.c.id, feeds.c.url, feeds.c.next_poll_ms, feeds.c.last_poll_ms,
                       feeds.c.failures))}
            for spec in specs:
                row = existing.get(spec.id)
                if row is None:
                    conn.execute(insert(feeds).values(
                        id=spec.id, url=spec.url, title=spec.title,
                        next_poll_ms=now_ms + int(random.uniform(0, first_spread_s) * 1000),
                        failures=0, first_poll_done=False, added_ms=now_ms))
                elif row.url != spec.url:
                    conn.execute(update(feeds).where(feeds.c.id == spec.id).values(
                        url=spec.url, title=spec.title, etag=None, last_modified=None,
                        next_poll_ms=now_ms, failures=0))
                else:
                    values: dict[str, Any] = {"title": spec.title}
                    # A shortened interval applies now, not after the old, longer wait.
                    due = (row.last_poll_ms or now_ms) + int(spec.interval_s * 1000)
                    if row.failures == 0 and row.next_poll_ms > due:
                        values["next_poll_ms"] = due
                    conn.execute(update(feeds).where(feeds.c.id == spec.id).values(**values))

    def claim_due_feeds(self, owner: str, now_ms: int, limit: int, lease_ms: int,
                        feed_ids: Collection[str]) -> list[FeedRow]:
        """Lease up to ``limit`` configured feeds whose poll is due."""
        if limit <= 0 or not feed_ids:
            return []
        free = or_(feeds.c.lease_until_ms.is_(None), feeds.c.lease_until_ms < now_ms)
        due = and_(feeds.c.next_poll_ms <= now_ms, free, feeds.c.id.in_(list(feed_ids)))
        with self.engine.begin() as conn:
            q = select(feeds.c.id).where(due).order_by(feeds.c.next_poll_ms).limit(limit)
            if not self.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(q)]
            if not ids:
                return []
            conn.execute(update(feeds).where(and_(feeds.c.id.in_(ids), free))
                         .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms))
            rows = conn.execute(select(feeds).where(and_(
                feeds.c.id.in_(ids), feeds.c.lease_owner == owner))).mappings().all()
        return [self._feed_row(r) for r in rows]

    @staticmethod
    def _feed_row(r: Any) -> FeedRow:
        return FeedRow(
            id=r["id"], url=r["url"], title=r["title"], next_poll_ms=r["next_poll_ms"],
            etag=r["etag"], last_modified=r["last_modified"], failures=r["failures"],
            first_poll_done=bool(r["first_poll_done"]), last_poll_ms=r["last_poll_ms"],
            last_outcome=r["last_outcome"], last_error=r["last_error"],
            last_status=r["last_status"])

    def finish_poll(self, feed_id: str, owner: str, *, now_ms: int, next_poll_ms: int,
                    outcome: str, error: str | None, status: int | None, failures: int,
                    etag: str | None = None, last_modified: str | None = None,
                    keep_validators: bool = True, first_poll_done: bool | None = None) -> None:
        """Record a poll's outcome and the next poll time, and release the lease."""
        values: dict[str, Any] = dict(
            next_poll_ms=next_poll_ms, last_poll_ms=now_ms, last_outcome=outcome,
            last_error=error, last_status=status, failures=failures,
            lease_owner=None, lease_until_ms=None)
        if not keep_validators:
            values.update(etag=etag, last_modified=last_modified)
        if first_poll_done is not None:
            values["first_poll_done"] = first_poll_done
        with self.engine.begin() as conn:
            conn.execute(update(feeds).where(and_(feeds.c.id == feed_id,
                                                  feeds.c.lease_owner == owner)).values(**values))

    def release_feed_leases(self, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(feeds).where(feeds.c.lease_owner == owner)
                         .values(lease_owner=None, lease_until_ms=None))

    def feed_rows(self) -> list[FeedRow]:
        with self.engine.begin() as conn:
            rows = conn.execute(select(feeds).order_by(feeds.c.id)).mappings().all()
        return [self._feed_row(r) for r in rows]

    def get_feed(self, feed_id: str) -> FeedRow | None:
        with self.engine.begin() as conn:
            r = conn.execute(select(feeds).where(feeds.c.id == feed_id)).mappings().first()
        return self._feed_row(r) if r else None

    # -- items -------------------------------------------------------------------------

    def ingest(self, feed_id: str, parsed: Sequence[Item], now_ms: int, match: MatchFn,
               channels_for: ChannelsFn, alert_min_published_ms: int | None = None
               ) -> IngestStats:
        """Store one poll's items and, in the same transaction, the alerts they cause.

        Same key and timestamp: a repeat (only the feed is recorded). Same key,
        new timestamp: an update, stored and re-matched. A rule alerts for an
        item once: only rules that did not match it before create alerts.
        ``alert_min_published_ms`` holds back alerts for older items (a new
        feed's backlog); their matches are still recorded so they never alert.
        """
        stats = IngestStats()
        unique: dict[str, Item] = {}
        for it in parsed:  # a feed that repeats a key: keep the newest version
            old = unique.get(it.key)
            if old is None or it.published_ms > old.published_ms:
                unique[it.key] = it
        if not unique:
            return stats
        try:
            with self.engine.begin() as conn:
                keys = list(unique)
                found: dict[str, Any] = {}
                for chunk in _chunks(keys, 500):
                    for r in conn.execute(select(items.c.id, items.c.key, items.c.published_ms)
                                          .where(items.c.key.in_(chunk))):
                        found[r.key] = r
                for key, it in unique.items():
                    stats.add(self._ingest_one(conn, feed_id, it, found.get(key), now_ms,
                                               match, channels_for, alert_min_published_ms))
        except SQLAlchemyError as e:
            raise StoreError(f"storing items of feed '{feed_id}' failed: "
                             f"{e.__class__.__name__}: {getattr(e, 'orig', e)}") from e
        return stats

    def _ingest_one(self, conn: Any, feed_id: str, it: Item, row: Any, now_ms: int,
                    match: MatchFn, channels_for: ChannelsFn,
                    alert_min_published_ms: int | None) -> IngestStats:
        stats = IngestStats()
        values = dict(url=it.url, entry_id=it.entry_id, title=it.title, summary=it.summary,
                      content=it.content, author=it.author,
                      categories=json.dumps(list(it.categories), ensure_ascii=False),
                      published_ms=it.published_ms, updated_ms=now_ms)
        if row is None:
            item_id = conn.execute(insert(items).values(key=it.key, first_seen_ms=now_ms,
                                                        **values)).inserted_primary_key[0]
            stats.new = 1
            changed = True
        else:
            item_id = row.id
            changed = row.published_ms != it.published_ms
            if changed:
                conn.execute(update(items).where(items.c.id == item_id).values(**values))
                stats.updated = 1
            else:
                stats.repeats = 1
        seen_in = {r.feed_id for r in conn.execute(
            select(item_feeds.c.feed_id).where(item_feeds.c.item_id == item_id))}
        new_feed = feed_id not in seen_in
        if new_feed:
            conn.execute(insert(item_feeds).values(item_id=item_id, feed_id=feed_id,
                                                   first_seen_ms=now_ms))
            seen_in.add(feed_id)
        if not (changed or new_feed):
            return stats
        # New, updated, or seen in a new feed (a rule limited to that feed may now apply).
        hits = match(it, seen_in)
        if not hits:
            return stats
        before = {r.rule for r in conn.execute(
            select(matches.c.rule).where(matches.c.item_id == item_id))}
        alerting = alert_min_published_ms is None or it.published_ms >= alert_min_published_ms
        for hit in hits:
            if hit.rule in before:
                continue
            stats.matched += 1
            stats.rules[hit.rule] = stats.rules.get(hit.rule, 0) + 1
            conn.execute(insert(matches).values(item_id=item_id, rule=hit.rule,
                                                matched_ms=now_ms, alerted=alerting))
            if not alerting:
                continue
            for channel in channels_for(hit.rule):
                stats.alerts += self._insert_alert(conn, hit, item_id, channel, now_ms)
        return stats

    def _insert_alert(self, conn: Any, hit: RuleMatch, item_id: int, channel: str,
                      now_ms: int) -> int:
        # The unique (rule, item, channel) constraint is the last word on duplicates,
        # whatever another process or an earlier crash did; a savepoint keeps the
        # item's transaction alive when it fires.
        try:
            with conn.begin_nested():
                conn.execute(insert(alerts).values(
                    rule=hit.rule, item_id=item_id, channel=channel,
                    keywords=json.dumps(list(hit.keywords), ensure_ascii=False),
                    snippet=hit.snippet, status="pending", attempts=0, created_ms=now_ms,
                    next_attempt_ms=now_ms))
            return 1
        except IntegrityError:
            return 0

    def iter_items(self, since_ms: int | None = None, feed_ids: Collection[str] = (),
                   batch: int = 500) -> Iterable[StoredItem]:
        """Stored items, oldest first, with the feeds each was seen in."""
        q = select(items).order_by(items.c.published_ms, items.c.id)
        if since_ms is not None:
            q = q.where(items.c.published_ms >= since_ms)
        if feed_ids:
            q = q.where(items.c.id.in_(select(item_feeds.c.item_id)
                                       .where(item_feeds.c.feed_id.in_(list(feed_ids)))))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            for chunk in _chunks(rows, batch):
                fmap = self._feeds_of(conn, [r["id"] for r in chunk])
                for r in chunk:
                    yield StoredItem(r["id"], _row_item(r, fmap.get(r["id"], ())),
                                     fmap.get(r["id"], ()))

    def _feeds_of(self, conn: Any, item_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        out: dict[int, list[str]] = {}
        for r in conn.execute(select(item_feeds.c.item_id, item_feeds.c.feed_id)
                              .where(item_feeds.c.item_id.in_(list(item_ids)))
                              .order_by(item_feeds.c.first_seen_ms, item_feeds.c.feed_id)):
            out.setdefault(r.item_id, []).append(r.feed_id)
        return {k: tuple(v) for k, v in out.items()}

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "items": conn.execute(select(func.count()).select_from(items)).scalar_one(),
                "alerts": conn.execute(select(func.count()).select_from(alerts)).scalar_one(),
            }

    # -- alerts (the outbox) -----------------------------------------------------------

    def lease_alerts(self, owner: str, now_ms: int, limit: int, lease_ms: int,
                     channels: Collection[str]) -> list[AlertRow]:
        """Lease pending alerts that are due, oldest first, for the known channels."""
        if not channels:
            return []
        free = or_(alerts.c.lease_until_ms.is_(None), alerts.c.lease_until_ms < now_ms)
        due = and_(alerts.c.status == "pending", alerts.c.next_attempt_ms <= now_ms, free,
                   alerts.c.channel.in_(list(channels)))
        with self.engine.begin() as conn:
            q = select(alerts.c.id).where(due).order_by(alerts.c.id).limit(limit)
            if not self.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(q)]
            if not ids:
                return []
            conn.execute(update(alerts).where(and_(alerts.c.id.in_(ids), free))
                         .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms))
            rows = conn.execute(
                select(alerts, items).join(items, items.c.id == alerts.c.item_id)
                .where(and_(alerts.c.id.in_(ids), alerts.c.lease_owner == owner))
                .order_by(alerts.c.id)).mappings().all()
            fmap = self._feeds_of(conn, [r["item_id"] for r in rows])
        return [
            AlertRow(
                id=r[alerts.c.id], rule=r["rule"], channel=r["channel"], status=r["status"],
                attempts=r["attempts"], keywords=tuple(json.loads(r["keywords"])),
                snippet=r["snippet"], created_ms=r["created_ms"],
                item=_row_item(r, fmap.get(r["item_id"], ()), id_col=items.c.id),
                feeds=fmap.get(r["item_id"], ()))
            for r in rows
        ]

    def mark_sent(self, alert_id: int, owner: str, now_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(and_(alerts.c.id == alert_id,
                                                   alerts.c.lease_owner == owner))
                         .values(status="sent", sent_ms=now_ms, attempts=alerts.c.attempts + 1,
                                 lease_owner=None, lease_until_ms=None, last_error=None))

    def mark_failed(self, alert_id: int, owner: str, error: str, next_attempt_ms: int,
                    dead: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(and_(alerts.c.id == alert_id,
                                                   alerts.c.lease_owner == owner))
                         .values(status="dead" if dead else "pending",
                                 attempts=alerts.c.attempts + 1, next_attempt_ms=next_attempt_ms,
                                 lease_owner=None, lease_until_ms=None, last_error=error))

    def release_alert_leases(self, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(alerts.c.lease_owner == owner)
                         .values(lease_owner=None, lease_until_ms=None))

    def alert_summary(self) -> dict[str, dict[str, int]]:
        """Per channel: pending (never tried), retrying, sent, dead."""
        out: dict[str, dict[str, int]] = {}
        state = alerts.c.status
        with self.engine.connect() as conn:
            for r in conn.execute(select(alerts.c.channel, state, alerts.c.attempts,
                                         func.count()).group_by(alerts.c.channel, state,
                                                                alerts.c.attempts)):
                channel, status, attempts, n = r
                key = "retrying" if status == "pending" and attempts else status
                d = out.setdefault(channel, {"pending": 0, "retrying": 0, "sent": 0, "dead": 0})
                d[key] = d.get(key, 0) + n
        return out

    def alert_rows(self, status: str | None = None) -> list[dict[str, Any]]:
        q = select(alerts.c.id, alerts.c.rule, alerts.c.channel, alerts.c.status,
                   alerts.c.attempts, alerts.c.last_error, items.c.url, items.c.title
                   ).join(items, items.c.id == alerts.c.item_id).order_by(alerts.c.id)
        if status:
            q = q.where(alerts.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def rule_match_counts(self, since_ms: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.rule: r.n for r in conn.execute(
                select(matches.c.rule, func.count().label("n"))
                .where(matches.c.matched_ms >= since_ms).group_by(matches.c.rule))}

    def delete_feed_rows(self, keep: Collection[str]) -> int:
        """Drop schedule rows of feeds no longer configured (items stay)."""
        with self.engine.begin() as conn:
            return conn.execute(delete(feeds).where(feeds.c.id.not_in(list(keep)))).rowcount


def _row_item(r: Any, feeds_seen: Sequence[str], id_col: Any = None) -> Item:
    return Item(
        key=r["key"], url=r["url"], title=r["title"], published_ms=r["published_ms"],
        feed_id=feeds_seen[0] if feeds_seen else "", entry_id=r["entry_id"],
        summary=r["summary"], content=r["content"], author=r["author"],
        categories=tuple(json.loads(r["categories"] or "[]")))


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
