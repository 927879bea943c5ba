"""Our daemon's config for a benchmark: what a farm on 127.0.0.1 needs, the rest as given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONSOLE = {"out": {"urls": ["console://"]}}


def write_config(
    path: Path,
    *,
    database: str,
    feeds: list[dict[str, Any]],
    rules: list[dict[str, Any]],
    channels: dict[str, Any] | None = None,
    **sections: dict[str, Any],
) -> Path:
    """A config of ``sections`` (defaults, scheduler, delivery, ...) as given, the web
    console off, and alerts to ``console://`` (whose output a benchmark discards) unless
    ``channels`` says otherwise."""
    cfg: dict[str, Any] = {
        "database": database,
        **sections,
        "http": {"enabled": False},
        "feeds": feeds,
        "channels": channels or CONSOLE,
        "rules": rules,
    }
    path.write_text(
        yaml.safe_dump(
            cfg, allow_unicode=True, sort_keys=False, default_flow_style=None, width=200
        ),
        encoding="utf-8",
    )
    return path


def farm_config(
    path: Path,
    *,
    database: Path,
    feeds: list[tuple[str, str]],
    rules: list[dict[str, Any]],
    workers: int | str,
    timeout: float,
    interval: str = "5m",
    tick: float = 5.0,
) -> Path:
    """The config of the cycle, memory and rule-cost benchmarks: defaults except what a
    farm on 127.0.0.1 needs.

    - ``allow_private_addresses``: the fetcher refuses loopback addresses otherwise;
    - ``workers`` a number: ``scheduler.workers`` and ``private_host_concurrency`` (the
      limit of 127.0.0.1, a loopback host) both that number (at most 64): every farm feed
      is on one host, real feeds are spread over many. ``"auto"``: both left to their
      defaults (``scheduler.workers: auto``, 16 per private host), as installed;
    - ``timeout`` (total, connect, read) small, so the farm's hung feeds do not dominate;
    - ``jitter`` 0 and ``backlog: none`` (the default): first polls record, not alert.
    """
    defaults: dict[str, Any] = {
        "interval": interval,
        "jitter": 0,
        "timeout": timeout,
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "allow_private_addresses": True,
    }
    scheduler: dict[str, Any] = {"tick": tick}
    if workers != "auto":
        defaults["private_host_concurrency"] = min(int(workers), 64)
        scheduler["workers"] = workers
    return write_config(
        path,
        database=f"sqlite:///{database}",
        feeds=[{"id": fid, "url": url} for fid, url in feeds],
        rules=rules,
        defaults=defaults,
        scheduler=scheduler,
    )


def feed_id(index: int) -> str:
    return f"f{index:05d}"
