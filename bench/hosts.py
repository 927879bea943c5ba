"""Politeness without head-of-line blocking: one poll cycle of the same feeds on one host
and spread over many, the daemon with its default config, in one run.

    python bench/hosts.py [--feeds 1000] [--hosts 64] [--hang 5] [--rules 300]
                          [--repeat 1] [--baseline DIR] [--json PATH]

One feed farm (bench/support/farm.py) serves the cycle benchmark's mix, except that every
fault hangs: 80 % answer 304, 15 % are changed 50-item RFI feeds, 5 % read the request and
answer nothing for ``--hang`` seconds, then close (a stalled route of a self-hosted RSSHub).
The farm listens on 127.0.0.1 and on 127.0.1.1 ... 127.0.1.N (``--hosts``); the feeds are
either all on 127.0.0.1 ("one host") or spread over the N addresses in turn ("spread").

The daemon (``python -m monitor run``, a process of its own) runs with the default config
but for ``defaults.allow_private_addresses: true`` (the farm is on loopback addresses),
the feeds, an interval of 1 h and a tick of 0.2 s (so it polls only when a cycle makes
every feed due, and starts within 0.2 s). A cycle lasts until every feed's poll is
recorded (as bench/cycle.py measures it: warm-up cycle, then the measured one).

The farm's addresses are loopback addresses, which get ``private_host_concurrency`` (16)
requests at once by default. So each layout runs twice:

- **loopback**: the defaults as they are (16 per host);
- **as public**: ``private_host_concurrency`` set to ``per_host_concurrency`` (2), so each
  address is limited as a public host of that name would be.

``--baseline DIR`` runs a third pair with the daemon of another source tree (the code
before, e.g. ``git archive main | tar -x -C DIR``) and its default config: a baseline
from the same run.

Prints each cycle and the ratio one host ÷ spread for each; the goal is at most 2x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import Daemon, FarmProcess, feed_id, machine, machine_line  # noqa: E402
from bench.support.config import write_config  # noqa: E402
from bench.support.watchlist import watch_rules  # noqa: E402
from monitor.config.models import Defaults  # noqa: E402

PUBLIC = Defaults().per_host_concurrency


def say(msg: str) -> None:
    print(msg, flush=True)


def run_cycle(
    farm: FarmProcess,
    work: Path,
    label: str,
    n: int,
    hosts: list[str],
    rules: list[dict[str, Any]],
    kind: str,
    source: Path | None,
) -> dict[str, Any]:
    """The daemon over ``n`` feeds on ``hosts`` (in turn): warm-up, then a measured cycle."""
    ns = label
    feeds = [{"id": feed_id(i), "url": farm.url(ns, i, hosts[i % len(hosts)])} for i in range(n)]
    defaults: dict[str, Any] = {"allow_private_addresses": True, "interval": "1h"}
    if kind == "public":
        defaults["private_host_concurrency"] = PUBLIC
    db = work / f"{label}.db"
    cfg = write_config(
        work / f"{label}.yaml",
        database=f"sqlite:///{db}",
        feeds=feeds,
        rules=rules,
        defaults=defaults,
        scheduler={"tick": 0.2},
    )
    farm.advance(ns, n)
    with Daemon(cfg, db, work / f"{label}.log", *([source] if source else [])) as d:
        d.wait_started(n)
        warm = d.cycle(n, timeout=900)
        farm.advance(ns, n)
        farm.stats(ns)  # reset
        result = d.cycle(n, timeout=900)
    result.update(label=label, hosts=len(hosts), warmup_s=warm["wall_s"], farm=farm.stats(ns))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--hosts", type=int, default=64, help="host addresses of the spread layout")
    p.add_argument("--hang", type=float, default=5.0, help="seconds a hanging feed stalls")
    p.add_argument("--rules", type=int, default=300)
    p.add_argument("--latency", default="0.01-0.05", help="farm answer delay range, seconds")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the four runs, interleaved")
    p.add_argument("--only", choices=("loopback", "public"), help="run one of the two limits")
    p.add_argument(
        "--baseline", type=Path, help="source tree of the code to compare with (its defaults)"
    )
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    args = p.parse_args(argv)
    say(f"machine: {machine_line(machine())}")
    rules = watch_rules(args.rules)
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-hosts-"))
    spread = [f"127.0.1.{i}" for i in range(1, args.hosts + 1)]
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    kinds = [k for k in ("loopback", "public") if args.only in (None, k)]
    if args.baseline:
        kinds.append("baseline")
    try:
        with FarmProcess(
            args.feeds, args.latency, hang=args.hang, hosts=args.hosts, faults="timeout"
        ) as farm:
            say(
                f"farm: {args.feeds} feeds, 80 % 304, 15 % changed RFI feeds, 5 % hang "
                f"{args.hang:g} s; answer delay {args.latency} s; {args.rules} rules; "
                f"spread over {args.hosts} hosts or all on 127.0.0.1"
            )
            for rnd in range(args.repeat):
                for kind in kinds:
                    for layout, hosts in (("spread", spread), ("one", ["127.0.0.1"])):
                        label = f"{kind}-{layout}-{rnd}"
                        r = run_cycle(
                            farm,
                            work,
                            label,
                            args.feeds,
                            hosts,
                            rules,
                            kind,
                            args.baseline if kind == "baseline" else None,
                        )
                        r.update(kind=kind, layout=layout, round=rnd)
                        results.append(r)
                        oc = r["outcomes"]
                        say(
                            f"  {kind:8} {layout:6} ({len(hosts):>2} hosts): cycle "
                            f"{r['wall_s']:6.2f} s, CPU {r['cpu_s']:5.1f} s, outcomes "
                            f"{dict(sorted(oc.items()))}"
                        )
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    say("| limit per host | round | spread cycle | one host cycle | one ÷ spread |")
    say("|---|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {}
    for kind in kinds:
        limit = {"public": PUBLIC, "baseline": "its default"}.get(
            kind, Defaults().private_host_concurrency
        )
        for rnd in range(args.repeat):
            s, o = (
                next(r for r in results if (r["kind"], r["layout"], r["round"]) == (kind, lay, rnd))
                for lay in ("spread", "one")
            )
            ratio = o["wall_s"] / s["wall_s"]
            ratios.setdefault(kind, []).append(ratio)
            say(
                f"| {kind} ({limit}) | {rnd + 1} | {s['wall_s']:.2f} s (CPU {s['cpu_s']:.1f} s) "
                f"| {o['wall_s']:.2f} s (CPU {o['cpu_s']:.1f} s) | {ratio:.2f}x |"
            )
    figures = {
        "machine": machine(),
        "feeds": args.feeds,
        "hosts": args.hosts,
        "hang": args.hang,
        "rules": args.rules,
        "latency": args.latency,
        "results": results,
        "ratios": ratios,
        "elapsed_s": time.monotonic() - started,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    say(f"\n(elapsed {figures['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
