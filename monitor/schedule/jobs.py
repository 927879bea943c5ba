"""APScheduler adapter: short in-process jobs that never overlap themselves.

APScheduler runs the daemon's short jobs (claim due feeds, deliver the outbox,
watch the config file). Feed schedules themselves live in the database, never in
an APScheduler job store, so restarts and several processes work. Cron
expressions are read in ``monitor.schedule.cron``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from monitor.clock import SYSTEM_CLOCK
from monitor.faults import Faults
from monitor.types import Clock

log = logging.getLogger("monitor.scheduler")


class JobRunner:
    """Periodic jobs that never overlap themselves and can be woken early."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        # A job failing the same way each run is logged once, then summed up (faults.py).
        self.faults = Faults(log, clock)
        self._sched = BackgroundScheduler(
            executors={"default": JobExecutor(8)},
            # Two instances: the second finds the job running and only asks it to go
            # once more (see add), instead of APScheduler logging a skipped run.
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": 30},
            timezone="UTC",
        )
        self._again: dict[str, threading.Event] = {}
        self._running: dict[str, threading.Lock] = {}

    def add(
        self, name: str, func: Callable[[], object], every: float, first_in: float = 0.0
    ) -> None:
        again = self._again.setdefault(name, threading.Event())
        lock = self._running.setdefault(name, threading.Lock())

        def run() -> None:
            # A wake-up that arrives while the job runs makes it run once more
            # right after, instead of being dropped as an overlapping instance.
            if not lock.acquire(blocking=False):
                again.set()
                return
            try:
                while True:
                    again.clear()
                    try:
                        func()
                    except Exception as e:
                        self.faults.failed(name, e)
                    else:
                        self.faults.succeeded(name)
                    if not again.is_set():
                        break
            finally:
                lock.release()

        self._sched.add_job(
            run,
            "interval",
            seconds=every,
            id=name,
            name=name,
            next_run_time=self._time_in(first_in),
            replace_existing=True,
        )

    def _time_in(self, seconds: float) -> datetime:
        # APScheduler compares run times with its own reading of the wall clock.
        return datetime.fromtimestamp(self._clock.now_ms() / 1000 + seconds, UTC)

    def reschedule(self, name: str, every: float) -> None:
        self._sched.reschedule_job(name, trigger="interval", seconds=every)

    def wake(self, name: str) -> None:
        """Run job ``name`` as soon as possible (again, if it is running now)."""
        lock = self._running.get(name)
        if lock is not None and lock.locked():
            self._again[name].set()
            return
        try:
            self._sched.modify_job(name, next_run_time=self._time_in(0.0))
        except Exception:  # the scheduler may be shutting down
            pass

    def remove(self, name: str) -> None:
        """Stop running job ``name``; nothing happens if there is none."""
        try:
            self._sched.remove_job(name)
        except Exception:  # no such job
            pass

    def pause(self, name: str) -> None:
        try:
            self._sched.pause_job(name)
        except Exception:
            pass

    def failing(self) -> dict[str, str]:
        """The jobs whose last run failed, with its error."""
        return self.faults.failing()

    @property
    def running(self) -> bool:
        return bool(self._sched.running)

    def start(self) -> None:
        self._sched.start()

    def wait_idle(self, name: str, timeout: float) -> bool:
        lock = self._running.get(name)
        if lock is None:
            return True
        if lock.acquire(timeout=max(timeout, 0)):
            lock.release()
            return True
        return False

    def shutdown(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)
