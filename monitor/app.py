"""The one place where the parts are built and wired: config, store, fetcher, parser,
rules, deliverer and scheduler. ``Monitor`` polls, ingests and delivers; the CLI
only calls it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from monitor import politeness
from monitor.config import Defaults, FeedConfig, LoadedConfig, RuleConfig, load_config
from monitor.deliver import Deliverer, DeliveryStats, build_channels
from monitor.errors import ConfigError, FeedError, MonitorError, StoreError
from monitor.fetch import Fetcher, FetchLimits
from monitor.history import prune as prune_history
from monitor.history import write_rule_archives
from monitor.match import RuleSet, compile_rules
from monitor.metrics import Metrics
from monitor.parse import parse_feed
from monitor.scheduler import JobRunner
from monitor.secrets import Masker
from monitor.store import Store
from monitor.types import (
    DEFAULT_RULE_OPTIONS,
    FeedRow,
    FeedSpec,
    IngestStats,
    MatchingFunctions,
    RuleOptions,
)
from monitor.web import WebServer

log = logging.getLogger("monitor")

NO_BACKLOG_ALERTS = 2**62  # a published-time floor no item reaches


def now_ms() -> int:
    return int(time.time() * 1000)


def fetch_limits(d: Defaults) -> FetchLimits:
    return FetchLimits(connect_timeout=d.connect_timeout, read_timeout=d.read_timeout,
                       deadline=d.timeout, max_bytes=d.max_bytes, max_redirects=d.max_redirects,
                       per_host=d.per_host_concurrency, allow_private=d.allow_private_addresses,
                       allowed_networks=tuple(d.allowed_networks))


def rule_options(rule: RuleConfig) -> RuleOptions:
    """What the store needs of a rule's on_update and cross_edition settings."""
    editions = rule.editions()
    if editions is None:
        return RuleOptions(on_update=rule.on_update)
    return RuleOptions(on_update=rule.on_update,
                       edition_window_ms=int(editions.window * 1000),
                       hold_ms=int(editions.hold * 1000))


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
    options: dict[str, RuleOptions] = field(default_factory=dict)
    archives: dict[str, str] = field(default_factory=dict)  # rule -> rules[].archive
    feed_ids: frozenset[str] = frozenset()  # the keys of feeds, as claims take them


class Monitor:
    """The daemon's parts, wired. ``run`` serves until stopped; ``once`` polls every feed."""

    def __init__(self, config_path: str, loaded: LoadedConfig | None = None,
                 masker: Masker | None = None) -> None:
        self.config_path = config_path
        self.owner = make_owner()
        # The CLI passes the masker its log handler uses: whatever a config makes
        # secret is then masked in every log line, not only in the ones that ask.
        self.masker = masker if masker is not None else Masker()
        self.metrics = Metrics()
        # Taken before reading, so an edit made while starting is reloaded, not missed.
        self._config_seen = self._config_signature()
        loaded = loaded or load_config(config_path)
        # database_upgrade: never leaves migrations to 'feed-monitor db upgrade' (run once,
        # by the operator) and refuses an older schema with a StoreError saying so.
        self.store = Store(loaded.config.database,
                           upgrade=loaded.config.database_upgrade == "auto")
        d = loaded.config.defaults
        self.fetcher = Fetcher(fetch_limits(d), user_agent=d.user_agent,
                               pool_size=max(loaded.config.scheduler.workers, 4))
        # Each feed's RSS <ttl> as last seen: a 304 has no body to state it again.
        self._feed_ttl: dict[str, int | None] = {}
        self.runtime = self._build(loaded)
        self.jobs = JobRunner()
        self.pool = ThreadPoolExecutor(loaded.config.scheduler.workers,
                                       thread_name_prefix="poll")
        self._in_flight: dict[str, Future[PollResult]] = {}
        # Polls finished since the last claim, whether that claim filled every worker,
        # and how many finished polls call the next one.
        self._finished = 0
        self._backlog = True
        self._claim_batch = max(1, loaded.config.scheduler.workers // 8)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._reload_lock = threading.Lock()
        self.last_reload_error: str | None = None
        self.abandoned = 0  # polls and sends still running when the grace period ended

    # -- building ------------------------------------------------------------------------

    def _build(self, loaded: LoadedConfig, reloading: bool = False) -> Runtime:
        """Everything a config determines; raises ConfigError without touching the old."""
        self.masker.add(loaded.secrets)
        for f in loaded.config.feeds:
            self.masker.add_userinfo(f.url)
        rules = compile_rules(loaded.rule_specs())
        channels = build_channels(loaded.config.channels, self.masker, loaded.path)
        cfg = loaded.config
        feeds = {f.id: f for f in cfg.feeds if f.enabled}
        options = {r.name: rule_options(r) for r in cfg.rules}
        titles = cfg.feed_titles()
        deliverer = Deliverer(self.store, self.owner, cfg.delivery, channels, self.masker,
                              feed_titles=lambda: titles,
                              on_result=self._delivery_result,
                              rule_digests={r.name: r.digest for r in cfg.rules if r.digest},
                              rule_editions={name: o.edition_window_ms
                                             for name, o in options.items()
                                             if o.edition_window_ms is not None})
        # The database keeps feed URLs as shown, secrets masked: polls take the real URL
        # from the config. Feeds added by a reload are polled at once (no spread), so
        # an edit shows its effect within seconds.
        self.store.feeds.sync(
            [FeedSpec(f.id, self.masker(f.url), f.title, loaded.feed_interval(f))
             for f in feeds.values()],
            now_ms(), first_spread_s=0.0 if reloading else min(cfg.defaults.jitter, 10.0))
        notify = {r.name: tuple(r.notify) for r in cfg.rules}
        archives = {r.name: r.archive for r in cfg.rules if r.archive}
        return Runtime(loaded, rules, deliverer, feeds, notify, options, archives,
                       frozenset(feeds))

    def _delivery_result(self, channel: str, outcome: str, latency_s: float) -> None:
        self.metrics.deliveries.labels(channel, outcome).inc()
        if outcome == "sent":
            self.metrics.delivery_latency.labels(channel).observe(latency_s)

    def reload(self) -> bool:
        """Re-read the config; on error keep the running one and remember why."""
        # SIGHUP and the file watcher may ask at the same moment: one reload at a time.
        with self._reload_lock:
            if self.stopping.is_set():
                return False
            return self._reload()

    def _reload(self) -> bool:
        try:
            loaded = load_config(self.config_path)
            if loaded.config.database != self.runtime.loaded.config.database:
                raise ConfigError("changing the database needs a restart", loaded.path,
                                  loaded.line_of("database"), "database")
            runtime = self._build(loaded, reloading=True)
        except MonitorError as e:
            # Several errors on one line each, joined: one log line, one /healthz reason.
            self.last_reload_error = "; ".join(self.masker(str(e)).splitlines())
            self.metrics.reloads.labels("failed").inc()
            log.error("config reload failed, keeping the running config: %s",
                      self.last_reload_error)
            return False
        runtime.deliverer.stopping = self.runtime.deliverer.stopping
        runtime.deliverer.adopt_limits(self.runtime.deliverer)
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
        if self.jobs.running:
            # New feeds are due now; alerts queued for a channel that came back can go.
            self.jobs.wake("tick")
            self.jobs.wake("deliver")
        return True

    def _config_signature(self) -> tuple[int, int, int, str] | None:
        """What tells one version of the config file from another.

        The content's hash as well as the mtime: two saves within one tick of a coarse
        filesystem clock keep the mtime, and an edit must never go unnoticed.
        """
        try:
            st = os.stat(self.config_path)
            with open(self.config_path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:  # being replaced, or gone: the running config stays
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino, digest

    def _check_config_changed(self) -> None:
        seen = self._config_signature()
        if seen is not None and seen != self._config_seen:
            self._config_seen = seen
            self.reload()

    # -- polling -------------------------------------------------------------------------

    def poll(self, row: FeedRow) -> PollResult:
        """One poll of one feed along the whole path; never raises for feed trouble."""
        result = self._poll(row)
        m = self.metrics
        m.polls.inc((row.id, result.outcome))
        if result.status is not None:
            m.http_status.labels(str(result.status)).inc()
        if result.fetch_seconds is not None:
            m.fetch_seconds.labels(result.outcome).observe(result.fetch_seconds)
        if result.stats.new:
            m.items.inc((row.id, "new"), result.stats.new)
        if result.stats.updated:
            m.items.inc((row.id, "updated"), result.stats.updated)
        for rule, n in result.stats.rules.items():
            m.matches.inc((rule,), n)
        return result

    def _poll(self, row: FeedRow) -> PollResult:
        rt = self.runtime
        feed = rt.feeds.get(row.id)
        start_ms = now_ms()
        if feed is None:  # removed from the config while claimed
            self.store.feeds.finish_poll(row.id, self.owner, now_ms=start_ms,
                                   next_poll_ms=row.next_poll_ms, outcome="removed",
                                   error=None, status=None, failures=row.failures)
            return PollResult(row.id, "removed")
        interval = rt.loaded.feed_interval(feed)
        d = rt.loaded.config.defaults
        started = time.monotonic()
        self.fetcher.set_limits(fetch_limits(d))  # a reload may have changed them
        try:
            fetched = self.fetcher.fetch(feed.id, feed.url, row.etag, row.last_modified)
            if fetched.status == 304:
                nxt = politeness.after_success(interval, d.jitter, fetched.headers,
                                               self._feed_ttl.get(feed.id), time.time(),
                                               random.random())
                self.store.feeds.finish_poll(
                    feed.id, self.owner, now_ms=now_ms(), outcome="not-modified",
                    next_poll_ms=now_ms() + int(nxt.delay_s * 1000), error=None,
                    status=304, failures=0, first_poll_done=True)
                self._log_recovery(feed.id, row.failures)
                log.debug("feed '%s': not modified; next poll in %.0f s (%s)", feed.id,
                          nxt.delay_s, nxt.reason)
                return PollResult(feed.id, "not-modified", status=304,
                                  fetch_seconds=fetched.elapsed)
            assert fetched.body is not None
            parsed = parse_feed(fetched.body, fetched.headers, feed.id, now_ms(),
                                base_url=fetched.url or feed.url)
            if parsed.outcome in ("not-a-feed", "empty"):
                detail = "; ".join(parsed.warnings[:3]) or parsed.outcome
                raise FeedError(feed.id, feed.url, parsed.outcome, detail,
                                status=fetched.status)
            self._feed_ttl[feed.id] = parsed.ttl_seconds
            floor = None
            if not row.first_poll_done:
                window = rt.loaded.feed_backlog_window(feed)
                if window is not None:
                    floor = NO_BACKLOG_ALERTS if window == 0 else now_ms() - int(window * 1000)
            keys_kept = rt.loaded.config.retention.keys
            if keys_kept is not None:
                # Retention may have deleted the key of an item this old that a feed still
                # lists: it is recorded, never alerted again.
                floor = max(floor or 0, now_ms() - int(keys_kept * 1000))
            stats = self.store.items.ingest(
                feed.id, parsed.items, now_ms(),
                MatchingFunctions(self._match, self._channels_for, self._options),
                alert_min_published_ms=floor)
            nxt = politeness.after_success(interval, d.jitter, fetched.headers,
                                           parsed.ttl_seconds, time.time(), random.random())
            self.store.feeds.finish_poll(
                feed.id, self.owner, now_ms=now_ms(), outcome=parsed.outcome,
                next_poll_ms=now_ms() + int(nxt.delay_s * 1000),
                error="; ".join(parsed.warnings[:3]) or None, status=fetched.status,
                failures=0, etag=fetched.etag, last_modified=fetched.last_modified,
                keep_validators=False, first_poll_done=True)
            self._log_recovery(feed.id, row.failures)
            log.info("feed '%s': %s, %d entries: %d new, %d updated, %d alerts%s", feed.id,
                     parsed.outcome, len(parsed.items), stats.new, stats.updated, stats.alerts,
                     "" if row.first_poll_done else " (first poll)")
            if parsed.warnings:
                log.info("feed '%s': warnings: %s", feed.id,
                         self.masker("; ".join(parsed.warnings[:5])))
            if nxt.delay_s > interval + d.jitter:
                log.info("feed '%s': next poll in %.0f s (%s)", feed.id, nxt.delay_s,
                         nxt.reason)
            if stats.alerts:
                self.jobs.wake("deliver")
            if stats.alerted and rt.archives:
                # After the commit and the wake-up: a folder that cannot be written is
                # logged (rule and path) and never holds back or loses an alert.
                write_rule_archives(stats.alerted, rt.archives)
            return PollResult(feed.id, parsed.outcome, stats, status=fetched.status,
                              fetch_seconds=fetched.elapsed)
        except FeedError as e:
            failures = row.failures + 1
            nxt = politeness.after_failure(interval, failures, d.max_backoff, e.retry_after,
                                           random.random())
            msg = self.masker(e.message)
            self.store.feeds.finish_poll(
                feed.id, self.owner, now_ms=now_ms(), outcome=e.outcome, error=msg,
                next_poll_ms=now_ms() + int(nxt.delay_s * 1000),
                status=e.status, failures=failures)
            log.warning("feed '%s' (%s): %s: %s (after %.1f s); failure %d, next poll in "
                        "%.0f s (%s)", feed.id, self.masker(feed.url), e.outcome, msg,
                        time.monotonic() - started, failures, nxt.delay_s, nxt.reason)
            if failures == d.unhealthy_after:
                log.warning("feed '%s' is unhealthy: %s; still retried, at most every %.0f s",
                            feed.id, politeness.unhealthy_reason(
                                failures, d.unhealthy_after, e.outcome, msg),
                            max(interval, d.max_backoff))
            return PollResult(feed.id, e.outcome, error=msg, status=e.status)
        except StoreError as e:
            msg = self.masker(str(e))
            log.error("feed '%s': %s", feed.id, msg)
            self.store.feeds.release_leases(self.owner)
            return PollResult(feed.id, "store-error", error=msg)

    def _log_recovery(self, feed_id: str, failures: int) -> None:
        if politeness.unhealthy(failures, self.runtime.loaded.config.defaults.unhealthy_after):
            log.info("feed '%s' is healthy again after %d failures", feed_id, failures)

    def _match(self, item: Any, feeds: Any) -> Any:
        return self.runtime.rules.match(item, feeds)

    def _channels_for(self, rule: str) -> tuple[str, ...]:
        return self.runtime.notify.get(rule, ())

    def _options(self, rule: str) -> RuleOptions:
        return self.runtime.options.get(rule, DEFAULT_RULE_OPTIONS)

    def prune(self) -> None:
        """The daily retention job (feed-monitor prune does the same once)."""
        retention = self.runtime.loaded.config.retention
        if retention.items is None and retention.keys is None:
            return
        stats = prune_history(self.store, retention, now_ms())
        log.info("retention: %d item bodies emptied, %d items deleted, %d old items kept "
                 "while their alerts wait", stats.emptied, stats.deleted, stats.kept)

    def tick(self) -> None:
        """Claim the feeds that are due, as many as there are free workers."""
        if self.stopping.is_set():
            return
        with self._lock:
            for fid, fut in list(self._in_flight.items()):
                if fut.done():
                    del self._in_flight[fid]
            free = self.runtime.loaded.config.scheduler.workers - len(self._in_flight)
            self._finished = 0
        lease_ms = int(self.runtime.loaded.config.feed_lease_seconds() * 1000)
        rows = self.store.feeds.claim_due(self.owner, now_ms(), free, lease_ms,
                                          self.runtime.feed_ids)
        with self._lock:
            # Every worker got a feed: more may be due, so finished polls call the next
            # claim (see _poll_safely). Otherwise the tick's own schedule suffices.
            self._backlog = len(rows) >= free
            for row in rows:
                self._in_flight[row.id] = self.pool.submit(self._poll_safely, row)

    def _poll_safely(self, row: FeedRow) -> PollResult:
        try:
            return self.poll(row)
        except Exception:
            log.exception("feed '%s': unexpected error during poll", row.id)
            return PollResult(row.id, "error")
        finally:
            if not self.stopping.is_set() and self._claim_more():
                self.jobs.wake("tick")

    def _claim_more(self) -> bool:
        """Whether a finished poll should call a claim now: when feeds wait for workers
        and a batch of workers is free (one claim per finished poll would make claims as
        many as polls)."""
        with self._lock:
            self._finished += 1
            return self._backlog and self._finished >= self._claim_batch

    def deliver(self) -> DeliveryStats:
        """Deliver what is due; a full batch means more may be waiting, so go on."""
        total = DeliveryStats()
        while True:
            deliverer = self.runtime.deliverer
            stats = deliverer.deliver_due()
            total.add(stats)
            if (stats.leased < deliverer.config.batch or stats.touched == 0
                    or deliverer.stopping.is_set()):
                return total

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
        # Daily, first a few minutes after start: a daemon restarted more often than
        # daily still prunes.
        self.jobs.add("prune", self.prune, every=86400.0, first_in=300.0)
        self.jobs.start()
        self.metrics.watch_outbox(self.store.readouts.alert_summary)
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
        """Stop claiming; give in-flight polls and sends ``grace`` seconds to finish;
        release the leases of whatever still runs, so the next start takes it up."""
        deadline = time.monotonic() + grace

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self.jobs.pause("tick")
        self.jobs.pause("watch-config")
        self.jobs.pause("prune")
        self.runtime.deliverer.stopping.set()
        # A tick that was claiming when the signal came registers its polls before it
        # returns: wait for it, so every claimed feed is among the futures below.
        self.jobs.wait_idle("tick", left())
        with self._lock:
            futures = list(self._in_flight.values())
        _, running = wait(futures, timeout=left())
        delivering = not self.jobs.wait_idle("deliver", left())
        self.jobs.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.feeds.release_leases(self.owner)
        self.store.outbox.release_leases(self.owner)
        self.abandoned = len(running) + int(delivering)
        if self.abandoned:
            log.warning("grace period of %g s over: %d poll(s)%s still running; their "
                        "feeds and alerts are released for the next start", grace,
                        len(running), " and a delivery" if delivering else "")
        self.fetcher.close()
        self.store.close()
        log.info("stopped")
        return 0

    def once(self) -> dict[str, Any]:
        """Poll every configured feed now, deliver what is due, and report."""
        ids = self.runtime.feed_ids
        # Every feed, due or not; but not one another daemon holds right now, and on a
        # lease that expires like any other should this process die.
        rows = self.store.feeds.claim_due(
            self.owner, now_ms(), len(ids),
            int(self.runtime.loaded.config.feed_lease_seconds() * 1000), ids, due_ms=2**62)
        results = list(self.pool.map(self._poll_safely, rows))
        self.pool.shutdown(wait=True)
        delivered = DeliveryStats()
        while True:
            d = self.deliver()
            delivered.add(d)
            if d.touched == 0:
                break
        self.fetcher.close()
        self.store.close()
        total = sum((r.stats for r in results), IngestStats())
        return {"results": results, "ingest": total, "delivery": delivered}

