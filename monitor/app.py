"""The one place where the parts are built and wired: config, store, fetcher, parser,
rules, deliverer and scheduler. ``Monitor`` polls, ingests and delivers; the CLI
only calls it.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from monitor.config import FeedConfig, LoadedConfig, load_config
from monitor.deliver import Deliverer, DeliveryStats, build_channels
from monitor.errors import ConfigError, FeedError, MonitorError, StoreError
from monitor.fetch import Fetcher, FetchLimits
from monitor.match import RuleSet, compile_rules
from monitor.metrics import Metrics
from monitor.parse import parse_feed
from monitor.scheduler import JobRunner
from monitor.secrets import Masker
from monitor.store import FeedRow, FeedSpec, IngestStats, Store
from monitor.web import WebServer

log = logging.getLogger("monitor")

NO_BACKLOG_ALERTS = 2**62  # a published-time floor no item reaches
MAX_BACKOFF_S = 6 * 3600


def now_ms() -> int:
    return int(time.time() * 1000)


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class PollResult:
    feed: str
    outcome: str
    stats: IngestStats = field(default_factory=IngestStats)
    error: str | None = None
    status: int | None = None
    fetch_seconds: float | None = None


@dataclass
class Runtime:
    """What a config builds: swapped as one piece on reload."""

    loaded: LoadedConfig
    rules: RuleSet
    deliverer: Deliverer
    feeds: dict[str, FeedConfig]
    notify: dict[str, tuple[str, ...]]


class Monitor:
    """The daemon's parts, wired. ``run`` serves until stopped; ``once`` polls every feed."""

    def __init__(self, config_path: str, loaded: LoadedConfig | None = None) -> None:
        self.config_path = config_path
        self.owner = make_owner()
        self.masker = Masker()
        self.metrics = Metrics()
        loaded = loaded or load_config(config_path)
        self.store = Store(loaded.config.database)
        d = loaded.config.defaults
        self.fetcher = Fetcher(
            FetchLimits(connect_timeout=d.connect_timeout, read_timeout=d.read_timeout,
                        deadline=d.timeout, max_bytes=d.max_bytes),
            user_agent=d.user_agent, pool_size=max(loaded.config.scheduler.workers, 4))
        self.runtime = self._build(loaded)
        self.jobs = JobRunner()
        self.pool = ThreadPoolExecutor(loaded.config.scheduler.workers,
                                       thread_name_prefix="poll")
        self._in_flight: dict[str, Future[PollResult]] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._config_mtime = self._mtime()
        self.last_reload_error: str | None = None

    # -- building ------------------------------------------------------------------------

    def _build(self, loaded: LoadedConfig) -> Runtime:
        """Everything a config determines; raises ConfigError without touching the old."""
        self.masker.add(loaded.secrets)
        rules = compile_rules(loaded.rule_specs())
        channels = build_channels(loaded.config.channels, self.masker)
        cfg = loaded.config
        feeds = {f.id: f for f in cfg.feeds if f.enabled}
        deliverer = Deliverer(self.store, self.owner, cfg.delivery, channels, self.masker,
                              feed_titles=lambda: {f.id: f.title or f.id for f in cfg.feeds},
                              on_result=self._delivery_result)
        self.store.sync_feeds(
            [FeedSpec(f.id, f.url, f.title, loaded.feed_interval(f)) for f in feeds.values()],
            now_ms(), first_spread_s=min(cfg.defaults.jitter, 10.0))
        notify = {r.name: tuple(r.notify) for r in cfg.rules}
        return Runtime(loaded, rules, deliverer, feeds, notify)

    def _delivery_result(self, channel: str, outcome: str, latency_s: float) -> None:
        self.metrics.deliveries.labels(channel, outcome).inc()
        if outcome == "sent":
            self.metrics.delivery_latency.labels(channel).observe(latency_s)

    def reload(self) -> bool:
        """Re-read the config; on error keep the running one and remember why."""
        try:
            loaded = load_config(self.config_path)
            if loaded.config.database != self.runtime.loaded.config.database:
                raise ConfigError("changing the database needs a restart", loaded.path,
                                  loaded.line_of("database"), "database")
            runtime = self._build(loaded)
        except MonitorError as e:
            self.last_reload_error = self.masker(str(e))
            self.metrics.reloads.labels("failed").inc()
            log.error("config reload failed, keeping the running config: %s",
                      self.last_reload_error)
            return False
        runtime.deliverer.stopping = self.runtime.deliverer.stopping
        old = self.runtime.loaded.config
        self.runtime = runtime
        cfg = loaded.config
        if self.jobs.running:
            if cfg.scheduler.tick != old.scheduler.tick:
                self.jobs.reschedule("tick", cfg.scheduler.tick)
            if cfg.delivery.interval != old.delivery.interval:
                self.jobs.reschedule("deliver", cfg.delivery.interval)
        for key in ("scheduler.workers", "http"):
            section, _, name = key.partition(".")
            before, after = getattr(old, section), getattr(cfg, section)
            if name:
                before, after = getattr(before, name), getattr(after, name)
            if before != after:
                log.warning("config reload: '%s' changes only at the next restart", key)
        self.last_reload_error = None
        self.metrics.reloads.labels("ok").inc()
        log.info("config reloaded: %d feeds, %d rules, %d channels", len(runtime.feeds),
                 len(cfg.rules), len(cfg.channels))
        return True

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.config_path).st_mtime
        except OSError:
            return None

    def _check_config_changed(self) -> None:
        mtime = self._mtime()
        if mtime is not None and mtime != self._config_mtime:
            self._config_mtime = mtime
            if self.reload():
                self.jobs.wake("tick")

    # -- polling -------------------------------------------------------------------------

    def poll(self, row: FeedRow) -> PollResult:
        """One poll of one feed along the whole path; never raises for feed trouble."""
        result = self._poll(row)
        m = self.metrics
        m.polls.labels(row.id, result.outcome).inc()
        if result.status is not None:
            m.http_status.labels(str(result.status)).inc()
        if result.fetch_seconds is not None:
            m.fetch_seconds.labels(row.id).observe(result.fetch_seconds)
        if result.stats.new:
            m.items.labels(row.id, "new").inc(result.stats.new)
        if result.stats.updated:
            m.items.labels(row.id, "updated").inc(result.stats.updated)
        for rule, n in result.stats.rules.items():
            m.matches.labels(rule).inc(n)
        return result

    def _poll(self, row: FeedRow) -> PollResult:
        rt = self.runtime
        feed = rt.feeds.get(row.id)
        start_ms = now_ms()
        if feed is None:  # removed from the config while claimed
            self.store.finish_poll(row.id, self.owner, now_ms=start_ms,
                                   next_poll_ms=row.next_poll_ms, outcome="removed",
                                   error=None, status=None, failures=row.failures)
            return PollResult(row.id, "removed")
        interval = rt.loaded.feed_interval(feed)
        jitter = rt.loaded.config.defaults.jitter
        try:
            fetched = self.fetcher.fetch(feed.id, feed.url, row.etag, row.last_modified)
            if fetched.status == 304:
                self.store.finish_poll(
                    feed.id, self.owner, now_ms=now_ms(), outcome="not-modified",
                    next_poll_ms=_next_poll(now_ms(), interval, jitter), error=None,
                    status=304, failures=0, first_poll_done=True)
                log.debug("feed '%s': not modified", feed.id)
                return PollResult(feed.id, "not-modified", status=304,
                                  fetch_seconds=fetched.elapsed)
            assert fetched.body is not None
            parsed = parse_feed(fetched.body, fetched.headers, feed.id, now_ms(),
                                base_url=fetched.url or feed.url)
            if parsed.outcome in ("not-a-feed", "empty"):
                detail = "; ".join(parsed.warnings[:3]) or parsed.outcome
                raise FeedError(feed.id, feed.url, parsed.outcome, detail,
                                status=fetched.status)
            floor = None
            if not row.first_poll_done:
                window = rt.loaded.feed_backlog_window(feed)
                if window is not None:
                    floor = NO_BACKLOG_ALERTS if window == 0 else now_ms() - int(window * 1000)
            stats = self.store.ingest(feed.id, parsed.items, now_ms(), self._match,
                                      self._channels_for, alert_min_published_ms=floor)
            self.store.finish_poll(
                feed.id, self.owner, now_ms=now_ms(), outcome=parsed.outcome,
                next_poll_ms=_next_poll(now_ms(), interval, jitter),
                error="; ".join(parsed.warnings[:3]) or None, status=fetched.status,
                failures=0, etag=fetched.etag, last_modified=fetched.last_modified,
                keep_validators=False, first_poll_done=True)
            log.info("feed '%s': %s, %d entries: %d new, %d updated, %d alerts%s", feed.id,
                     parsed.outcome, len(parsed.items), stats.new, stats.updated, stats.alerts,
                     "" if row.first_poll_done else " (first poll)")
            if stats.alerts:
                self.jobs.wake("deliver")
            return PollResult(feed.id, parsed.outcome, stats, status=fetched.status,
                              fetch_seconds=fetched.elapsed)
        except FeedError as e:
            failures = row.failures + 1
            delay = min(interval * 2 ** min(failures - 1, 10), max(interval, MAX_BACKOFF_S))
            if e.retry_after:
                delay = max(delay, min(e.retry_after, 24 * 3600))
            msg = self.masker(e.message)
            self.store.finish_poll(
                feed.id, self.owner, now_ms=now_ms(), outcome=e.outcome, error=msg,
                next_poll_ms=_next_poll(now_ms(), delay, jitter),
                status=None, failures=failures)
            log.warning("feed '%s' (%s): %s: %s; failure %d, next poll in %.0f s", feed.id,
                        self.masker(feed.url), e.outcome, msg, failures, delay)
            return PollResult(feed.id, e.outcome, error=msg, status=e.status)
        except StoreError as e:
            log.error("feed '%s': %s", feed.id, self.masker(str(e)))
            self.store.release_feed_leases(self.owner)
            return PollResult(feed.id, "store-error", error=str(e))

    def _match(self, item: Any, feeds: Any) -> Any:
        return self.runtime.rules.match(item, feeds)

    def _channels_for(self, rule: str) -> tuple[str, ...]:
        return self.runtime.notify.get(rule, ())

    def tick(self) -> None:
        """Claim the feeds that are due, as many as there are free workers."""
        if self.stopping.is_set():
            return
        with self._lock:
            for fid, fut in list(self._in_flight.items()):
                if fut.done():
                    del self._in_flight[fid]
            free = self.runtime.loaded.config.scheduler.workers - len(self._in_flight)
        lease_ms = int((self.runtime.loaded.config.defaults.timeout + 60) * 1000)
        rows = self.store.claim_due_feeds(self.owner, now_ms(), free, lease_ms,
                                          list(self.runtime.feeds))
        with self._lock:
            for row in rows:
                self._in_flight[row.id] = self.pool.submit(self._poll_safely, row)

    def _poll_safely(self, row: FeedRow) -> PollResult:
        try:
            return self.poll(row)
        except Exception:
            log.exception("feed '%s': unexpected error during poll", row.id)
            return PollResult(row.id, "error")
        finally:
            # A finished poll may free a worker for a feed that is already due.
            if not self.stopping.is_set():
                self.jobs.wake("tick")

    def deliver(self) -> DeliveryStats:
        return self.runtime.deliverer.deliver_due()

    # -- running -------------------------------------------------------------------------

    def run(self, grace: float = 20.0) -> int:
        """Serve until SIGTERM or SIGINT; then stop claiming, finish, release, exit 0."""
        cfg = self.runtime.loaded.config
        self._install_signals()
        self.jobs.add("tick", self.tick, every=cfg.scheduler.tick)
        self.jobs.add("deliver", self.deliver, every=cfg.delivery.interval, first_in=0.5)
        # Checking the file's mtime each second is cheap and works on every
        # filesystem, bind mounts and editors that replace the file included.
        self.jobs.add("watch-config", self._check_config_changed, every=1.0, first_in=1.0)
        self.jobs.start()
        self.metrics.watch_outbox(self.store.alert_summary)
        web = None
        if cfg.http.enabled:
            try:
                web = WebServer(*cfg.http.host_port(), self.metrics, self.health)
            except OSError as e:
                raise MonitorError(f"cannot listen on {cfg.http.listen} (http.listen): "
                                   f"{e.strerror or e}") from e
            web.start()
        log.info("feed-monitor running: %d feeds, %d rules, %d channels, database %s",
                 len(self.runtime.feeds), len(cfg.rules), len(cfg.channels),
                 self.store.safe_url)
        while not self.stopping.wait(1.0):
            pass
        code = self._shutdown(grace)
        if web is not None:
            web.stop()
        return code

    def health(self) -> list[str]:
        """Reasons the daemon is unhealthy; empty when all is well."""
        problems = []
        if not self.jobs.running or self.stopping.is_set():
            problems.append("scheduler not running")
        try:
            self.store.ping()
        except StoreError as e:
            problems.append(self.masker(str(e)))
        if self.last_reload_error:
            problems.append(f"config reload failed: {self.last_reload_error}")
        return problems

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
                target=self.reload, daemon=True).start())

    def _shutdown(self, grace: float) -> int:
        deadline = time.monotonic() + grace
        self.jobs.pause("tick")
        self.runtime.deliverer.stopping.set()
        with self._lock:
            futures = list(self._in_flight.values())
        for fut in futures:
            try:
                fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # a poll still running past the grace period keeps going
                pass
        self.jobs.wait_idle("deliver", deadline - time.monotonic())
        self.jobs.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.release_feed_leases(self.owner)
        self.store.release_alert_leases(self.owner)
        self.fetcher.close()
        self.store.close()
        log.info("stopped")
        return 0

    def once(self) -> dict[str, Any]:
        """Poll every configured feed now, deliver what is due, and report."""
        ids = list(self.runtime.feeds)
        rows = self.store.claim_due_feeds(self.owner, 2**62, len(ids),
                                          int((self.runtime.loaded.config.defaults.timeout
                                               + 60) * 1000), ids)
        results = list(self.pool.map(self._poll_safely, rows))
        self.pool.shutdown(wait=True)
        delivered = DeliveryStats()
        while True:
            d = self.deliver()
            delivered.sent += d.sent
            delivered.failed += d.failed
            delivered.dead += d.dead
            if d.sent + d.failed + d.dead == 0:
                break
        self.fetcher.close()
        self.store.close()
        total = IngestStats()
        for r in results:
            total.add(r.stats)
        return {"results": results, "ingest": total, "delivery": delivered}

    def feed_titles(self) -> Mapping[str, str]:
        return {f.id: f.title or f.id for f in self.runtime.loaded.config.feeds}


def _next_poll(now: int, delay_s: float, jitter_s: float) -> int:
    return now + int((delay_s + random.uniform(0, jitter_s)) * 1000)
