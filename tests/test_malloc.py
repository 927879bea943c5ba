"""glibc allocator tuning: arenas capped unless the operator chose, no-ops elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import wait
from pathlib import Path

import pytest

from monitor import _malloc
from monitor import daemon as daemon_module
from tests.daemon import REPO, write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed
from tests.support.clock import FakeClock

T0 = 1_700_000_000_000


def test_an_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert _malloc.limit_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    assert _malloc.limit_arenas() is False


def test_arenas_capped_on_glibc_and_nothing_done_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a child process: the cap stays for the life of the process.
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from monitor import _malloc; print(_malloc.limit_arenas()); "
            "_malloc.release_free_memory(); print(_malloc._glibc() is not None)",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    capped, glibc = out.stdout.split()
    assert capped == glibc  # capped exactly where glibc is there to cap
    monkeypatch.setattr(_malloc, "_libc", None)  # as off glibc
    assert _malloc.limit_arenas() is False
    _malloc.release_free_memory()


def test_the_daemon_hands_free_memory_back_when_idle_at_most_every_ten_seconds(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released: list[float] = []
    clock = FakeClock(T0)
    monkeypatch.setattr(
        daemon_module, "release_free_memory", lambda: released.append(clock.monotonic())
    )
    feed_server.set_feed(
        "/cn", rss_feed([FeedItem("中俄会谈", "https://www.rfi.fr/cn/a", "<p>x</p>", T0)])
    )
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": f"cn{i}", "url": feed_server.url("/cn"), "backlog": "all"} for i in range(3)],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/alerts")]}},
        rules=[{"name": "china-russia", "any": ["中俄"], "notify": ["hook"]}],
    )
    daemon = daemon_module.Daemon.open(str(config), clock=clock)
    try:
        daemon.tick()  # three polls: released once, when the last one finishes
        wait(list(daemon._in_flight.values()))
        assert len(released) == 1
        daemon.deliver()  # sends within the same 10 s: not now, but due
        assert len(released) == 1
        daemon.tick()
        assert len(released) == 1
        clock.advance(daemon_module.RELEASE_EVERY_S)
        daemon.tick()  # the first tick 10 s later
        assert len(released) == 2
        wait(list(daemon._in_flight.values()))
        daemon.deliver()  # nothing left to send: nothing freed, nothing released
        daemon.tick()
        assert len(released) == 2
        feed_server.set_feed(
            "/cn", rss_feed([FeedItem("中俄峰会", "https://www.rfi.fr/cn/b", "<p>y</p>", T0)])
        )
        clock.advance(3600)
        daemon.tick()
        wait(list(daemon._in_flight.values()))
        assert len(released) == 3
    finally:
        daemon.pool.shutdown(wait=True)
        daemon.parts.close()
    assert len(webhook_receiver.received) == 1
