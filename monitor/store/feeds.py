"""The feeds' schedule: one row per configured feed (next poll, validators, failures),
claimed with a leased update so several workers and processes share the polling."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from monitor.clock import SYSTEM_CLOCK
from monitor.store.database import Database, insert_new
from monitor.store.rows import feed_row
from monitor.store.schema import feeds
from monitor.types import Clock, FeedRow, FeedSpec, PollOutcome


class FeedSchedule:
    """``types.FeedSchedule`` on the ``feeds`` table."""

    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock
        # (configured feed ids, feeds in the database that are not among them): see
        # claim_due.
        self._claim_scope: tuple[frozenset[str], frozenset[str]] | None = None
        self._claim_cache: tuple[frozenset[str], tuple[Any, Any]] | None = None
        self._finish_statements: dict[tuple[str, ...], Update] = {}

    def sync(self, specs: Iterable[FeedSpec], now_ms: int, first_spread_s: float) -> None:
        """Add rows for new feeds (first poll spread over ``first_spread_s``), update URLs.

        Existing feeds keep their schedule; a changed URL drops the validators
        (ETag, Last-Modified) that belonged to the old one.
        """
        with self._db.begin("updating the feeds' schedule") as conn:
            existing = {
                r.id: r
                for r in conn.execute(
                    select(
                        feeds.c.id,
                        feeds.c.url,
                        feeds.c.next_poll_ms,
                        feeds.c.last_poll_ms,
                        feeds.c.failures,
                    )
                )
            }
            # Sorted, and inserts that yield: daemons that start (or reload a new config)
            # together on one PostgreSQL write the same rows in one order, so they neither
            # deadlock nor fail on a feed another daemon added a moment earlier.
            for spec in sorted(specs, key=lambda s: s.id):
                row = existing.get(spec.id)
                if row is None:
                    spread_ms = int(self._clock.random() * first_spread_s * 1000)
                    insert_new(
                        conn,
                        feeds,
                        id=spec.id,
                        url=spec.url,
                        title=spec.title,
                        next_poll_ms=now_ms + spread_ms,
                        failures=0,
                        first_poll_done=False,
                        added_ms=now_ms,
                    )
                elif row.url != spec.url:
                    conn.execute(
                        update(feeds)
                        .where(feeds.c.id == spec.id)
                        .values(
                            url=spec.url,
                            title=spec.title,
                            etag=None,
                            last_modified=None,
                            next_poll_ms=now_ms,
                            failures=0,
                        )
                    )
                else:
                    values: dict[str, Any] = {"title": spec.title}
                    # A shortened interval applies now, not after the old, longer wait.
                    due = (row.last_poll_ms or now_ms) + int(spec.interval_s * 1000)
                    if row.failures == 0 and row.next_poll_ms > due:
                        values["next_poll_ms"] = due
                    conn.execute(update(feeds).where(feeds.c.id == spec.id).values(**values))

    def claim_due(
        self,
        owner: str,
        now_ms: int,
        limit: int,
        lease_ms: int,
        feed_ids: Collection[str],
        due_ms: int | None = None,
    ) -> list[FeedRow]:
        """Lease up to ``limit`` configured feeds whose poll is due (by ``due_ms``, default
        now) and that no other owner holds.

        On PostgreSQL the SELECT locks the rows it returns and skips rows another
        transaction has locked; a row whose lease another claimer set in between fails
        the re-checked ``free`` condition. So concurrent claimers get disjoint sets.

        The statement leaves out the feeds in the database that are not in ``feed_ids``;
        a row it takes that is not in ``feed_ids`` (another daemon's config added it) is
        handed back untouched and left out from then on (see docs/architecture.md, 'Claim
        statements').
        """
        if limit <= 0 or not feed_ids:
            return []
        wanted = feed_ids if isinstance(feed_ids, frozenset) else frozenset(feed_ids)
        claimed: list[FeedRow] = []
        while len(claimed) < limit:
            rows, strays = self._claim(
                owner, now_ms, limit - len(claimed), lease_ms, wanted, due_ms
            )
            claimed.extend(rows)
            if not strays:
                break
            with self._db.begin("handing back feeds") as conn:
                conn.execute(
                    update(feeds)
                    .where(and_(feeds.c.id.in_(strays), feeds.c.lease_owner == owner))
                    .values(lease_owner=None, lease_until_ms=None)
                )
            scope = self._claim_scope
            known = scope[1] if scope is not None and scope[0] == wanted else frozenset()
            self._claim_scope = (wanted, known | frozenset(strays))
        return sorted(claimed, key=lambda r: r.next_poll_ms)

    def _claim(
        self,
        owner: str,
        now_ms: int,
        limit: int,
        lease_ms: int,
        wanted: frozenset[str],
        due_ms: int | None,
    ) -> tuple[list[FeedRow], list[str]]:
        """One claiming statement: the rows leased that are wanted, and the ids that are not."""
        params = {
            "c_now": now_ms,
            "c_due": now_ms if due_ms is None else due_ms,
            "c_limit": limit,
            "c_owner": owner,
            "c_until": now_ms + lease_ms,
        }
        with self._db.begin("claiming due feeds") as conn:
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
        ours = [feed_row(r) for r in rows if r["id"] in wanted]
        return ours, [r["id"] for r in rows if r["id"] not in wanted]

    def _claim_statements(self, foreign: frozenset[str]) -> tuple[Any, Any]:
        """The claim's statements, built once per set of excluded feeds: a claim runs
        after every few polls, and a statement object reused skips SQLAlchemy's
        per-statement cache-key work."""
        cached = self._claim_cache
        if cached is not None and cached[0] is foreign:
            return cached[1]
        free = or_(feeds.c.lease_until_ms.is_(None), feeds.c.lease_until_ms < bindparam("c_now"))
        cond = [feeds.c.next_poll_ms <= bindparam("c_due"), free]
        if foreign:
            cond.append(~self._among(feeds.c.id, foreign))
        q = (
            select(feeds.c.id)
            .where(and_(*cond))
            .order_by(feeds.c.next_poll_ms)
            .limit(bindparam("c_limit"))
        )
        lease_values: dict[str, Any] = {
            "lease_owner": bindparam("c_owner"),
            "lease_until_ms": bindparam("c_until"),
        }
        statements: tuple[Any, Any]
        if not self._db.is_sqlite:
            # MATERIALIZED runs the pick once (a LIMIT ... SKIP LOCKED subquery the
            # planner re-ran could lease more rows).
            picked = q.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
            statements = (
                update(feeds)
                .where(feeds.c.id == picked.c.id)
                .values(lease_values)
                .returning(*feeds.c),
                None,
            )
        else:
            statements = (
                q,
                update(feeds)
                .where(and_(feeds.c.id.in_(bindparam("c_ids", expanding=True)), free))
                .values(lease_values)
                .returning(*feeds.c),
            )
        self._claim_cache = (foreign, statements)
        return statements

    def _foreign_feeds(self, conn: Connection, wanted: frozenset[str]) -> frozenset[str]:
        """The feeds in the database that ``wanted`` leaves out, read once per feed set."""
        scope = self._claim_scope
        if scope is not None and (scope[0] is wanted or scope[0] == wanted):
            return scope[1]
        foreign = frozenset(r.id for r in conn.execute(select(feeds.c.id))) - wanted
        self._claim_scope = (wanted, foreign)
        return foreign

    def _among(self, column: Any, values: Collection[str]) -> Any:
        """``column IN values``; on PostgreSQL one parameter unnested in a subquery (see
        docs/architecture.md, 'Claim statements')."""
        if self._db.is_sqlite:
            return column.in_(list(values))
        param: Any
        if any("," in v for v in values):
            param = bindparam(None, list(values), type_=ARRAY(String))
        else:
            param = func.string_to_array(bindparam(None, ",".join(values), type_=String), ",")
        return column.in_(select(func.unnest(param)).scalar_subquery())

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
        values: dict[str, Any] = dict(
            b_id=feed_id,
            b_owner=owner,
            next_poll_ms=next_poll_ms,
            last_poll_ms=now_ms,
            last_outcome=str(outcome),
            last_error=error,
            last_status=status,
            failures=failures,
            lease_owner=None,
            lease_until_ms=None,
        )
        if not keep_validators:
            values.update(etag=etag, last_modified=last_modified)
        if first_poll_done is not None:
            values["first_poll_done"] = first_poll_done
        with self._db.begin(f"recording the poll of feed '{feed_id}'") as conn:
            conn.execute(self._finish_statement(tuple(values)), values)

    def _finish_statement(self, names: tuple[str, ...]) -> Update:
        """finish_poll's UPDATE for one set of columns, built once: every poll runs it, and a
        statement object reused skips SQLAlchemy's per-statement cache-key work."""
        stmt = self._finish_statements.get(names)
        if stmt is None:
            stmt = (
                update(feeds)
                .where(
                    and_(
                        feeds.c.id == bindparam("b_id"), feeds.c.lease_owner == bindparam("b_owner")
                    )
                )
                .values({n: bindparam(n) for n in names if not n.startswith("b_")})
            )
            self._finish_statements[names] = stmt
        return stmt

    def release_leases(self, owner: str) -> None:
        with self._db.begin("releasing feed leases") as conn:
            conn.execute(
                update(feeds)
                .where(feeds.c.lease_owner == owner)
                .values(lease_owner=None, lease_until_ms=None)
            )
