"""Fan-out: the cost of a poll whose articles other feeds carry too, 1 of them against 1,000.

    python bench/fanout.py [--quick] [--carriers 1,1000] [--rounds 12] [--repeats 4]
                           [--rules 200] [--profile PATH] [--daemon N] [--json PATH]

A poll drives the store directly (``ItemStore.ingest``, in this process, a real SQLite
file per case in a temporary folder; no HTTP: fetching and parsing cost the same in
every case). Each case is a database where every article of the feed polled is already
carried by N other feeds, N from ``--carriers``:

- set-up (not measured): ``--rounds`` groups of 49 RFI-shaped articles
  (bench/support/articles.py, rendered as RSS by the farm's ``rss`` and read by the
  daemon's parser), each group stored by one poll of the feed ``carrier-0000`` (its
  matches and alerts written as the daemon writes them), then recorded as seen in
  ``carrier-0001`` ... ``carrier-<N-1>`` too, as their polls would leave it
  (``item_feeds`` rows);
- measured, round by round and case by case in turn (so both share the machine's noise):
  the feed ``target`` polls a group: first a **first sighting** (every article new to
  this feed, so each is matched again with the feeds it was seen in: a rule limited to
  some feeds may now apply), then ``--repeats`` **repeat** polls (the same 49 articles,
  nothing new: what most polls of a feed that changed are).

The rules: ``--rules`` of a watch list (bench/support/watchlist.py) and four on the
articles' stories, one of them limited to ``carrier-0000`` and one to a feed that carries
nothing. Per-poll CPU (``time.process_time``) and wall time, medians over the rounds,
for each case and kind of poll; the ratio of the largest N to the smallest is the
figure, goal at most 1.3. ``--profile`` writes cProfile stats of the measured polls of
the largest case.

``--daemon N`` also runs the daemon (``python -m monitor run``, bench/support/daemon.py)
over N feeds of the farm, twice: N feeds all carrying the same 49 articles
(**shared**), then N feeds carrying 49 articles each that no other feed carries
(**apart**). Each run's first polls store one set of 49 articles every feed lists (not
measured); then every feed publishes its new articles and one cycle is measured: wall
time until every poll is recorded, the daemon's CPU time. The shared cycle stores 49
articles and records where they were seen; the apart one stores and matches 49 x N: a
shared cycle that costs more than an apart one pays for the fan-out.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from bench.support import (  # noqa: E402
    Daemon,
    FarmProcess,
    db_scalar,
    farm_config,
    feed_id,
    machine,
    machine_line,
    rss,
    watch_rules,
)
from bench.support.articles import rfi_like_articles  # noqa: E402
from monitor.match.engine import compile_rules  # noqa: E402
from monitor.parse import parse_feed  # noqa: E402
from monitor.store import Store  # noqa: E402
from monitor.store.rows import item_rows  # noqa: E402
from monitor.store.schema import item_feeds  # noqa: E402
from monitor.types import Item, MatchingFunctions, RuleSpec  # noqa: E402

PER_FEED = 49  # articles a feed lists (as in the measurement that asked for this bench)
NOW = 1_700_000_000_000
GOAL = 1.3


def rule_specs(count: int) -> list[RuleSpec]:
    specs = [
        RuleSpec(
            name=r["name"],
            query=r.get("query"),
            any=tuple(r.get("any", ())),
            all=tuple(r.get("all", ())),
            none=tuple(r.get("none", ())),
            notify=("out",),
        )
        for r in watch_rules(count)
    ]
    specs += [
        RuleSpec(name="russia", any=("普京", "俄罗斯"), notify=("out",)),
        RuleSpec(name="ukraine", any=("乌克兰",), notify=("out",)),
        RuleSpec(name="trade-here", any=("关税", "贸易"), feeds=("carrier-0000",), notify=("out",)),
        RuleSpec(name="china-elsewhere", any=("中国",), feeds=("elsewhere",), notify=("out",)),
    ]
    return specs


def groups(rounds: int) -> list[list[Item]]:
    """``rounds`` groups of PER_FEED parsed items, as the feed ``carrier-0000`` lists them."""
    articles = rfi_like_articles(PER_FEED * rounds)
    out = []
    for g in range(rounds):
        part = articles[g * PER_FEED : (g + 1) * PER_FEED]
        body = rss("RFI", [(a.pub_ms, a.title, a.link, a.html) for a in part])
        parsed = parse_feed(body, {}, "carrier-0000", NOW, base_url="https://www.rfi.fr/cn/")
        assert len(parsed.items) == PER_FEED, len(parsed.items)
        out.append(list(parsed.items))
    return out


class Case:
    """One database whose articles ``carriers`` feeds carry."""

    def __init__(self, folder: Path, carriers: int, matching: MatchingFunctions) -> None:
        self.carriers = carriers
        self.store = Store(f"sqlite:///{folder / f'fanout-{carriers}.db'}")
        self.matching = matching
        self.samples: dict[str, list[tuple[float, float]]] = {"first": [], "repeat": []}

    def populate(self, group: list[Item], t: int) -> None:
        self.store.items.ingest("carrier-0000", group, NOW + t, self.matching)
        keys = [it.key for it in group]
        with self.store.engine.begin() as conn:
            ids = [r.id for r in item_rows(conn, keys).values()]
            rows = [
                {"item_id": i, "feed_id": f"carrier-{c:04d}", "first_seen_ms": NOW + t + c}
                for c in range(1, self.carriers)
                for i in ids
            ]
            for start in range(0, len(rows), 5000):
                conn.execute(insert(item_feeds), rows[start : start + 5000])

    def poll(self, kind: str, group: list[Item], t: int) -> None:
        polled = [replace(it, feed_id="target") for it in group]
        c0, w0 = time.process_time(), time.perf_counter()
        stats = self.store.items.ingest("target", polled, NOW + t, self.matching)
        c1, w1 = time.process_time(), time.perf_counter()
        assert stats.new == 0 and stats.updated == 0, stats
        self.samples[kind].append((c1 - c0, w1 - w0))

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"carriers": self.carriers}
        for kind, samples in self.samples.items():
            out[kind] = {
                "polls": len(samples),
                "cpu_ms": 1000 * statistics.median(c for c, _ in samples),
                "wall_ms": 1000 * statistics.median(w for _, w in samples),
            }
        return out


def daemon_cycles(n: int, rules: int, folder: Path) -> dict[str, Any]:
    """The daemon over ``n`` farm feeds: a cycle of shared articles, one of apart ones."""
    articles = rfi_like_articles(PER_FEED * (n + 2), seed=7)

    def doc(g: int) -> bytes:
        part = articles[g * PER_FEED : (g + 1) * PER_FEED]
        return rss("RFI", [(a.pub_ms, a.title, a.link, a.html) for a in part])

    first, shared = doc(0), doc(1)
    specs = [*watch_rules(rules)]
    specs += [
        {"name": "russia", "any": ["普京", "俄罗斯"], "notify": ["out"]},
        {"name": "ukraine", "any": ["乌克兰"], "notify": ["out"]},
        {"name": "trade-here", "any": ["关税", "贸易"], "feeds": [feed_id(0)], "notify": ["out"]},
        {"name": "china-one", "any": ["中国"], "feeds": [feed_id(n - 1)], "notify": ["out"]},
    ]
    out: dict[str, Any] = {"feeds": n}
    with FarmProcess(0) as farm:
        for case in ("shared", "apart"):
            for i in range(n):
                farm.publish(case, i, first)
            db = folder / f"daemon-{case}.db"
            cfg = farm_config(
                folder / f"daemon-{case}.yaml",
                database=db,
                feeds=[(feed_id(i), farm.url(case, i)) for i in range(n)],
                rules=specs,
                workers=32,
                timeout=10,
                interval="1h",
                tick=0.2,
            )
            with Daemon(cfg, db, folder / f"daemon-{case}.log") as d:
                d.wait_started(n)
                d.idle(600)
                # A feed whose first poll failed has its first poll in the measured
                # cycle: its items are its backlog there, recorded without alerts.
                unfinished = db_scalar(db, "SELECT count(*) FROM feeds WHERE NOT first_poll_done")
                for i in range(n):
                    farm.publish(case, i, shared if case == "shared" else doc(i + 2))
                got = d.cycle(n, timeout=600)
            out[case] = {k: got[k] for k in ("wall_s", "cpu_s", "new_items", "alerts", "outcomes")}
            out[case]["first_poll_failed"] = unfinished
            print(
                f"daemon, {n} feeds, {case}: cycle {got['wall_s']:.1f} s wall, "
                f"{got['cpu_s']:.1f} s CPU; {got['new_items']} new items, {got['alerts']} alerts"
                + (f" ({unfinished} feeds' first polls had failed)" if unfinished else "")
            )
    out["ratio_cpu"] = out["shared"]["cpu_s"] / out["apart"]["cpu_s"]
    out["ratio_wall"] = out["shared"]["wall_s"] / out["apart"]["wall_s"]
    print(
        f"daemon: shared / apart: CPU {out['ratio_cpu']:.2f}x, wall {out['ratio_wall']:.2f}x"
        " (at most 1: carrying the same articles costs no more than carrying others)"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--carriers", default="1,1000", help="other feeds carrying the articles")
    ap.add_argument("--rounds", type=int, default=12, help="groups of articles (first sightings)")
    ap.add_argument("--repeats", type=int, default=4, help="repeat polls after each first one")
    ap.add_argument("--rules", type=int, default=200, help="watch-list rules besides the 4")
    ap.add_argument("--quick", action="store_true", help="6 rounds, 3 repeats")
    ap.add_argument("--profile", type=Path, help="cProfile stats of the largest case's polls")
    ap.add_argument("--daemon", type=int, default=0, metavar="N", help="also the daemon, N feeds")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.repeats = 6, 3
    if args.rounds < 1 or args.repeats < 1:
        ap.error("--rounds and --repeats must be at least 1")
    carriers = sorted({int(x) for x in args.carriers.split(",")})
    specs = rule_specs(args.rules)
    rules = compile_rules(specs)
    notify = {s.name: s.notify for s in specs}
    # As the daemon's Runtime: the rules, their channels, the feeds they are limited to.
    matching = MatchingFunctions(
        rules.match, lambda r: notify.get(r, ()), feeds_named=lambda: rules.feeds_named
    )
    print(machine_line())
    print(
        f"{PER_FEED} articles a poll, {len(specs)} rules; {args.rounds} rounds of a first "
        f"sighting and {args.repeats} repeat polls; carried by {carriers} other feeds"
    )
    data = groups(args.rounds)
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        cases = [Case(Path(tmp), n, matching) for n in carriers]
        t0 = time.monotonic()
        for case in cases:
            for g, group in enumerate(data):
                case.populate(group, g)
        print(f"set-up: {time.monotonic() - t0:.1f} s\n")
        t = len(data)
        for group in data:
            for case in cases:
                profiling = profiler is not None and case is cases[-1]
                if profiling:
                    profiler.enable()  # type: ignore[union-attr]
                t += 1
                case.poll("first", group, t)
                for _ in range(args.repeats):
                    t += 1
                    case.poll("repeat", group, t)
                if profiling:
                    profiler.disable()  # type: ignore[union-attr]
        figures = [c.figures() for c in cases]
        for c in cases:
            c.store.close()
    if profiler is not None:
        profiler.dump_stats(str(args.profile))

    print(f"{'carried by':>12}  {'poll':<8} {'polls':>5}  {'CPU ms':>8}  {'wall ms':>8}")
    for f in figures:
        for kind in ("first", "repeat"):
            k = f[kind]
            print(
                f"{f['carriers']:>12}  {kind:<8} {k['polls']:>5}  {k['cpu_ms']:>8.2f}"
                f"  {k['wall_ms']:>8.2f}"
            )
    low, high = figures[0], figures[-1]
    ratios = {
        kind: {
            "cpu": high[kind]["cpu_ms"] / low[kind]["cpu_ms"],
            "wall": high[kind]["wall_ms"] / low[kind]["wall_ms"],
        }
        for kind in ("first", "repeat")
    }
    worst = max(r["cpu"] for r in ratios.values())
    print()
    for kind, r in ratios.items():
        print(
            f"{kind} poll, {high['carriers']} carriers / {low['carriers']}: "
            f"CPU {r['cpu']:.2f}x, wall {r['wall']:.2f}x"
        )
    verdict = "met" if worst <= GOAL else "NOT met"
    print(f"worst CPU ratio {worst:.2f}x (goal <= {GOAL}x): {verdict}")
    daemon = None
    if args.daemon:
        print()
        with tempfile.TemporaryDirectory(prefix="bench-fanout-daemon-") as tmp:
            daemon = daemon_cycles(args.daemon, args.rules, Path(tmp))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "per_feed": PER_FEED,
                    "rules": len(specs),
                    "rounds": args.rounds,
                    "repeats": args.repeats,
                    "cases": figures,
                    "ratios": ratios,
                    "worst_cpu_ratio": worst,
                    "goal": GOAL,
                    "daemon": daemon,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
