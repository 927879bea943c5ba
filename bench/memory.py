"""The daemon's memory after an hour of polling: ``feed-monitor run`` with 5,000 feeds and
10,000 rules, 12 poll cycles back to back (an hour at the default 5-minute interval).

    python bench/memory.py [--quick] [--feeds 5000] [--rules 10000] [--cycles 12]
                           [--workers 32] [--matching analyst|today] [--json PATH]

The real daemon (``python -m monitor run``) polls the feed farm (bench/support/farm.py: 80 %
304, 15 % changed 50-item RFI feeds, 5 % faults) with a SQLite file in a temporary
folder and alerts to ``console://`` (output discarded). Its interval is 1 h, so it polls
only when told to: after its first polls (the warm-up), each cycle the farm moves on
(3 new items per changed feed) and the benchmark makes every feed due at one instant T,
as an interval ending does; the cycle ends when every feed's poll is recorded. The
daemon's delivery job runs meanwhile, as it always does.

Measured from outside, in /proc: the daemon's resident set (VmRSS) after start-up,
after the warm-up and after every cycle, its peak (VmHWM), its CPU time per cycle, and
the cycle time (``max(last_poll_ms) - T`` in the database). The baseline in the same
run is the resident set of a bare interpreter that has imported the daemon's modules
(what no configuration can avoid).

``--matching today`` gives every rule ``aliases: false`` and ``exact: true`` (matching as
before issue #17: no other forms of names, no word checks, so no word list); the default,
``analyst``, leaves the rules as users write them. The watch list's English names (Putin,
Ukraine, Taiwan, ...) match RFI's Chinese text only with the alias table: it makes more
alerts, and the daemon stores and delivers them.

The daemon inherits the environment: with ``MALLOC_ARENA_MAX`` set, glibc uses that
many malloc arenas; unset, the daemon caps them at 2 itself (monitor/_malloc.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import (  # noqa: E402
    Daemon,
    FarmProcess,
    db_scalar,
    farm_config,
    feed_id,
    machine,
    machine_line,
    proc_status,
    watch_rules,
)


def import_baseline() -> float:
    """RSS (MB) of an interpreter that imported what the daemon imports, nothing more."""
    code = (
        "import monitor.app, monitor.cli; print(int(open('/proc/self/status').read()"
        ".split('VmRSS:')[1].split()[0]) / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=120,
    )
    return float(out.stdout.strip())


def rules_for(count: int, matching: str) -> list[dict[str, Any]]:
    rules = watch_rules(count)
    if matching == "today":
        return [{**r, "aliases": False, "exact": True} for r in rules]
    return rules


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-memory-"))
    db = work / "monitor.db"
    n = args.feeds
    result: dict[str, Any] = {
        "feeds": n,
        "rules": args.rules,
        "workers": args.workers,
        "cycles_asked": args.cycles,
        "matching": args.matching,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
    }
    result["import_baseline_mb"] = import_baseline()
    try:
        with FarmProcess(n, args.latency, hang=max(20.0, args.timeout * 4)) as farm:
            result["farm_source"] = farm.source
            feeds = [(feed_id(i), farm.url("mem", i)) for i in range(n)]
            # Interval 1 h: nothing is due unless the benchmark says so; tick 0.2 s so a
            # due feed waits at most that long for a free worker to be noticed.
            cfg = farm_config(
                work / "monitor.yaml",
                database=db,
                feeds=feeds,
                rules=rules_for(args.rules, args.matching),
                workers=args.workers,
                timeout=args.timeout,
                interval="1h",
                tick=0.2,
            )
            t0 = time.monotonic()
            with Daemon(cfg, db, work / "daemon.log") as daemon:
                daemon.wait_started(n)
                result["after_start"] = proc_status(daemon.proc.pid)
                daemon.idle(args.max_wait)  # the first polls: backlogs, validators
                result["warmup_s"] = time.monotonic() - t0
                result["after_warmup"] = proc_status(daemon.proc.pid)
                print(
                    f"  start-up RSS {result['after_start']['VmRSS']:.0f} MB; first polls: "
                    f"{result['warmup_s']:.1f} s, RSS {result['after_warmup']['VmRSS']:.0f}"
                    " MB",
                    flush=True,
                )
                cycles = []
                for c in range(args.cycles):
                    farm.advance("mem", n)
                    r = daemon.cycle(n, args.max_wait)
                    r["cycle"] = c + 1
                    cycles.append(r)
                    print(
                        f"  cycle {c + 1:>2}: {r['wall_s']:6.2f} s, CPU {r['cpu_s']:5.1f} s, "
                        f"RSS {r['rss_mb']:6.1f} MB (peak {r['peak_rss_mb']:.0f}), "
                        f"{r['new_items']} new items, {r['alerts']} alerts",
                        flush=True,
                    )
                result["cycles"] = cycles
                result["alerts"] = db_scalar(db, "SELECT count(*) FROM alerts")
                result["items"] = db_scalar(db, "SELECT count(*) FROM items")
                result["final"] = proc_status(daemon.proc.pid)
            result["db_mb"] = sum(p.stat().st_size for p in work.glob("monitor.db*")) / 2**20
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000 feeds, 2,000 rules, 3 cycles")
    p.add_argument("--feeds", type=int, default=5000)
    p.add_argument("--rules", type=int, default=10000)
    p.add_argument("--cycles", type=int, default=12)
    p.add_argument("--workers", type=int, default=32, help="scheduler.workers")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--latency", default="0.01-0.05", help="farm answer delay range, seconds")
    p.add_argument("--max-wait", type=float, default=600, help="seconds one cycle may take")
    p.add_argument(
        "--matching",
        choices=("analyst", "today"),
        default="analyst",
        help="the rules as written (default), or every rule aliases: false, exact: true",
    )
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (DB, log)")
    args = p.parse_args(argv)
    if args.quick:
        args.feeds, args.rules, args.cycles = 1000, 2000, 3
    m = machine()
    print(f"machine: {machine_line(m)}")
    print(
        f"daemon: {args.feeds} feeds, {args.rules} rules, scheduler.workers "
        f"{args.workers}, {args.cycles} cycles back to back, matching {args.matching}; "
        "MALLOC_ARENA_MAX "
        f"{os.environ.get('MALLOC_ARENA_MAX', 'unset (the daemon caps arenas at 2)')}",
        flush=True,
    )
    started = time.monotonic()
    r = run(args)
    r["machine"] = m
    r["elapsed_s"] = time.monotonic() - started
    final = r["final"]
    print(
        f"\n| | RSS |\n|---|---:|\n| interpreter with the daemon's modules imported "
        f"(baseline) | {r['import_baseline_mb']:.0f} MB |\n| daemon after warm-up | "
        f"{r['after_warmup']['VmRSS']:.0f} MB |\n| daemon after cycle 1 | "
        f"{r['cycles'][0]['rss_mb']:.0f} MB |\n| daemon after cycle {len(r['cycles'])} | "
        f"{final['VmRSS']:.0f} MB |\n| daemon peak (VmHWM) | {final['VmHWM']:.0f} MB |"
    )
    print(
        f"\nafter {len(r['cycles'])} cycles: {final['VmRSS']:.0f} MB, "
        f"{final['VmRSS'] / r['import_baseline_mb']:.1f}x the import baseline; goal "
        f"<= 200 MB: {'met' if final['VmRSS'] <= 200 else 'NOT met'}; database "
        f"{r['db_mb']:.0f} MB, {r['items']} items, {r['alerts']} alerts"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
