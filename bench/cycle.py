"""One poll cycle over 1,000 and 5,000 feeds: feed-monitor against reader, same farm, one run.

    python bench/cycle.py [--quick] [--feeds 500,1000,2500,5000] [--rules 1000]
                          [--no-reader] [--plain-rules] [--profile] [--json PATH]
    python bench/cycle.py --compare --feeds 1000,5000 --workers-ours auto,64 [--repeat 2]

A feed farm (bench/support/farm.py, one asyncio process on 127.0.0.1) serves the feeds: 80 %
unchanged (304 to a conditional GET), 15 % changed 50-item RFI feeds of about 270 KB
(3 new items per cycle), 5 % faults (hung, HTTP 500, malformed). Each client has its
own farm namespace, so each sees the same changes since its own last poll.

Each client runs in a process of its own, which does a warm-up cycle (first polls of the
feeds new at this step: backlogs stored, validators learnt; the others polled again, so
the process is as warm as a long-running one), then one measured cycle. The farm moves
on before each of the two, so in both the changed feeds have 3 new items and 80 % of the
feeds answer 304:

- **feed-monitor**: the daemon (``python -m monitor run``), interval 1 h so it polls
  only when told; a cycle makes every feed due at one instant T, as an interval ending
  does, and lasts until every feed's poll is recorded in its database
  (``max(last_poll_ms) - T``). It fetches, parses, stores, matches ``--rules`` rules and
  delivers the alerts to ``console://`` (output discarded); "alerts delivered by" is when
  no alert was pending any more. SQLite file in a temporary folder,
  ``defaults.allow_private_addresses: true``, timeouts ``--timeout``, other settings
  default. CPU time and RSS are the daemon's, from /proc.
- **reader** (PyPI): ``update_feeds(workers=N, scheduled=False)`` on its own SQLite file,
  ``session_timeout`` = ``--timeout``; CPU time from ``getrusage`` during the cycle,
  RSS from /proc.

Steps, in one run:

1. tuning, at the first (smallest) feed count: one process per worker count, each a
   warm-up and a measured cycle; the fastest count of each client is that step's
   figure and is used from then on;
2. growth: for each further feed count in ``--feeds`` (ascending, databases kept from
   step to step, so only the feeds new at a step have their first polls), warm-up and
   a measured cycle;
3. with ``--profile``: one more cycle of the daemon at the largest count, not measured,
   sampled by py-spy (GIL holder only: what the process spends its one effective core
   on); the shares of time per function go to the report.

Prints the tables and the ratio reader / feed-monitor; ``--json`` writes the figures.
``--no-reader`` leaves reader out (feed-monitor alone, a faster run for comparing two
trees); ``--plain-rules`` gives every rule ``aliases: false`` and ``exact: true``, so the
rules match as they did before aliases and word boundaries (the same alerts as a tree
from before them, to compare the rest of the poll path like for like).

``--compare`` measures feed-monitor alone: at each feed count, one process (warm-up and
measured cycle) per ``--workers-ours`` entry, the entries interleaved ``--repeat`` times,
each against the fastest of that count in the same run. ``auto`` is the default config
(``scheduler.workers`` and the per-host limits as installed); a number N sets both
``scheduler.workers`` and the farm host's limit to N, as the tuning does.
Logs of every process go to the work folder, which ``--keep`` keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import (  # noqa: E402
    Daemon,
    FarmProcess,
    farm_config,
    feed_id,
    machine,
    machine_line,
    proc_status,
    watch_rules,
)

CHILD_TIMEOUT = 1200  # seconds: a cycle that takes longer is a failure, not a figure


# --- reader, in a process of its own --------------------------------------------------------


def child_reader(
    db: str, urls_file: str, workers: int, timeout: float, advance: str, out: str
) -> None:
    """Warm-up and one measured ``update_feeds`` of reader; figures to ``out`` as JSON."""
    from reader import UpdatedFeed, make_reader

    r = make_reader(db, session_timeout=(timeout, timeout))
    urls = Path(urls_file).read_text().split()
    known = {f.url for f in r.get_feeds()}
    for url in urls:
        if url not in known:
            r.add_feed(url)

    def cycle() -> dict[str, Any]:
        outcomes: Counter[str] = Counter()
        new = 0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        # update_feeds_iter is what update_feeds runs; iterating it here only adds the
        # counting. scheduled=False: every feed now, not only those reader thinks due.
        for _url, value in r.update_feeds_iter(workers=workers, scheduled=False):
            if value is None:
                outcomes["not-modified"] += 1
            elif isinstance(value, UpdatedFeed):
                outcomes["ok"] += 1
                new += value.new
            else:
                outcomes[type(value).__name__] += 1
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall_s": wall,
            "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "outcomes": dict(outcomes),
            "new_items": new,
            "feeds": sum(outcomes.values()),
        }

    warm = cycle()
    # The farm moves on; its answer counts restart, so they are the measured cycle's.
    stats = advance.replace("/_advance?", "/_stats?") + "&reset=1"
    for url in (advance, stats):
        with urllib.request.urlopen(url, timeout=120) as resp:
            resp.read()
    measured = cycle()
    status = proc_status(os.getpid())
    r.close()
    Path(out).write_text(
        json.dumps(
            {
                "client": "reader",
                **measured,
                "warmup_s": warm["wall_s"],
                "drained_s": None,
                "alerts": None,
                "rss_mb": status["VmRSS"],
                "peak_rss_mb": status["VmHWM"],
            }
        )
    )


# --- the parent ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, farm: FarmProcess, work: Path) -> None:
        self.args = args
        self.farm = farm
        self.work = work
        self.rules = watch_rules(args.rules)
        if args.plain_rules:
            self.rules = [dict(r, aliases=False, exact=True) for r in self.rules]
        self._n = 0

    def ours(
        self,
        db: Path,
        ns: str,
        n: int,
        workers: int | str,
        label: str,
        profile: Path | None = None,
    ) -> dict[str, Any]:
        """Daemon over feeds [0, n) of ``ns``: warm-up cycle, farm moves on, measured cycle."""
        feeds = [(feed_id(i), self.farm.url(ns, i)) for i in range(n)]
        # Interval 1 h: nothing is due unless the benchmark says so. Tick 0.2 s: a due
        # feed waits at most that for a worker (a finished poll also wakes the tick).
        cfg = farm_config(
            self.work / f"{label}.yaml",
            database=db,
            feeds=feeds,
            rules=self.rules,
            workers=workers,
            timeout=self.args.timeout,
            interval="1h",
            tick=0.2,
        )
        t0 = time.monotonic()
        # The farm moves on before the warm-up as well: the changed feeds then answer
        # 200 in both cycles, as they do every interval, so the process has seen them
        # change once before the measured cycle (a long-running one always has).
        self.farm.advance(ns, n)
        with Daemon(cfg, db, self.work / f"{label}.log") as d:
            d.wait_started(n)
            warm = d.cycle(n)
            self.farm.advance(ns, n)
            self.farm.stats(ns)  # reset
            if profile is None:
                result = d.cycle(n)
            else:
                result = self._profiled(d, n, profile)
        result.update(
            client="feed-monitor",
            workers=workers,
            warmup_s=warm["wall_s"],
            farm=self.farm.stats(ns),
            process_s=time.monotonic() - t0,
        )
        return result

    def _profiled(self, d: Daemon, n: int, path: Path) -> dict[str, Any]:
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install -e '.[bench]')")
        with open(self.work / "py-spy.log", "w") as log:
            sampler = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--gil",
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(path),
                    "--pid",
                    str(d.proc.pid),
                ],
                stdout=log,
                stderr=log,
            )
            time.sleep(1.0)  # attached before the cycle starts
            try:
                result = d.cycle(n)
            finally:
                sampler.send_signal(2)  # SIGINT: py-spy writes its file and exits
                sampler.wait(60)
        return result

    def reader(self, db: Path, ns: str, n: int, workers: int, label: str) -> dict[str, Any]:
        """reader over feeds [0, n) of ``ns``: warm-up, farm moves on, measured cycle."""
        urls = self.work / f"{label}.urls"
        urls.write_text("\n".join(self.farm.url(ns, i) for i in range(n)))
        out = self.work / f"{label}.json"
        advance = f"http://127.0.0.1:{self.farm.port}/_advance?ns={ns}&upto={n}"
        t0 = time.monotonic()
        self.farm.advance(ns, n)  # as for feed-monitor: changed in the warm-up too
        with open(self.work / f"{label}.log", "w") as err:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "reader",
                    "--db",
                    str(db),
                    "--urls",
                    str(urls),
                    "--workers",
                    str(workers),
                    "--timeout",
                    str(self.args.timeout),
                    "--advance",
                    advance,
                    "--out",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=CHILD_TIMEOUT,
                cwd=REPO,
            )
        if proc.returncode != 0 or not out.exists():
            tail = (self.work / f"{label}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{label}: reader exited with {proc.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        result.update(workers=workers, farm=self.farm.stats(ns), process_s=time.monotonic() - t0)
        return result


def say(msg: str) -> None:
    print(msg, flush=True)


def compare(b: Bench) -> list[dict[str, Any]]:
    """feed-monitor alone, every worker setting at every feed count, interleaved."""
    out: list[dict[str, Any]] = []
    for n in b.args.feeds:
        for rnd in range(b.args.repeat):
            for workers in b.args.workers_ours:
                # One database and farm namespace per feed count: after the first run,
                # every warm-up is a poll cycle like the measured one, not first polls.
                label = f"cmp-{n}-w{workers}-{rnd}"
                r = b.ours(b.work / f"cmp-{n}.db", f"cmp{n}", n, workers, label)
                r.update(round=rnd)
                out.append(r)
                say(
                    f"  {n:>5} feeds, scheduler.workers {workers!s:>4} (round {rnd + 1}): "
                    f"{r['wall_s']:6.2f} s (CPU {r['cpu_s']:.1f} s)"
                )
    say("")
    say("| feeds | scheduler.workers | cycle wall (each round) | median | ÷ fastest median |")
    say("|---:|---|---|---:|---:|")
    for n in b.args.feeds:
        medians = {}
        for workers in b.args.workers_ours:
            walls = sorted(r["wall_s"] for r in out if (r["feeds"], r["workers"]) == (n, workers))
            medians[workers] = (
                walls[len(walls) // 2]
                if len(walls) % 2
                else sum(walls[len(walls) // 2 - 1 : len(walls) // 2 + 1]) / 2
            )
        best = min(medians.values())
        for workers in b.args.workers_ours:
            walls = [
                f"{r['wall_s']:.2f} s" for r in out if (r["feeds"], r["workers"]) == (n, workers)
            ]
            say(
                f"| {n:,} | {workers} | {', '.join(walls)} | {medians[workers]:.2f} s | "
                f"{medians[workers] / best:.2f}x |"
            )
    return out


def growth(b: Bench) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Tuning at the first step, then every step with the best worker counts."""
    res: dict[str, list[dict[str, Any]]] = {"ours": [], "reader": []}
    ours_db, reader_db = b.work / "ours.db", b.work / "reader.sqlite"
    first = b.args.feeds[0]
    tuned: dict[str, Any] = {"feeds": first, "ours": [], "reader": []}
    say(f"tuning at {first} feeds (one process per worker count, each warm-up + measured)")
    for workers in b.args.workers_ours:
        r = b.ours(ours_db, "ours", first, workers, f"ours-{first}-w{workers}")
        tuned["ours"].append(r)
        say(
            f"  feed-monitor, scheduler.workers {workers:>3}: {r['wall_s']:6.2f} s "
            f"(CPU {r['cpu_s']:.1f} s)"
        )
    for workers in [] if b.args.no_reader else b.args.workers_reader:
        r = b.reader(reader_db, "reader", first, workers, f"reader-{first}-w{workers}")
        tuned["reader"].append(r)
        say(
            f"  reader, update_feeds(workers={workers:>3}): {r['wall_s']:6.2f} s "
            f"(CPU {r['cpu_s']:.1f} s)"
        )
    best_o = min(tuned["ours"], key=lambda r: r["wall_s"])
    best_r = min(tuned["reader"], key=lambda r: r["wall_s"]) if tuned["reader"] else None
    tuned["best_ours"] = best_o["workers"]
    tuned["best_reader"] = best_r["workers"] if best_r else None
    say(
        f"best: feed-monitor scheduler.workers {best_o['workers']}"
        + (f", reader workers {best_r['workers']}" if best_r else "")
    )
    res["ours"].append(best_o)
    if best_r:
        res["reader"].append(best_r)
    say("growth")
    for n in b.args.feeds[1:]:
        o = b.ours(ours_db, "ours", n, best_o["workers"], f"ours-{n}")
        res["ours"].append(o)
        if best_r:
            p = b.reader(reader_db, "reader", n, best_r["workers"], f"reader-{n}")
            res["reader"].append(p)
    for i, o in enumerate(res["ours"]):
        line = f"  {o['feeds']:>5} feeds: feed-monitor {o['wall_s']:6.2f} s, CPU {o['cpu_s']:.1f} s"
        if res["reader"]:
            p = res["reader"][i]
            line += f", reader {p['wall_s']:6.2f} s, ratio {p['wall_s'] / o['wall_s']:.1f}x"
        say(line)
    return tuned, res


_FRAME = re.compile(r"(.*) \((.*?):\d+\)$")


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Shares of py-spy's samples: inclusive per function of monitor/ (file:function),
    and self time per package (the module where the sampled frame was)."""
    total = 0
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        keys = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame)
            keys.append(f"{m[2]}:{m[1]}" if m else frame)
        for k in set(keys):
            if k.startswith("monitor/"):
                inclusive[k] += n
        where = keys[-1].split(":", 1)[0]
        package = where.split("/", 1)[0] if "/" in where else where.removesuffix(".py")
        by_package[package] += n
    share = (lambda v: round(100 * v / total, 1)) if total else (lambda v: 0.0)
    return {
        "samples": total,
        "inclusive": [(k, share(v)) for k, v in inclusive.most_common(top)],
        "self_by_package": [(k, share(v)) for k, v in by_package.most_common(12)],
    }


def table(res: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| feeds | client | workers | cycle wall | alerts delivered by | CPU | RSS after "
        "| peak RSS | 304 / 200 / failed | new items | reader ÷ feed-monitor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for i, o in enumerate(res["ours"]):
        p = res["reader"][i] if res["reader"] else None
        for r in (o, p):
            if r is None:
                continue
            oc = r["outcomes"]
            not_mod = oc.get("not-modified", 0)
            ok = sum(v for k, v in oc.items() if k.startswith("ok"))
            failed = r["feeds"] - not_mod - ok
            ratio = f"{p['wall_s'] / o['wall_s']:.1f}x" if r is o and p is not None else ""
            drained = f"{r['drained_s']:.2f} s" if r.get("drained_s") is not None else "-"
            lines.append(
                f"| {r['feeds']:,} | {r['client']} | {r['workers']} | {r['wall_s']:.2f} s | "
                f"{drained} | {r['cpu_s']:.1f} s | {r['rss_mb']:.0f} MB | "
                f"{r['peak_rss_mb']:.0f} MB | {not_mod} / {ok} / {failed} | "
                f"{r['new_items']:,} | {ratio} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="200 and 500 feeds, 300 rules, fewer worker counts: a smoke run",
    )
    p.add_argument("--feeds", default="500,1000,2500,5000", help="feed counts, ascending")
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument(
        "--workers-ours",
        default="16,32,64",
        help="scheduler.workers to try; 'auto': the default config (workers and per-host "
        "limits as installed)",
    )
    p.add_argument("--workers-reader", default="4,16,64", help="reader workers to try")
    p.add_argument("--no-reader", action="store_true", help="feed-monitor alone")
    p.add_argument(
        "--plain-rules",
        action="store_true",
        help="every rule with aliases: false and exact: true (matching as before aliases)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="fetch timeout, both clients")
    p.add_argument("--latency", default="0.01-0.05", help="farm answer delay range, seconds")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample one more daemon cycle at the largest count with py-spy",
    )
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="feed-monitor alone: each --workers-ours setting at each --feeds count",
    )
    p.add_argument("--repeat", type=int, default=1, help="--compare: rounds, interleaved")
    # The reader child (this same file in a process of its own).
    p.add_argument("--child", choices=("reader",), help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--urls", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--advance", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "reader":
        child_reader(args.db, args.urls, args.workers, args.timeout, args.advance, args.out)
        return 0
    if args.quick:
        args.feeds, args.rules = "200,500", 300
        args.workers_ours, args.workers_reader = "16,64", "4,16"
    args.feeds = sorted(int(x) for x in args.feeds.split(","))
    args.workers_ours = [x if x == "auto" else int(x) for x in args.workers_ours.split(",")]
    args.workers_reader = [int(x) for x in args.workers_reader.split(",")]
    m = machine()
    say(f"machine: {machine_line(m)}")
    if args.compare:
        return main_compare(args, m)
    import reader as reader_pkg

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-cycle-"))
    profile: dict[str, Any] | None = None
    try:
        with FarmProcess(max(args.feeds), args.latency, hang=max(20.0, args.timeout * 4)) as farm:
            say(
                f"farm: 80 % 304, 15 % changed 50-item RFI feeds ({farm.source}), 5 % "
                f"faults; answer delay {args.latency} s; {args.rules} rules; timeout "
                f"{args.timeout:g} s; reader {reader_pkg.__version__}"
            )
            b = Bench(args, farm, work)
            tuned, res = growth(b)
            if args.profile:
                n = args.feeds[-1]
                raw = work / "py-spy.txt"
                r = b.ours(
                    work / "ours.db", "ours", n, tuned["best_ours"], f"profile-{n}", profile=raw
                )
                profile = {"feeds": n, "wall_s": r["wall_s"], **summarize_profile(raw)}
                say(
                    f"profiled cycle at {n} feeds ({r['wall_s']:.1f} s under py-spy): "
                    f"{profile['samples']} samples"
                )
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    for line in table(res):
        say(line)
    if profile:
        say("\nwhere the daemon's GIL time goes (py-spy --gil), inclusive, monitor/:")
        for k, v in profile["inclusive"][:15]:
            say(f"  {v:5.1f} %  {k}")
        say(
            "self time by package: "
            + ", ".join(f"{k} {v} %" for k, v in profile["self_by_package"])
        )
    figures = {
        "machine": m,
        "reader_version": reader_pkg.__version__,
        "farm": {
            "latency": args.latency,
            "timeout": args.timeout,
            "source": farm.source,
            "hang": farm.hang,
        },
        "rules": args.rules,
        "tuning": tuned,
        "growth": res,
        "profile": profile,
        "elapsed_s": time.monotonic() - started,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    say(f"\n(elapsed {figures['elapsed_s']:.0f} s)")
    return 0


def main_compare(args: argparse.Namespace, m: dict[str, Any]) -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-cycle-"))
    try:
        with FarmProcess(max(args.feeds), args.latency, hang=max(20.0, args.timeout * 4)) as farm:
            say(
                f"farm: 80 % 304, 15 % changed 50-item RFI feeds ({farm.source}), 5 % "
                f"faults; answer delay {args.latency} s; {args.rules} rules; timeout "
                f"{args.timeout:g} s; feed-monitor only"
            )
            results = compare(Bench(args, farm, work))
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": m,
                    "rules": args.rules,
                    "timeout": args.timeout,
                    "compare": results,
                    "elapsed_s": time.monotonic() - started,
                },
                indent=1,
            )
        )
    say(f"\n(elapsed {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
