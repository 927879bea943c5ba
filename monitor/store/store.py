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
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError

from monitor.errors import StoreError
from monitor.store import migrate
from monitor.store.history import DEFAULT_OPTIONS, HistoryMixin, OptionsFn, title_key
from monitor.store.outbox import OutboxMixin, due_states
from monitor.store.schema import alerts, feeds, item_feeds, items, matches
from monitor.types import (
    AlertRow,
    FeedRow,
    FeedSpec,
    IngestStats,
    Item,
    RuleMatch,
    StoredItem,
)

MatchFn = Callable[[Item, Collection[str]], list[RuleMatch]]
ChannelsFn = Callable[[str], Sequence[str]]


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


_PARTS: dict[str, dict[str, str]] = {
    "feeds": {"sync": "sync_feeds", "claim_due": "claim_due_feeds", "finish_poll": "finish_poll",
              "release_leases": "release_feed_leases"},
    "items": {"ingest": "ingest", "iter_stored": "iter_items"},
    "outbox": {"lease": "lease_alerts", "mark_sent": "mark_sent_many",
               "mark_failed": "mark_failed_many", "hold": "hold", "defer": "defer",
               "mark_silenced": "mark_silenced", "held_release": "held_release",
               "redeliver": "redeliver", "release_leases": "release_alert_leases",
               "editions": "editions", "add_silence": "add_silence", "silences": "silences",
               "expire_silence": "expire_silence"},
    "history": {"import_items": "import_items", "stored_keys": "stored_keys",
                "export_rows": "export_rows", "count_matches": "count_matches",
                "known_feed_ids": "known_feed_ids", "prune": "prune"},
    "readouts": {"counts": "counts", "alert_summary": "alert_summary",
                 "rule_match_counts": "rule_match_counts", "feed_rows": "feed_rows"},
}


class _Part:
    """The store's methods of one job under their new names (until the split)."""

    def __init__(self, store: Any, names: dict[str, str]) -> None:
        self._store = store
        self._names = names

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, self._names[name])


class Store(OutboxMixin, HistoryMixin):
    """One database, shared by the scheduler, the pollers and the deliverer."""

    def __init__(self, url: str, upgrade: bool | None = True) -> None:
        """Open the database; ``upgrade``: True migrates, False refuses an old schema,
        None leaves the schema alone (for inspecting it)."""
        self.url = url
        for part, names in _PARTS.items():
            setattr(self, part, _Part(self, names))
        # (configured feed ids, feeds in the database that are not among them): see
        # claim_due_feeds.
        self._claim_scope: tuple[frozenset[str], frozenset[str]] | None = None
        self._finish_statements: dict[tuple[str, ...], Any] = {}
        self._claim_cache: tuple[frozenset[str], tuple[Any, Any]] | None = None
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
            engine = create_engine(url, pool_size=10, max_overflow=20)
            _ping_when_idle(engine)
            return engine
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
            # wrote in between, and busy_timeout cannot save it. Sent on the driver's
            # connection: every transaction starts here, and SQLAlchemy's statement
            # machinery (events, execution context) would cost more than the BEGIN.
            conn.connection.driver_connection.execute("BEGIN IMMEDIATE")

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
            # Sorted, and inserts that yield: daemons that start (or reload a new config)
            # together on one PostgreSQL write the same rows in one order, so they neither
            # deadlock nor fail on a feed another daemon added a moment earlier.
            for spec in sorted(specs, key=lambda s: s.id):
                row = existing.get(spec.id)
                if row is None:
                    self._insert_new(
                        conn, feeds, id=spec.id, url=spec.url, title=spec.title,
                        next_poll_ms=now_ms + int(random.uniform(0, first_spread_s) * 1000),
                        failures=0, first_poll_done=False, added_ms=now_ms)
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
                        feed_ids: Collection[str], due_ms: int | None = None) -> list[FeedRow]:
        """Lease up to ``limit`` configured feeds whose poll is due (by ``due_ms``, default
        now) and that no other owner holds.

        On PostgreSQL the SELECT locks the rows it returns and skips rows another
        transaction has locked; a row whose lease another claimer set in between fails
        the re-checked ``free`` condition. So concurrent claimers get disjoint sets.

        "Configured" is said by exclusion: the statement leaves out the feeds this store
        has seen in the database but not in ``feed_ids`` (usually none: feeds removed from
        the config), so its text and parameters do not grow with the number of feeds. A
        row it takes that is not in ``feed_ids`` (added meanwhile by another daemon with a
        different config) is handed back untouched and excluded from then on.
        """
        if limit <= 0 or not feed_ids:
            return []
        wanted = feed_ids if isinstance(feed_ids, frozenset) else frozenset(feed_ids)
        claimed: list[FeedRow] = []
        while len(claimed) < limit:
            rows, strays = self._claim(owner, now_ms, limit - len(claimed), lease_ms, wanted,
                                       due_ms)
            claimed.extend(rows)
            if not strays:
                break
            with self.engine.begin() as conn:
                conn.execute(update(feeds).where(and_(feeds.c.id.in_(strays),
                                                      feeds.c.lease_owner == owner))
                             .values(lease_owner=None, lease_until_ms=None))
            scope = self._claim_scope
            known = scope[1] if scope is not None and scope[0] == wanted else frozenset()
            self._claim_scope = (wanted, known | frozenset(strays))
        return sorted(claimed, key=lambda r: r.next_poll_ms)

    def _claim(self, owner: str, now_ms: int, limit: int, lease_ms: int,
               wanted: frozenset[str], due_ms: int | None) -> tuple[list[FeedRow], list[str]]:
        """One claiming statement: the rows leased that are wanted, and the ids that are not."""
        params = {"c_now": now_ms, "c_due": now_ms if due_ms is None else due_ms,
                  "c_limit": limit, "c_owner": owner, "c_until": now_ms + lease_ms}
        with self.engine.begin() as conn:
            pick, lease = self._claim_statements(self._foreign_feeds(conn, wanted))
            if lease is None:  # PostgreSQL: pick, lock, lease and return in one
                rows = conn.execute(pick, params).mappings().all()
            else:
                # Every SQLite transaction here is BEGIN IMMEDIATE: nobody writes between
                # the pick and the lease.
                ids = [r.id for r in conn.execute(pick, params)]
                if not ids:
                    return [], []
                rows = conn.execute(lease, {**params, "c_ids": ids}).mappings().all()
        ours = [self._feed_row(r) for r in rows if r["id"] in wanted]
        return ours, [r["id"] for r in rows if r["id"] not in wanted]

    def _claim_statements(self, foreign: frozenset[str]) -> tuple[Any, Any]:
        """The claim's statements, built once per set of excluded feeds: a claim runs
        after every few polls, and a statement object reused skips SQLAlchemy's
        per-statement cache-key work."""
        cached = self._claim_cache
        if cached is not None and cached[0] is foreign:
            return cached[1]
        free = or_(feeds.c.lease_until_ms.is_(None),
                   feeds.c.lease_until_ms < bindparam("c_now"))
        cond = [feeds.c.next_poll_ms <= bindparam("c_due"), free]
        if foreign:
            cond.append(~self._among(feeds.c.id, foreign))
        q = select(feeds.c.id).where(and_(*cond)).order_by(feeds.c.next_poll_ms) \
            .limit(bindparam("c_limit"))
        lease_values = {"lease_owner": bindparam("c_owner"),
                        "lease_until_ms": bindparam("c_until")}
        statements: tuple[Any, Any]
        if not self.is_sqlite:
            # MATERIALIZED runs the pick once (a LIMIT ... SKIP LOCKED subquery the
            # planner re-ran could lease more rows).
            picked = q.with_for_update(skip_locked=True).cte("picked") \
                .prefix_with("MATERIALIZED")
            statements = (update(feeds).where(feeds.c.id == picked.c.id)
                          .values(lease_values).returning(*feeds.c), None)
        else:
            statements = (q, update(feeds).where(and_(
                feeds.c.id.in_(bindparam("c_ids", expanding=True)), free))
                .values(lease_values).returning(*feeds.c))
        self._claim_cache = (foreign, statements)
        return statements

    def _foreign_feeds(self, conn: Any, wanted: frozenset[str]) -> frozenset[str]:
        """The feeds in the database that ``wanted`` leaves out, read once per feed set."""
        scope = self._claim_scope
        if scope is not None and (scope[0] is wanted or scope[0] == wanted):
            return scope[1]
        foreign = frozenset(r.id for r in conn.execute(select(feeds.c.id))) - wanted
        self._claim_scope = (wanted, foreign)
        return foreign

    def _among(self, column: Any, values: Collection[str]) -> Any:
        """``column IN values``; on PostgreSQL with one parameter, unnested in a subquery.

        Every claim names all configured feeds: hundreds of IN parameters cost more to
        render and parse than the claim itself. One parameter keeps the statement text
        fixed, so psycopg prepares it and PostgreSQL soon switches to a generic plan;
        in that plan ``= ANY(param)`` would compare each row with every value, while
        ``IN (SELECT unnest(param))`` hashes the values once. Feed ids (slugs, no commas)
        travel as one comma-joined string, cheaper to send than an array.
        """
        if self.is_sqlite:
            return column.in_(list(values))
        if any("," in v for v in values):
            param = bindparam(None, list(values), type_=ARRAY(String))
        else:
            param = func.string_to_array(bindparam(None, ",".join(values), type_=String), ",")
        return column.in_(select(func.unnest(param)).scalar_subquery())

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
            b_id=feed_id, b_owner=owner, next_poll_ms=next_poll_ms, last_poll_ms=now_ms,
            last_outcome=outcome, last_error=error, last_status=status, failures=failures,
            lease_owner=None, lease_until_ms=None)
        if not keep_validators:
            values.update(etag=etag, last_modified=last_modified)
        if first_poll_done is not None:
            values["first_poll_done"] = first_poll_done
        with self.engine.begin() as conn:
            conn.execute(self._finish_statement(tuple(values)), values)

    def _finish_statement(self, names: tuple[str, ...]) -> Any:
        """finish_poll's UPDATE for one set of columns, built once: every poll runs it, and a
        statement object reused skips SQLAlchemy's per-statement cache-key work."""
        stmt = self._finish_statements.get(names)
        if stmt is None:
            stmt = update(feeds).where(and_(
                feeds.c.id == bindparam("b_id"), feeds.c.lease_owner == bindparam("b_owner"))
            ).values({n: bindparam(n) for n in names if not n.startswith("b_")})
            self._finish_statements[names] = stmt
        return stmt

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
               channels_for: ChannelsFn, alert_min_published_ms: int | None = None,
               options: OptionsFn | None = None) -> IngestStats:
        """Store one poll's items and, in the same transaction, the alerts they cause.

        Same key and timestamp: a repeat (only the feed is recorded). Same key,
        new timestamp: an update, stored and re-matched. A rule alerts for an
        item once: only rules that did not match it before create alerts.
        ``alert_min_published_ms`` holds back alerts for older items (a new
        feed's backlog); their matches are still recorded so they never alert.
        ``options`` gives each rule's ``on_update`` policy and cross-edition
        settings (``RuleOptions``; by default: rematch, no editions). An item an
        import stored is recorded quietly the first time a poll carries it.

        A poll costs a handful of statements whatever its size: one lookup each of
        the keys, the feeds they were seen in and their earlier matches, and one
        multi-row insert per table, not several statements per item.
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
                self._ingest_batch(conn, feed_id, unique, now_ms, match, channels_for,
                                   alert_min_published_ms, stats,
                                   options or (lambda _rule: DEFAULT_OPTIONS))
        except SQLAlchemyError as e:
            raise StoreError(f"storing items of feed '{feed_id}' failed: "
                             f"{e.__class__.__name__}: {getattr(e, 'orig', e)}") from e
        return stats

    def _ingest_batch(self, conn: Any, feed_id: str, unique: dict[str, Item], now_ms: int,
                      match: MatchFn, channels_for: ChannelsFn,
                      alert_min_published_ms: int | None, stats: IngestStats,
                      options: OptionsFn) -> None:
        # One key order in every transaction (items, then where they were seen, matches
        # and alerts, each in key order): two daemons storing the same articles (listed
        # in another order by another feed) then wait for each other on the unique key
        # instead of deadlocking.
        keys = sorted(unique)
        found = self._item_rows(conn, keys)
        seen = self._seen_in(conn, [r.id for r in found.values()])
        # Matching runs on what was read, before this transaction writes anything.
        work = [_plan(feed_id, unique[k], found.get(k), seen, match) for k in keys]

        new = [w for w in work if w.item_id is None]
        lost: list[str] = []
        if new:
            ids = self._insert_items(conn, [w.item for w in new], now_ms)
            lost = [w.item.key for w in new if w.item.key not in ids]
            for w in new:
                w.item_id = ids.get(w.item.key)
            if lost:  # another process stored these keys since our SELECT: not new here
                rows = self._item_rows(conn, lost)
                lost_seen = self._seen_in(conn, [r.id for r in rows.values()])
                again = {k: _plan(feed_id, unique[k], rows[k], lost_seen, match) for k in lost}
                work = [again.get(w.item.key, w) for w in work]

        changed = [w for w in work if w.kind == "updated"]
        if changed:
            conn.execute(update(items).where(items.c.id == bindparam("_id")),
                         [{"_id": w.item_id, **_item_values(w.item, now_ms)} for w in changed])
        stats.new += len(new) - len(lost)
        stats.updated += len(changed)
        stats.repeats += sum(w.kind == "repeat" for w in work)
        self._insert_rows(conn, item_feeds, [
            {"item_id": w.item_id, "feed_id": feed_id, "first_seen_ms": now_ms}
            for w in work if w.new_feed])
        # Imported items a poll carries for the first time: their matches are recorded
        # below without alerting (whatever the timestamp: an archive mirror stamps
        # items with its own poll time), and from now on they are ordinary items.
        quiet = sorted({w.item_id for w in work if w.quiet})
        if quiet:
            conn.execute(update(items).where(items.c.id.in_(quiet)).values(imported=False))

        # New, updated, or seen in a new feed (a rule limited to that feed may now apply):
        # the rules that did not match the item before.
        hit = [w for w in work if w.hits]
        if not hit:
            return
        before = self._matched_rules(conn, [w.item_id for w in hit if w.kind != "new"])
        candidates: list[tuple[_Work, RuleMatch]] = []
        rearm: list[tuple[_Work, RuleMatch]] = []  # on_update: always
        for w in hit:
            done = set(before.get(w.item_id, ()))
            for h in w.hits:
                if h.rule not in done:
                    done.add(h.rule)
                    candidates.append((w, h))
                elif w.kind == "updated" and options(h.rule).on_update == "always":
                    rearm.append((w, h))

        def may_alert(w: _Work, rule: str) -> bool:
            if w.quiet or (alert_min_published_ms is not None
                           and w.item.published_ms < alert_min_published_ms):
                return False
            return not (w.kind == "updated" and options(rule).on_update == "ignore")

        alerting = {(w.item.key, h.rule): may_alert(w, h.rule) for w, h in candidates}
        # Cross-edition rules: another edition of the story already matched gives no
        # second alert; the first alert's message lists both (deliverer: editions).
        joined = self._edition_joins(conn, feed_id, [
            (w.item_id, w.item, h.rule, options(h.rule).edition_window_ms)
            for w, h in candidates if alerting[(w.item.key, h.rule)]
            and options(h.rule).edition_window_ms is not None])
        for item_id_rule in joined:
            alerting[item_id_rule] = False
        returned = self._insert_rows(
            conn, matches, [{"item_id": w.item_id, "rule": h.rule, "matched_ms": now_ms,
                             "alerted": alerting[(w.item.key, h.rule)]}
                            for w, h in candidates],
            matches.c.item_id, matches.c.rule)
        inserted = None if returned is None else set(returned)
        new_alerts = []
        as_json: dict[tuple[str, ...], str] = {}
        for w, h in candidates:
            # A concurrent poll of another feed may have matched it first (and alerted).
            if inserted is not None and (w.item_id, h.rule) not in inserted:
                continue
            stats.matched += 1
            stats.rules[h.rule] = stats.rules.get(h.rule, 0) + 1
            if (w.item.key, h.rule) in joined:
                stats.alerted.append((h.rule, w.item))
            if not alerting[(w.item.key, h.rule)]:
                continue
            stats.alerted.append((h.rule, w.item))
            keywords = as_json.get(h.keywords)
            if keywords is None:  # rules repeat their keywords from item to item
                keywords = as_json[h.keywords] = json.dumps(list(h.keywords), ensure_ascii=False)
            due = now_ms + options(h.rule).hold_ms  # a hold lets another edition join
            new_alerts.extend(
                {"rule": h.rule, "item_id": w.item_id, "channel": channel,
                 "keywords": keywords, "snippet": h.snippet, "status": "pending",
                 "attempts": 0, "created_ms": now_ms, "next_attempt_ms": due}
                for channel in channels_for(h.rule))
        # The unique (rule, item, channel) constraint is the last word on duplicates,
        # whatever another process or an earlier crash did.
        stats.alerts += self._insert_rows(conn, alerts, new_alerts, alerts.c.id, count=True)
        for w, h in rearm:
            if may_alert(w, h.rule):
                n = self._rearm(conn, w.item_id, h, channels_for(h.rule), now_ms,
                                now_ms + options(h.rule).hold_ms)
                stats.alerts += n
                if n:
                    stats.alerted.append((h.rule, w.item))

    @staticmethod
    def _item_rows(conn: Any, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in _chunks(keys, 500):
            for r in _lookup(conn, _ITEM_ROWS, chunk):
                found[r.key] = r
        return found

    @staticmethod
    def _seen_in(conn: Any, item_ids: Sequence[int]) -> dict[int, set[str]]:
        seen: dict[int, set[str]] = {}
        for chunk in _chunks(item_ids, 500):
            for r in _lookup(conn, _SEEN_IN, chunk):
                seen.setdefault(r.item_id, set()).add(r.feed_id)
        return seen

    @staticmethod
    def _matched_rules(conn: Any, item_ids: Sequence[int]) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for chunk in _chunks(item_ids, 500):
            for r in _lookup(conn, _MATCHED, chunk):
                out.setdefault(r.item_id, set()).add(r.rule)
        return out

    def _insert_items(self, conn: Any, new: Sequence[Item], now_ms: int) -> dict[str, int]:
        """Insert items whose keys were not found; the ids of those this call inserted."""
        rows = [{"key": it.key, "first_seen_ms": now_ms, **_item_values(it, now_ms)}
                for it in new]
        inserted = self._insert_rows(conn, items, rows, items.c.key, items.c.id)
        if inserted is None:  # no RETURNING: see _insert_rows, every row went in
            return {r.key: r.id for r in self._item_rows(conn, [it.key for it in new]).values()}
        return {key: item_id for key, item_id in inserted}

    def _insert_rows(self, conn: Any, table: Any, rows: list[dict[str, Any]], *returning: Any,
                     count: bool = False) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING of many rows (all with the same keys).

        Returns the ``returning`` columns of the rows it inserted, as tuples, or their
        number with ``count``; None when the database cannot say (SQLite before 3.35
        has no RETURNING; it also has one writer at a time, so what this transaction
        looked up is exact and every row goes in).

        Written as driver SQL, multi-row VALUES in chunks of 2^k rows (at most 256; so a
        few statement texts, which SQLite keeps prepared, serve every poll): SQLAlchemy's
        insert processes every row's parameters in Python, which cost more than the
        database's work for a poll's matches and alerts. SQLite counts the rows it
        inserted itself (one writer at a time); else RETURNING tells.
        """
        if not rows:
            return 0 if count else []
        dialect = conn.dialect
        back = () if count and self.is_sqlite else returning
        if dialect.paramstyle not in _MARKS or (back and not dialect.insert_returning):
            return self._insert_rows_core(conn, table, rows, *returning, count=count)
        names = tuple(rows[0])
        values = itemgetter(*names)
        params = [values(r) for r in rows] if len(names) > 1 else [(r[names[0]],) for r in rows]
        limit = 999 if self.is_sqlite and dialect.server_version_info < (3, 32) else 32766
        most = min(256, 1 << ((limit // len(names)).bit_length() - 1))
        got: list[Any] = []
        inserted = start = 0
        while start < len(params):
            size = min(most, 1 << ((len(params) - start).bit_length() - 1))
            flat = tuple([v for row in params[start:start + size] for v in row])
            result = conn.exec_driver_sql(_insert_sql(dialect, table, names, size, back), flat)
            start += size
            if back:
                got.extend(result.all())
            else:
                inserted += max(result.rowcount, 0)
        if not back:
            return inserted if count else None
        return len(got) if count else [tuple(r) for r in got]

    def _insert_rows_core(self, conn: Any, table: Any, rows: list[dict[str, Any]],
                          *returning: Any, count: bool = False) -> Any:
        """``_insert_rows`` through SQLAlchemy Core, for DBAPIs with named parameters."""
        stmt = (sqlite_insert if self.is_sqlite else pg_insert)(table).on_conflict_do_nothing()
        if not returning:
            conn.execute(stmt, rows)
            return None
        if not conn.dialect.insert_executemany_returning:
            result = conn.execute(stmt, rows)
            return max(result.rowcount, 0) if count else None
        got = conn.execute(stmt.returning(*returning), rows).all()
        return len(got) if count else [tuple(r) for r in got]

    def _insert_new(self, conn: Any, table: Any, **values: Any) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING: the new row's (first) key, None if it existed.

        Two daemons starting (or reloading a new config) together insert the same feed
        row at the same time. PostgreSQL makes the second wait for the first and then
        skips the row, instead of failing the second one's whole transaction.
        """
        if self.is_sqlite:
            # One writer at a time (BEGIN IMMEDIATE); rowcount is exact here, and
            # RETURNING would need SQLite 3.35.
            r = conn.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
            return r.inserted_primary_key[0] if r.rowcount else None
        # psycopg reports no rowcount for this statement; RETURNING tells.
        key = next(iter(table.primary_key.columns))
        return conn.execute(pg_insert(table).values(**values).on_conflict_do_nothing()
                            .returning(key)).scalar()

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
        due = and_(due_states(), alerts.c.next_attempt_ms <= now_ms, free,
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
                feeds=fmap.get(r["item_id"], ()), item_id=r["item_id"],
                revision=r["revision"])
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
                d = out.setdefault(channel, {"pending": 0, "retrying": 0, "held": 0, "sent": 0,
                                             "dead": 0, "silenced": 0})
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


@dataclass
class _Work:
    """One item of a poll on its way into the store."""

    item: Item
    item_id: int | None  # None until a new item is inserted
    kind: str  # "new", "updated" or "repeat"
    new_feed: bool  # first time seen in this feed
    hits: list[RuleMatch]
    quiet: bool = False  # imported, and seen in a polled feed for the first time


def _by(column: Any, select_: Any, array_type: Any) -> dict[bool, Any]:
    """A lookup by many values of ``column``, built once per database kind. On
    PostgreSQL the values are one array parameter (``= ANY``), so the statement text is
    the same for any number of values and psycopg prepares it; SQLite gets ``IN``."""
    return {False: select_.where(column.in_(bindparam("vals", expanding=True))),
            True: select_.where(column == any_(bindparam("vals", type_=ARRAY(array_type))))}


_ITEM_ROWS = _by(items.c.key, select(items.c.id, items.c.key, items.c.published_ms,
                                     items.c.imported), Text)
_SEEN_IN = _by(item_feeds.c.item_id, select(item_feeds.c.item_id, item_feeds.c.feed_id),
               Integer)
_MATCHED = _by(matches.c.item_id, select(matches.c.item_id, matches.c.rule), Integer)


def _lookup(conn: Any, statements: dict[bool, Any], values: Sequence[Any]) -> Any:
    return conn.execute(statements[conn.dialect.name == "postgresql"], {"vals": list(values)})


IDLE_PING_S = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, for connections that sat idle in the pool.

    A connection unused for ``IDLE_PING_S`` is pinged when taken (a server restart or a
    firewall's idle cut shows there, and the pool then connects afresh); a busy daemon's
    connections go back and forth many times a second and are not pinged, where
    ``pool_pre_ping`` would add a round trip to every transaction.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise DisconnectionError(f"idle connection lost: {e}") from e
        if not alive:
            raise DisconnectionError("idle connection lost")


def _plan(feed_id: str, it: Item, row: Any, seen: dict[int, set[str]],
          match: MatchFn) -> _Work:
    """What storing ``it`` means, given its stored row (or None) and where it was seen."""
    if row is None:
        return _Work(it, None, "new", True, list(match(it, {feed_id})))
    changed = row.published_ms != it.published_ms
    seen_in = set(seen.get(row.id, ()))
    new_feed = feed_id not in seen_in
    seen_in.add(feed_id)
    quiet = bool(row.imported)
    # An imported item is matched on its first sighting even when nothing changed, so
    # the rules that apply to the polled feed's version are recorded (not alerted).
    hits = list(match(it, seen_in)) if changed or new_feed or quiet else []
    return _Work(it, row.id, "updated" if changed else "repeat", new_feed, hits, quiet)


def _item_values(it: Item, now_ms: int) -> dict[str, Any]:
    return dict(url=it.url, entry_id=it.entry_id, title=it.title, summary=it.summary,
                content=it.content, author=it.author,
                categories=json.dumps(list(it.categories), ensure_ascii=False)
                if it.categories else "[]",
                published_ms=it.published_ms, updated_ms=now_ms, title_key=title_key(it.title),
                pruned_ms=None)  # an update brings a body back after retention emptied it


def _row_item(r: Any, feeds_seen: Sequence[str], id_col: Any = None) -> Item:
    return Item(
        key=r["key"], url=r["url"], title=r["title"], published_ms=r["published_ms"],
        feed_id=feeds_seen[0] if feeds_seen else "", entry_id=r["entry_id"],
        summary=r["summary"], content=r["content"], author=r["author"],
        categories=tuple(json.loads(r["categories"] or "[]")))


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


# Positional parameter marks of the DBAPIs Store.ingest writes through directly.
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_INSERT_SQL: dict[tuple[Any, ...], str] = {}  # bounded: a few tables, nine row counts


def _insert_sql(dialect: Any, table: Any, names: tuple[str, ...], nrows: int,
                returning: Sequence[Any]) -> str:
    """INSERT INTO table (names) VALUES (...) * nrows ON CONFLICT DO NOTHING [RETURNING],
    in the dialect's quoting and parameter marks (SQLite 3.24+ and PostgreSQL 9.5+)."""
    key = (dialect.name, dialect.paramstyle, table.name, names, nrows,
           tuple(c.name for c in returning))
    sql = _INSERT_SQL.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        row = "(" + ", ".join([_MARKS[dialect.paramstyle]] * len(names)) + ")"
        sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
               f"({', '.join(quote(n) for n in names)}) VALUES {', '.join([row] * nrows)} "
               "ON CONFLICT DO NOTHING")
        if returning:
            sql += " RETURNING " + ", ".join(quote(c.name) for c in returning)
        _INSERT_SQL[key] = sql
    return sql
