"""One poll of one feed along the whole path: fetch, parse, ingest (match and enqueue),
record the outcome and the next poll time, count it in the metrics.
"""

from __future__ import annotations

import logging

from monitor.app import Parts, Runtime
from monitor.archive.files import write_rule_archives
from monitor.errors import FeedError, StoreError
from monitor.metrics import Metrics
from monitor.schedule import politeness
from monitor.types import FeedRow, PollOutcome, PollResult

log = logging.getLogger("monitor")

NO_BACKLOG_ALERTS = 2**62  # a published-time floor no item reaches


def poll_feed(parts: Parts, runtime: Runtime, row: FeedRow, now_ms: int) -> PollResult:
    """One poll of the claimed feed ``row``, started at ``now_ms``; never raises for
    feed trouble. Later times come from ``parts.clock``, chance from its ``random``."""
    result = _poll(parts, runtime, row, now_ms)
    record(parts.metrics, row.id, result)
    return result


def record(m: Metrics, feed_id: str, result: PollResult) -> None:
    """Count one poll in the metrics."""
    m.polls.inc((feed_id, result.outcome))
    if result.status is not None:
        m.http_status.labels(str(result.status)).inc()
    if result.fetch_seconds is not None:
        m.fetch_seconds.labels(result.outcome).observe(result.fetch_seconds)
    if result.stats.new:
        m.items.inc((feed_id, "new"), result.stats.new)
    if result.stats.updated:
        m.items.inc((feed_id, "updated"), result.stats.updated)
    for rule, n in result.stats.rules.items():
        m.matches.inc((rule,), n)


def _poll(parts: Parts, rt: Runtime, row: FeedRow, start_ms: int) -> PollResult:
    store, clock, owner, masker = parts.store, parts.clock, parts.owner, parts.masker
    feed = rt.feeds.get(row.id)
    if feed is None:  # removed from the config while claimed
        store.feeds.finish_poll(
            row.id,
            owner,
            now_ms=start_ms,
            next_poll_ms=row.next_poll_ms,
            outcome=PollOutcome.REMOVED,
            error=None,
            status=None,
            failures=row.failures,
        )
        return PollResult(row.id, PollOutcome.REMOVED)
    interval = rt.loaded.feed_interval(feed)
    d = rt.loaded.config.defaults
    started = clock.monotonic()
    try:
        fetched = parts.fetcher.fetch(feed.id, feed.url, row.etag, row.last_modified)
        if fetched.status == 304:
            nxt = politeness.after_success(
                interval,
                d.jitter,
                fetched.headers,
                parts.feed_ttl.get(feed.id),
                clock.now_ms() / 1000,
                clock.random(),
            )
            now = clock.now_ms()
            store.feeds.finish_poll(
                feed.id,
                owner,
                now_ms=now,
                outcome=PollOutcome.NOT_MODIFIED,
                next_poll_ms=now + int(nxt.delay_s * 1000),
                error=None,
                status=304,
                failures=0,
                first_poll_done=True,
            )
            _log_recovery(rt, feed.id, row.failures)
            log.debug(
                "feed '%s': not modified; next poll in %.0f s (%s)",
                feed.id,
                nxt.delay_s,
                nxt.reason,
            )
            return PollResult(
                feed.id, PollOutcome.NOT_MODIFIED, status=304, fetch_seconds=fetched.elapsed
            )
        assert fetched.body is not None
        parsed = parts.parser(
            fetched.body, fetched.headers, feed.id, clock.now_ms(), base_url=fetched.url or feed.url
        )
        if parsed.outcome in (PollOutcome.NOT_A_FEED, PollOutcome.EMPTY):
            detail = "; ".join(parsed.warnings[:3]) or parsed.outcome
            raise FeedError(feed.id, feed.url, parsed.outcome, detail, status=fetched.status)
        parts.feed_ttl[feed.id] = parsed.ttl_seconds
        floor = None
        if not row.first_poll_done:
            window = rt.loaded.feed_backlog_window(feed)
            if window is not None:
                floor = NO_BACKLOG_ALERTS if window == 0 else clock.now_ms() - int(window * 1000)
        keys_kept = rt.loaded.config.retention.keys
        if keys_kept is not None:
            # Retention may have deleted the key of an item this old that a feed still
            # lists: it is recorded, never alerted again.
            floor = max(floor or 0, clock.now_ms() - int(keys_kept * 1000))
        stats = store.items.ingest(
            feed.id, parsed.items, clock.now_ms(), rt, alert_min_published_ms=floor
        )
        nxt = politeness.after_success(
            interval,
            d.jitter,
            fetched.headers,
            parsed.ttl_seconds,
            clock.now_ms() / 1000,
            clock.random(),
        )
        now = clock.now_ms()
        store.feeds.finish_poll(
            feed.id,
            owner,
            now_ms=now,
            outcome=parsed.outcome,
            next_poll_ms=now + int(nxt.delay_s * 1000),
            error="; ".join(parsed.warnings[:3]) or None,
            status=fetched.status,
            failures=0,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            keep_validators=False,
            first_poll_done=True,
        )
        _log_recovery(rt, feed.id, row.failures)
        log.info(
            "feed '%s': %s, %d entries: %d new, %d updated, %d alerts%s",
            feed.id,
            parsed.outcome,
            len(parsed.items),
            stats.new,
            stats.updated,
            stats.alerts,
            "" if row.first_poll_done else " (first poll)",
        )
        if parsed.warnings:
            log.info("feed '%s': warnings: %s", feed.id, masker("; ".join(parsed.warnings[:5])))
        if nxt.delay_s > interval + d.jitter:
            log.info("feed '%s': next poll in %.0f s (%s)", feed.id, nxt.delay_s, nxt.reason)
        if stats.alerted and rt.archives:
            # After the commit: a folder that cannot be written is logged (rule and path)
            # and never holds back or loses an alert.
            write_rule_archives(stats.alerted, rt.archives)
        return PollResult(
            feed.id,
            PollOutcome(parsed.outcome),
            stats,
            status=fetched.status,
            fetch_seconds=fetched.elapsed,
        )
    except FeedError as e:
        return _failed(
            parts,
            rt,
            row,
            e.outcome,
            masker(e.message),
            e.status,
            e.retry_after,
            clock.monotonic() - started,
        )
    except StoreError as e:
        msg = masker(str(e))
        log.error("feed '%s': %s", feed.id, msg)
        store.feeds.release_leases(owner)
        return PollResult(feed.id, PollOutcome.STORE_ERROR, error=msg)
    except Exception as e:  # a defect met on this feed: recorded and backed off like a failure
        detail = (str(e).splitlines() or [""])[0][:200]
        msg = masker(f"unexpected error: {type(e).__name__}: {detail}".rstrip(": "))
        log.error("feed '%s': %s", feed.id, msg, exc_info=True)
        return _failed(
            parts, rt, row, PollOutcome.ERROR, msg, None, None, clock.monotonic() - started
        )


def _failed(
    parts: Parts,
    rt: Runtime,
    row: FeedRow,
    outcome: PollOutcome,
    msg: str,
    status: int | None,
    retry_after: float | None,
    elapsed: float,
) -> PollResult:
    """Record a failed poll on the feed (``msg`` already masked): outcome and error for
    ``status``, one failure more, the next poll after the back-off."""
    clock, masker = parts.clock, parts.masker
    feed = rt.feeds[row.id]
    interval = rt.loaded.feed_interval(feed)
    d = rt.loaded.config.defaults
    failures = row.failures + 1
    nxt = politeness.after_failure(interval, failures, d.max_backoff, retry_after, clock.random())
    now = clock.now_ms()
    parts.store.feeds.finish_poll(
        feed.id,
        parts.owner,
        now_ms=now,
        outcome=outcome,
        error=msg,
        next_poll_ms=now + int(nxt.delay_s * 1000),
        status=status,
        failures=failures,
    )
    log.warning(
        "feed '%s' (%s): %s: %s (after %.1f s); failure %d, next poll in %.0f s (%s)",
        feed.id,
        masker(feed.url),
        outcome,
        msg,
        elapsed,
        failures,
        nxt.delay_s,
        nxt.reason,
    )
    if failures == d.unhealthy_after:
        log.warning(
            "feed '%s' is unhealthy: %s; still retried, at most every %.0f s",
            feed.id,
            politeness.unhealthy_reason(failures, d.unhealthy_after, outcome, msg),
            max(interval, d.max_backoff),
        )
    return PollResult(feed.id, outcome, error=msg, status=status)


def _log_recovery(rt: Runtime, feed_id: str, failures: int) -> None:
    if politeness.unhealthy(failures, rt.loaded.config.defaults.unhealthy_after):
        log.info("feed '%s' is healthy again after %d failures", feed_id, failures)
