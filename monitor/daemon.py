"""The run loop: claims due feeds onto the poll workers, delivers, reloads the config when
it changes, prunes daily, logs a heartbeat, answers health, and stops within a grace period;
``once``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from monitor.app import Parts, build, pool_threads
from monitor.clock import SYSTEM_CLOCK
from monitor.config import load_config
from monitor.errors import ConfigError, MonitorError, StoreError
from monitor.heartbeat import Heartbeat
from monitor.poll import poll_feed
from monitor.polllog import PollLog
from monitor.retention import apply_retention
from monitor.schedule.jobs import JobRunner
from monitor.secrets import Masker
from monitor.store.lockfile import DaemonLock, lock_database
from monitor.types import (
    Clock,
    DeliveryStats,
    FeedRow,
    IngestStats,
    OnceReport,
    PollOutcome,
    PollRecord,
    PollResult,
)
from monitor.web import ConsoleSource, WebServer

log = logging.getLogger("monitor")
heartbeat_log = logging.getLogger("monitor.heartbeat")

ConfigSignature = tuple[int, int, int, str]
# The jobs whose failure makes /healthz fail.
HEALTH_JOBS = frozenset({"tick", "deliver"})


def config_signature(path: str) -> ConfigSignature | None:
    """What tells one version of the config file from another.

    The content's hash as well as the mtime: two saves within one tick of a coarse
    filesystem clock keep the mtime, and an edit must never go unnoticed.
    """
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:  # being replaced, or gone: the running config stays
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino, digest


class Daemon:
    """The daemon's jobs over the built parts. ``run`` serves until stopped; ``once`` polls
    every feed."""

    def __init__(
        self,
        parts: Parts,
        config_path: str,
        config_seen: ConfigSignature | None = None,
        lock: DaemonLock | None = None,
    ) -> None:
        self.parts = parts
        self.lock = lock  # a SQLite database's one-daemon lock, held until the end
        self.config_path = config_path
        self._config_seen = config_seen
        self.jobs = JobRunner(parts.clock)
        # Threads start as polls need them, up to the most the config may ask for;
        # ``runtime.workers`` says how many polls run at once (auto: it follows reloads).
        self._threads = pool_threads(parts.runtime.loaded.config)
        self.pool = ThreadPoolExecutor(self._threads, thread_name_prefix="poll")
        self._in_flight: dict[str, Future[PollResult]] = {}
        # Polls finished since the last claim, and whether that claim filled every worker.
        self._finished = 0
        self._backlog = True
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._reload_lock = threading.Lock()
        self.last_reload_error: str | None = None
        self.abandoned = 0  # polls and sends still running when the grace period ended
        self.activity = Heartbeat(parts.clock.now_ms())
        self.poll_log = PollLog()  # the console's recent polls per feed

    @classmethod
    def open(
        cls,
        config_path: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        masker: Masker | None = None,
        exclusive: bool = False,
    ) -> Daemon:
        """Load the config at ``config_path`` and build the parts from it; ``exclusive``
        (the daemon) first takes a SQLite database's one-daemon lock, or fails naming the
        daemon that holds it."""
        # Taken before reading, so an edit made while starting is reloaded, not missed.
        seen = config_signature(config_path)
        loaded = load_config(config_path)
        lock = None
        if exclusive:
            lock = lock_database(loaded.config.database)
        try:
            parts = build(loaded, clock=clock, masker=masker)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(parts, config_path, seen, lock)

    # -- reloading -----------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config; on error keep the running one and remember why."""
        # SIGHUP and the file watcher may ask at the same moment: one reload at a time.
        with self._reload_lock:
            if self.stopping.is_set():
                return False
            return self._reload()

    def _reload(self) -> bool:
        parts = self.parts
        old_runtime = parts.runtime
        try:
            loaded = load_config(self.config_path)
            if loaded.config.database != old_runtime.loaded.config.database:
                raise ConfigError(
                    "changing the database needs a restart",
                    loaded.path,
                    loaded.line_of("database"),
                    "database",
                )
            runtime = parts.rebuild(loaded)
        except MonitorError as e:
            # Several errors on one line each, joined: one log line, one /healthz reason.
            self.last_reload_error = "; ".join(parts.masker(str(e)).splitlines())
            parts.metrics.reloads.labels("failed").inc()
            log.error(
                "config reload failed, keeping the running config: %s", self.last_reload_error
            )
            return False
        runtime.deliverer.stopping = old_runtime.deliverer.stopping
        runtime.deliverer.adopt_limits(old_runtime.deliverer)
        old = old_runtime.loaded.config
        parts.runtime = runtime
        cfg = loaded.config
        if self.jobs.running:
            if cfg.scheduler.tick != old.scheduler.tick:
                self.jobs.reschedule("tick", cfg.scheduler.tick)
            if cfg.delivery.interval != old.delivery.interval:
                self.jobs.reschedule("deliver", cfg.delivery.interval)
            if cfg.log.heartbeat != old.log.heartbeat:
                self._schedule_heartbeat(cfg.log.heartbeat)
        if pool_threads(cfg) > self._threads:
            log.warning(
                "config reload: 'scheduler.workers' above %d takes effect at the next restart",
                self._threads,
            )
        if cfg.http != old.http:
            log.warning("config reload: 'http' changes only at the next restart")
        self.last_reload_error = None
        parts.metrics.reloads.labels("ok").inc()
        log.info(
            "config reloaded: %d feeds, %d rules, %d channels",
            len(runtime.feeds),
            len(cfg.rules),
            len(cfg.channels),
        )
        if self.jobs.running:
            # New feeds are due now; alerts queued for a channel that came back can go.
            self.jobs.wake("tick")
            self.jobs.wake("deliver")
        return True

    def _check_config_changed(self) -> None:
        seen = config_signature(self.config_path)
        if seen is not None and seen != self._config_seen:
            self._config_seen = seen
            self.reload()

    # -- polling -------------------------------------------------------------------------

    def poll(self, row: FeedRow) -> PollResult:
        """One poll of one claimed feed along the whole path."""
        clock = self.parts.clock
        started_ms, started = clock.now_ms(), clock.monotonic()
        result = poll_feed(self.parts, self.parts.runtime, row, started_ms)
        self.poll_log.record(
            row.id,
            PollRecord(
                started_ms,
                clock.monotonic() - started,
                result.outcome,
                result.status,
                result.stats.new,
                result.stats.updated,
                result.stats.alerts,
                result.error,
            ),
        )
        if result.stats.alerts:
            self.jobs.wake("deliver")
        return result

    def tick(self) -> None:
        """Claim the feeds that are due, as many as there are free workers."""
        if self.stopping.is_set():
            return
        runtime = self.parts.runtime
        with self._lock:
            for fid, fut in list(self._in_flight.items()):
                if fut.done():
                    del self._in_flight[fid]
            free = self.workers() - len(self._in_flight)
            self._finished = 0
        if free <= 0:  # a reload lowered the count: the polls running finish first
            return
        lease_ms = int(runtime.loaded.config.feed_lease_seconds() * 1000)
        rows = self.parts.store.feeds.claim_due(
            self.parts.owner, self.parts.clock.now_ms(), free, lease_ms, runtime.feed_ids
        )
        with self._lock:
            # Every worker got a feed: more may be due, so finished polls call the next
            # claim (see _poll_safely). Otherwise the tick's own schedule suffices.
            self._backlog = len(rows) >= free
            for row in rows:
                self._in_flight[row.id] = self.pool.submit(self._poll_safely, row)

    def _poll_safely(self, row: FeedRow) -> PollResult:
        try:
            result = self.poll(row)
        except Exception:
            log.exception("feed '%s': unexpected error during poll", row.id)
            result = PollResult(row.id, PollOutcome.ERROR)
        try:
            self.activity.polled(result)
            return result
        finally:
            if not self.stopping.is_set() and self._claim_more():
                self.jobs.wake("tick")

    def workers(self) -> int:
        """Polls at once under the config in force (at most the pool's threads)."""
        return min(self.parts.runtime.workers, self._threads)

    def _claim_more(self) -> bool:
        """Whether a finished poll should call a claim now: when feeds wait for workers
        and a batch of workers (an eighth) is free (one claim per finished poll would
        make claims as many as polls)."""
        with self._lock:
            self._finished += 1
            return self._backlog and self._finished >= max(1, self.workers() // 8)

    def deliver(self) -> DeliveryStats:
        """Deliver what is due; a full batch means more may be waiting, so go on."""
        total = DeliveryStats()
        while True:
            deliverer = self.parts.runtime.deliverer
            stats = deliverer.deliver_due(self.parts.clock.now_ms())
            self.activity.delivered(stats)
            total += stats
            if (
                stats.leased < deliverer.settings.batch
                or stats.touched == 0
                or deliverer.stopping.is_set()
            ):
                return total

    def prune(self) -> None:
        """The daily retention job (feed-monitor prune does the same once)."""
        retention = self.parts.runtime.loaded.config.retention
        if retention.items is None and retention.keys is None:
            return
        stats = apply_retention(self.parts.store, retention, self.parts.clock.now_ms())
        log.info(
            "retention: %d item bodies emptied, %d items deleted, %d old items kept "
            "while their alerts wait",
            stats.emptied,
            stats.deleted,
            stats.kept,
        )

    def heartbeat(self) -> None:
        """Log one line: what the daemon did since the last one, so a quiet daemon shows
        it is alive (``log.heartbeat``)."""
        heartbeat_log.info("%s", self.activity.beat(self.parts.clock.now_ms()).line())

    def _schedule_heartbeat(self, every: float) -> None:
        if every <= 0:
            self.jobs.remove("heartbeat")
            return
        # The first line a minute after start (or sooner, for a shorter interval): what
        # a new user sees in the first minute.
        self.jobs.add("heartbeat", self.heartbeat, every=every, first_in=min(every, 60.0))

    # -- running -------------------------------------------------------------------------

    def run(self, grace: float = 20.0) -> int:
        """Serve until SIGTERM or SIGINT; then stop claiming, finish, release, exit 0."""
        parts = self.parts
        cfg = parts.runtime.loaded.config
        web = None
        if cfg.http.enabled:
            # Bound before any job starts: a port that is taken ends the start with one
            # line, and no tick is left running against a store being closed.
            try:
                web = WebServer(
                    *cfg.http.host_port(),
                    parts.metrics,
                    self.health,
                    self._console() if cfg.http.console else None,
                )
            except OSError as e:
                self._close()
                raise MonitorError(
                    f"cannot listen on {cfg.http.listen} (http.listen): {e.strerror or e}"
                ) from e
        self._install_signals()
        self.jobs.add("tick", self.tick, every=cfg.scheduler.tick)
        self.jobs.add("deliver", self.deliver, every=cfg.delivery.interval, first_in=0.5)
        # Checking the file's mtime each second is cheap and works on every
        # filesystem, bind mounts and editors that replace the file included.
        self.jobs.add("watch-config", self._check_config_changed, every=1.0, first_in=1.0)
        # Daily, first a few minutes after start: a daemon restarted more often than
        # daily still prunes.
        self.jobs.add("prune", self.prune, every=86400.0, first_in=300.0)
        self._schedule_heartbeat(cfg.log.heartbeat)
        self.jobs.start()
        parts.metrics.watch_outbox(parts.store.readouts.alert_summary)
        if web is not None:
            web.start()
        log.info(
            "feed-monitor running: %d feeds, %d rules, %d channels, database %s",
            len(parts.runtime.feeds),
            len(cfg.rules),
            len(cfg.channels),
            parts.store.safe_url,
        )
        while not self.stopping.wait(1.0):
            pass
        code = self._shutdown(grace)
        if web is not None:
            web.stop()
        return code

    def _console(self) -> ConsoleSource:
        """What the web console reads: the config in force follows reloads."""
        token = self.parts.runtime.loaded.config.http.admin_token
        if token:
            self.parts.masker.add([token])
        return ConsoleSource(
            self.parts.store,
            self.parts.clock,
            self.parts.masker,
            lambda: self.parts.runtime.loaded,
            self.poll_log.recent,
        )

    def health(self) -> list[str]:
        """Reasons the daemon is unhealthy; empty when all is well."""
        problems = []
        if not self.jobs.running or self.stopping.is_set():
            problems.append("scheduler not running")
        try:
            self.parts.store.ping()
        except StoreError as e:
            problems.append(self.parts.masker(str(e)))
        for name, error in self.jobs.failing().items():
            # Claiming and delivering are the daemon's work; a failed daily prune is
            # logged, and does not fail health until the next day's run.
            if name in HEALTH_JOBS:
                problems.append(self.parts.masker(f"job '{name}' failing: {error}"))
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
            signal.signal(
                signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, daemon=True).start()
            )

    def _shutdown(self, grace: float) -> int:
        """Stop claiming; give in-flight polls and sends ``grace`` seconds to finish;
        release the leases of whatever still runs, so the next start takes it up."""
        clock = self.parts.clock
        deadline = clock.monotonic() + grace

        def left() -> float:
            return max(0.0, deadline - clock.monotonic())

        self.jobs.pause("tick")
        self.jobs.pause("watch-config")
        self.jobs.pause("prune")
        self.jobs.pause("heartbeat")
        self.parts.runtime.deliverer.stopping.set()
        # A tick that was claiming when the signal came registers its polls before it
        # returns: wait for it, so every claimed feed is among the futures below.
        self.jobs.wait_idle("tick", left())
        with self._lock:
            futures = list(self._in_flight.values())
        _, running = wait(futures, timeout=left())
        delivering = not self.jobs.wait_idle("deliver", left())
        self.jobs.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.parts.store.feeds.release_leases(self.parts.owner)
        self.parts.store.outbox.release_leases(self.parts.owner)
        self.abandoned = len(running) + int(delivering)
        if self.abandoned:
            log.warning(
                "grace period of %g s over: %d poll(s)%s still running; their "
                "feeds and alerts are released for the next start",
                grace,
                len(running),
                " and a delivery" if delivering else "",
            )
        self._close()
        log.info("stopped")
        return 0

    def _close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.parts.close()
        if self.lock is not None:
            self.lock.release()

    def once(self) -> OnceReport:
        """Poll every configured feed now, deliver what is due, and report."""
        parts = self.parts
        runtime = parts.runtime
        ids = runtime.feed_ids
        # Every feed, due or not; but not one another daemon holds right now, and on a
        # lease that expires like any other should this process die.
        rows = parts.store.feeds.claim_due(
            parts.owner,
            parts.clock.now_ms(),
            len(ids),
            int(runtime.loaded.config.feed_lease_seconds() * 1000),
            ids,
            due_ms=2**62,
        )
        self.pool.shutdown(wait=True)
        with ThreadPoolExecutor(self.workers(), thread_name_prefix="poll") as pool:
            results = tuple(pool.map(self._poll_safely, rows))
        delivered = DeliveryStats()
        while True:
            d = self.deliver()
            delivered += d
            if d.touched == 0:
                break
        parts.close()
        total = sum((r.stats for r in results), IngestStats())
        return OnceReport(results, total, delivered)
