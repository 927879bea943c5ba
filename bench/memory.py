"""The daemon's memory after an hour of polling: ``feed-monitor run`` with 5,000 feeds and
10,000 rules, 12 poll cycles back to back (an hour at the default 5-minute interval).

    python bench/memory.py [--quick] [--feeds 5000] [--rules 10000] [--cycles 12]
                           [--workers 32] [--json PATH]

The real daemon (``python -m monitor run``) polls the feed farm (bench/farm.py: 80 %
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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload  # noqa: E402
from workload import FarmProcess, feed_id, machine, machine_line, watch_rules  # noqa: E402


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def import_baseline() -> float:
    """RSS (MB) of an interpreter that imported what the daemon imports, nothing more."""
    code = ("import monitor.app, monitor.cli; print(int(open('/proc/self/status').read()"
            ".split('VmRSS:')[1].split()[0]) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=workload.REPO, check=True, timeout=120)
    return float(out.stdout.strip())


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config), "--log-level",
             "warning"], cwd=workload.REPO, stdout=subprocess.DEVNULL, stderr=self._log)

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the daemon exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def db_scalar(db: Path, sql: str, *params: Any) -> Any:
    try:
        conn = sqlite3.connect(db, timeout=30)
    except sqlite3.Error:
        return None
    try:
        return conn.execute(sql, params).fetchone()[0]
    except sqlite3.OperationalError:  # the daemon has not created the tables yet
        return None
    finally:
        conn.close()


def wait_for(check: Any, daemon: Daemon, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        daemon.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-memory-"))
    db = work / "monitor.db"
    n = args.feeds
    result: dict[str, Any] = {"feeds": n, "rules": args.rules, "workers": args.workers,
                              "cycles_asked": args.cycles}
    result["import_baseline_mb"] = import_baseline()
    try:
        with FarmProcess(n, args.latency, hang=max(20.0, args.timeout * 4)) as farm:
            result["farm_source"] = farm.source
            feeds = [(feed_id(i), farm.url("mem", i)) for i in range(n)]
            # Interval 1 h: nothing is due unless the benchmark says so; tick 0.5 s so a
            # due feed waits at most that long for a free worker to be noticed.
            cfg = workload.write_config(work / "monitor.yaml", database=db, feeds=feeds,
                                        rules=watch_rules(args.rules), workers=args.workers,
                                        timeout=args.timeout, interval="1h", tick=0.5)
            t0 = time.monotonic()
            daemon = Daemon(cfg, work / "daemon.log")
            try:
                def polled_all(since: int = 0) -> bool:
                    done = db_scalar(db, "SELECT count(*) FROM feeds WHERE last_poll_ms >= ?",
                                     since)
                    return done == n

                wait_for(polled_all, daemon, args.max_wait, "the warm-up (first polls)")
                result["warmup_s"] = time.monotonic() - t0
                result["after_warmup"] = proc_status(daemon.proc.pid)
                print(f"  warm-up: {result['warmup_s']:.1f} s, RSS "
                      f"{result['after_warmup']['VmRSS']:.0f} MB", flush=True)
                cycles = []
                for c in range(args.cycles):
                    farm.advance("mem", n)
                    cpu0 = cpu_seconds(daemon.proc.pid)
                    due = int(time.time() * 1000) + 300
                    conn = sqlite3.connect(db, timeout=30)
                    with conn:
                        conn.execute("UPDATE feeds SET next_poll_ms = ?", (due,))
                    conn.close()
                    wait_for(lambda due=due: polled_all(due), daemon, args.max_wait,
                             f"cycle {c + 1}")
                    last = db_scalar(db, "SELECT max(last_poll_ms) FROM feeds")
                    status = proc_status(daemon.proc.pid)
                    cycles.append({"cycle": c + 1, "seconds": (last - due) / 1000,
                                   "cpu_s": cpu_seconds(daemon.proc.pid) - cpu0,
                                   "rss_mb": status["VmRSS"], "hwm_mb": status["VmHWM"]})
                    print(f"  cycle {c + 1:>2}: {cycles[-1]['seconds']:6.2f} s, CPU "
                          f"{cycles[-1]['cpu_s']:5.1f} s, RSS {status['VmRSS']:6.1f} MB "
                          f"(peak {status['VmHWM']:.0f})", flush=True)
                result["cycles"] = cycles
                result["alerts"] = db_scalar(db, "SELECT count(*) FROM alerts")
                result["items"] = db_scalar(db, "SELECT count(*) FROM items")
                result["final"] = proc_status(daemon.proc.pid)
            finally:
                daemon.stop()
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
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (DB, log)")
    args = p.parse_args(argv)
    if args.quick:
        args.feeds, args.rules, args.cycles = 1000, 2000, 3
    m = machine()
    print(f"machine: {machine_line(m)}")
    print(f"daemon: {args.feeds} feeds, {args.rules} rules, scheduler.workers "
          f"{args.workers}, {args.cycles} cycles back to back", flush=True)
    started = time.monotonic()
    r = run(args)
    r["machine"] = m
    r["elapsed_s"] = time.monotonic() - started
    final = r["final"]
    print(f"\n| | RSS |\n|---|---:|\n| interpreter with the daemon's modules imported "
          f"(baseline) | {r['import_baseline_mb']:.0f} MB |\n| daemon after warm-up | "
          f"{r['after_warmup']['VmRSS']:.0f} MB |\n| daemon after cycle 1 | "
          f"{r['cycles'][0]['rss_mb']:.0f} MB |\n| daemon after cycle {len(r['cycles'])} | "
          f"{final['VmRSS']:.0f} MB |\n| daemon peak (VmHWM) | {final['VmHWM']:.0f} MB |")
    print(f"\nafter {len(r['cycles'])} cycles: {final['VmRSS']:.0f} MB, "
          f"{final['VmRSS'] / r['import_baseline_mb']:.1f}x the import baseline; goal "
          f"<= 200 MB: {'met' if final['VmRSS'] <= 200 else 'NOT met'}; database "
          f"{r['db_mb']:.0f} MB, {r['items']} items, {r['alerts']} alerts")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
