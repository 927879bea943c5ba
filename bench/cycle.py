"""One poll cycle over 1,000 and 5,000 feeds: feed-monitor against reader, same farm, one run.

    python bench/cycle.py [--quick] [--feeds 500,1000,2500,5000] [--rules 1000]
                          [--json PATH]

A feed farm (bench/farm.py, one asyncio process on 127.0.0.1) serves the feeds: 80 %
unchanged (304 to a conditional GET), 15 % changed 50-item RFI feeds of about 280 KB
(3 new items per cycle), 5 % faults (hung, HTTP 500, malformed). Each client has its
own farm namespace, so each sees the same changes since its own last poll.

Clients, each measured in a process of its own (wall time of the cycle, CPU time of the
process during the cycle, peak RSS of the process from ``getrusage``):

- **feed-monitor**: ``Monitor(config).once()``: every feed polled once by
  ``scheduler.workers`` threads (fetch, parse, store, match ``--rules`` rules, outbox),
  then the alerts delivered to ``console://`` (output discarded). SQLite file in a
  temporary folder; ``defaults.allow_private_addresses: true``; timeouts ``--timeout``.
- **reader** (PyPI): ``update_feeds(workers=N, scheduled=False)`` on its own SQLite
  file, ``session_timeout`` = ``--timeout``.

Steps, in one run:

1. tuning at ``--tune-at`` feeds (own databases): a warm-up cycle (first polls: backlogs
   stored, validators learnt), then one measured cycle per worker count; the fastest
   count of each client is used from then on;
2. growth: fresh databases; for each feed count in ``--feeds`` (ascending), a warm-up of
   the feeds new at this step, then one measured cycle over all of them. The measured
   cycle is what a daemon does every interval: 80 % conditional 304s, new items in the
   changed feeds, the faulty feeds failing again.

Prints the tables and the ratio reader / feed-monitor; ``--json`` writes the figures.
Each child's stderr (warnings about the farm's faulty feeds) goes to a log file in the
work folder, which ``--keep`` keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload  # noqa: E402
from workload import FarmProcess, feed_id, machine, machine_line, watch_rules  # noqa: E402

CHILD_TIMEOUT = 1200  # seconds: a cycle that takes longer is a failure, not a figure


def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024}


# --- the children --------------------------------------------------------------------------


def child_ours(config: str, out: str) -> None:
    """One ``Monitor.once()`` in this process; figures to ``out`` as JSON."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    from monitor.app import Monitor

    mon = Monitor(config)
    setup_s = time.perf_counter() - started
    # Time spent delivering (once() delivers after polling): told apart from polling.
    delivering = [0.0]
    deliver = mon.deliver

    def timed_deliver() -> Any:
        t = time.perf_counter()
        try:
            return deliver()
        finally:
            delivering[0] += time.perf_counter() - t

    mon.deliver = timed_deliver  # type: ignore[method-assign]
    before = _usage()
    t0 = time.perf_counter()
    report = mon.once()
    wall = time.perf_counter() - t0
    after = _usage()
    ingest, delivered = report["ingest"], report["delivery"]
    Path(out).write_text(json.dumps({
        "client": "feed-monitor", "feeds": len(report["results"]), "wall_s": wall,
        "poll_s": wall - delivering[0], "deliver_s": delivering[0],
        "cpu_s": after["cpu"] - before["cpu"], "process_cpu_s": after["cpu"],
        "setup_s": setup_s, "peak_rss_mb": after["maxrss_mb"],
        "outcomes": dict(Counter(r.outcome for r in report["results"])),
        "new_items": ingest.new, "updated_items": ingest.updated, "repeats": ingest.repeats,
        "matches": ingest.matched, "alerts": ingest.alerts, "sent": delivered.sent}))


def child_reader(db: str, urls_file: str, workers: int, warm: bool, timeout: float,
                 out: str) -> None:
    """One ``update_feeds`` of reader in this process; figures to ``out`` as JSON."""
    started = time.perf_counter()
    from reader import UpdatedFeed, make_reader

    r = make_reader(db, session_timeout=(timeout, timeout))
    urls = Path(urls_file).read_text().split()
    known = {f.url for f in r.get_feeds()}
    for url in urls:
        if url not in known:
            r.add_feed(url)
    setup_s = time.perf_counter() - started
    outcomes: Counter[str] = Counter()
    new = modified = 0
    before = _usage()
    t0 = time.perf_counter()
    # update_feeds_iter is what update_feeds runs; iterating it ourselves only adds the
    # counting. scheduled=False: every feed now, not only those its schedule says are due.
    for _url, value in r.update_feeds_iter(workers=workers, scheduled=False,
                                           new=True if warm else None):
        if value is None:
            outcomes["not-modified"] += 1
        elif isinstance(value, UpdatedFeed):
            outcomes["ok"] += 1
            new += value.new
            modified += value.modified
        else:
            outcomes[type(value).__name__] += 1
    wall = time.perf_counter() - t0
    after = _usage()
    r.close()
    Path(out).write_text(json.dumps({
        "client": "reader", "feeds": sum(outcomes.values()), "wall_s": wall, "poll_s": wall,
        "deliver_s": 0.0, "cpu_s": after["cpu"] - before["cpu"],
        "process_cpu_s": after["cpu"], "setup_s": setup_s, "peak_rss_mb": after["maxrss_mb"],
        "outcomes": dict(outcomes), "new_items": new, "updated_items": modified}))


# --- the parent ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, farm: FarmProcess, work: Path) -> None:
        self.args = args
        self.farm = farm
        self.work = work
        self.rules = watch_rules(args.rules)
        self._n = 0

    def _run(self, argv: list[str], label: str) -> dict[str, Any]:
        self._n += 1
        out = self.work / f"result-{self._n:03d}.json"
        log = self.work / f"child-{self._n:03d}-{label}.log"
        with open(log, "w") as err:
            proc = subprocess.run([sys.executable, __file__, *argv, "--out", str(out)],
                                  stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=CHILD_TIMEOUT, cwd=workload.REPO)
        if proc.returncode != 0 or not out.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{label}: child exited with {proc.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    def ours(self, db: Path, ns: str, lo: int, hi: int, workers: int,
             label: str) -> dict[str, Any]:
        """One once() over feeds [lo, hi) of namespace ``ns``."""
        feeds = [(feed_id(i), self.farm.url(ns, i)) for i in range(lo, hi)]
        cfg = workload.write_config(self.work / f"{label}.yaml", database=db, feeds=feeds,
                                    rules=self.rules, workers=workers,
                                    timeout=self.args.timeout)
        return self._run(["--child", "ours", "--config", str(cfg)], label)

    def reader(self, db: Path, ns: str, n: int, workers: int, warm: bool,
               label: str) -> dict[str, Any]:
        """One update_feeds over feeds [0, n) of ``ns`` (new ones added first)."""
        urls = self.work / f"{label}.urls"
        urls.write_text("\n".join(self.farm.url(ns, i) for i in range(n)))
        argv = ["--child", "reader", "--db", str(db), "--urls", str(urls),
                "--workers", str(workers), "--timeout", str(self.args.timeout)]
        return self._run(argv + (["--warm"] if warm else []), label)

    def measured(self, fn: Any, ns: str, n: int) -> dict[str, Any]:
        """Advance the namespace one cycle, run ``fn``, attach the farm's answer counts."""
        self.farm.advance(ns, n)
        self.farm.stats(ns)  # reset
        result: dict[str, Any] = fn()
        result["farm"] = self.farm.stats(ns)
        return result


def say(msg: str) -> None:
    print(msg, flush=True)


def tune(b: Bench) -> dict[str, Any]:
    a = b.args
    n = a.tune_at
    out: dict[str, Any] = {"feeds": n, "ours": [], "reader": []}
    db = b.work / "tune-ours.db"
    w = b.ours(db, "tune-ours", 0, n, max(a.workers_ours), "tune-ours-warm")
    say(f"  feed-monitor warm-up over {n} feeds: {w['wall_s']:.1f} s")
    for workers in a.workers_ours:
        r = b.measured(lambda workers=workers: b.ours(db, "tune-ours", 0, n, workers,
                                                      f"tune-ours-{workers}"), "tune-ours", n)
        r["workers"] = workers
        out["ours"].append(r)
        say(f"  feed-monitor, scheduler.workers {workers:>3}: {r['wall_s']:6.2f} s")
    db = b.work / "tune-reader.sqlite"
    w = b.reader(db, "tune-reader", n, max(a.workers_reader), True, "tune-reader-warm")
    say(f"  reader warm-up over {n} feeds: {w['wall_s']:.1f} s")
    for workers in a.workers_reader:
        r = b.measured(lambda workers=workers: b.reader(db, "tune-reader", n, workers, False,
                                                        f"tune-reader-{workers}"),
                       "tune-reader", n)
        r["workers"] = workers
        out["reader"].append(r)
        say(f"  reader, update_feeds(workers={workers:>3}): {r['wall_s']:6.2f} s")
    out["best_ours"] = min(out["ours"], key=lambda r: r["wall_s"])["workers"]
    out["best_reader"] = min(out["reader"], key=lambda r: r["wall_s"])["workers"]
    return out


def growth(b: Bench, wo: int, wr: int) -> dict[str, list[dict[str, Any]]]:
    res: dict[str, list[dict[str, Any]]] = {"ours": [], "reader": []}
    ours_db, reader_db = b.work / "ours.db", b.work / "reader.sqlite"
    warmed = 0
    for n in b.args.feeds:
        # feed-monitor: warm-up of the feeds new at this step, then a cycle over all.
        if n > warmed:
            b.ours(ours_db, "ours", warmed, n, wo, f"ours-warm-{n}")
        r = b.measured(lambda n=n: b.ours(ours_db, "ours", 0, n, wo, f"ours-{n}"), "ours", n)
        r["workers"] = wo
        res["ours"].append(r)
        if n > warmed:
            b.reader(reader_db, "reader", n, wr, True, f"reader-warm-{n}")
        r = b.measured(lambda n=n: b.reader(reader_db, "reader", n, wr, False, f"reader-{n}"),
                       "reader", n)
        r["workers"] = wr
        res["reader"].append(r)
        warmed = n
        o, p = res["ours"][-1], res["reader"][-1]
        say(f"  {n:>5} feeds: feed-monitor {o['wall_s']:6.2f} s, reader {p['wall_s']:6.2f} s, "
            f"ratio {p['wall_s'] / o['wall_s']:.1f}x")
    return res


def table(res: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| feeds | client | workers | cycle wall | of which delivery | CPU | peak RSS "
             "| 304 / 200 / failed | new items | reader ÷ feed-monitor (wall) |",
             "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for o, p in zip(res["ours"], res["reader"], strict=True):
        for r in (o, p):
            oc = r["outcomes"]
            not_mod = oc.get("not-modified", 0)
            ok = sum(v for k, v in oc.items() if k.startswith("ok"))
            failed = r["feeds"] - not_mod - ok
            ratio = f"{p['wall_s'] / o['wall_s']:.1f}x" if r is o else ""
            lines.append(
                f"| {r['feeds']:,} | {r['client']} | {r['workers']} | {r['wall_s']:.2f} s | "
                f"{r['deliver_s']:.2f} s | {r['cpu_s']:.1f} s | {r['peak_rss_mb']:.0f} MB | "
                f"{not_mod} / {ok} / {failed} | {r['new_items']:,} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="200 and 500 feeds, 300 rules, fewer worker counts: a smoke run")
    p.add_argument("--feeds", default="500,1000,2500,5000", help="feed counts, ascending")
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--tune-at", type=int, default=1000, help="feed count of the tuning step")
    p.add_argument("--workers-ours", default="16,32,64", help="scheduler.workers to try")
    p.add_argument("--workers-reader", default="4,16,64", help="reader workers to try")
    p.add_argument("--timeout", type=float, default=5.0, help="fetch timeout, both clients")
    p.add_argument("--latency", default="0.01-0.05", help="farm answer delay range, seconds")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    # The children (this same file in a process of its own).
    p.add_argument("--child", choices=("ours", "reader"), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--urls", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "ours":
        child_ours(args.config, args.out)
        return 0
    if args.child == "reader":
        child_reader(args.db, args.urls, args.workers, args.warm, args.timeout, args.out)
        return 0
    if args.quick:
        args.feeds, args.rules, args.tune_at = "200,500", 300, 200
        args.workers_ours, args.workers_reader = "16,64", "4,16"
    args.feeds = sorted(int(x) for x in args.feeds.split(","))
    args.workers_ours = [int(x) for x in args.workers_ours.split(",")]
    args.workers_reader = [int(x) for x in args.workers_reader.split(",")]
    m = machine()
    say(f"machine: {machine_line(m)}")
    import reader as reader_pkg

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-cycle-"))
    try:
        with FarmProcess(max(args.feeds + [args.tune_at]), args.latency,
                         hang=max(20.0, args.timeout * 4)) as farm:
            say(f"farm: 80 % 304, 15 % changed 50-item RFI feeds ({farm.source}), 5 % "
                f"faults; answer delay {args.latency} s; {args.rules} rules; timeout "
                f"{args.timeout:g} s; reader {reader_pkg.__version__}")
            b = Bench(args, farm, work)
            say(f"tuning at {args.tune_at} feeds")
            tuned = tune(b)
            wo, wr = tuned["best_ours"], tuned["best_reader"]
            say(f"best: feed-monitor scheduler.workers {wo}, reader workers {wr}")
            say("growth")
            res = growth(b, wo, wr)
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    for line in table(res):
        say(line)
    figures = {"machine": m, "reader_version": reader_pkg.__version__,
               "farm": {"latency": args.latency, "timeout": args.timeout,
                        "source": farm.source, "hang": farm.hang},
               "rules": args.rules, "tuning": tuned, "growth": res,
               "elapsed_s": time.monotonic() - started}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    say(f"\n(elapsed {figures['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
