"""The default configuration as installed: against reader's defaults and a tuned one, one run.

    python bench/defaults.py [--quick] [--feeds 1000,5000] [--hosts 64,1] [--rules 100]
                             [--tuned scheduler.workers=64,defaults.per_host_concurrency=64,...]
                             [--json PATH] [--keep]

What people run is the default configuration: this measures it. A feed farm
(bench/support/farm.py, one asyncio process) serves its feeds on 127.0.1.1 to 127.0.1.64
(Linux routes all of 127.0.0.0/8 to the loopback interface, so these are 64 hosts to a
client that limits its requests per host) or, in the second layout, all on 127.0.1.1.
Feed ``i`` is on host ``127.0.1.(i mod hosts + 1)``. The mix, per block of 20 feeds:
80 % answer 304 to a conditional GET, 15 % are changed 50-item RFI feeds of about
270 KB with one new article per cycle, 5 % are faults (HTTP 500, a 5 s stall then a
closed connection, a truncated XML document). Every answer waits 10-50 ms first.

Clients, each as a process of its own per cycle, timed from start to exit (wall), with
the CPU time (user + system, all threads) and peak RSS the system accounts to it:

- **feed-monitor, default**: ``feed-monitor once`` (``python -m monitor once -c ...``)
  with a config that sets only the feeds, the database file (SQLite),
  ``defaults.allow_private_addresses: true`` (the farm is on loopback), an email channel
  to an SMTP server of this benchmark (aiosmtpd on 127.0.0.1, counting the mails it
  receives) and ``--rules`` rules of a watch list (bench/support/watchlist.py) sending to
  it. Nothing else: whatever the defaults are (workers, per-host limits, timeouts,
  delivery), they are what is measured. ``once`` polls every feed, then delivers every
  alert, then exits: its wall time is the whole cycle, mail included.
- **feed-monitor, tuned**: the same with ``--tuned`` added (by default
  ``scheduler.workers`` 64 and 64 requests at once per host, public or private).
- **reader** (lemon24/reader, PyPI) with its defaults: ``make_reader(path)``, then
  ``update_feeds_iter(scheduled=False)`` with its default worker count (one);
  ``scheduled=False`` so that every feed is updated, not only those reader's own
  schedule says are due (with the default ``scheduled=True`` it would update none a
  second time within its hour). It neither matches nor sends mail.

For each layout (``--hosts``) and each feed count (``--feeds``, ascending; databases kept
from count to count): one unmeasured warm-up cycle per client (the first polls of the
feeds new at that count: backlogs stored without alerts, validators learnt; run with
more workers to save time, which leaves the same database), then the measured cycles:
feed-monitor default, feed-monitor tuned (same database), reader. The farm moves on
before each cycle, so in every one the changed feeds have one new article and the others
answer 304 (or fail).

Ratios printed (each between figures of this run): reader ÷ feed-monitor default (goal:
at least 5x at 5,000 feeds), feed-monitor default ÷ tuned (goal: at most 1.25 at 5,000
feeds) and, for the default config, one host ÷ 64 hosts (goal: at most 2 at 5,000).
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
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import (  # noqa: E402
    FarmProcess,
    SmtpSink,
    feed_id,
    machine,
    machine_line,
    watch_rules,
)

CHILD_TIMEOUT = 3600.0  # seconds: a cycle that takes longer is a failure, not a figure
HANG = 5.0  # seconds a stalled feed holds its connection before closing it
NEW_PER_CYCLE = 1  # new articles per changed feed and cycle
WARM_READER_WORKERS = 16  # the unmeasured first polls only
MAX_HOSTS = 64
TUNED = "scheduler.workers=64,defaults.per_host_concurrency=64,defaults.private_host_concurrency=64"
NOT_MODIFIED = {"not-modified", "not_modified"}


def host(index: int, hosts: int) -> str:
    """The loopback address feed ``index`` is on when the farm spreads over ``hosts``."""
    return f"127.0.1.{index % hosts + 1}"


def dotted(text: str) -> dict[str, Any]:
    """``a.b=1,c=x`` as ``{"a": {"b": 1}, "c": "x"}`` (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--tuned: {part!r} is not KEY=VALUE")
        *path, last = key.strip().split(".")
        node = out
        for k in path:
            node = node.setdefault(k, {})
        node[last] = yaml.safe_load(value)
    return out


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merged(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def write_config(
    path: Path,
    db: Path,
    feeds: list[tuple[str, str]],
    rules: list[dict[str, Any]],
    mail_url: str,
    extra: dict[str, Any],
) -> Path:
    """The default config but for the feeds, the database, loopback allowed, one email
    channel and the rules; ``extra`` (dotted settings) on top."""
    cfg: dict[str, Any] = {
        "database": f"sqlite:///{db}",
        "defaults": {"allow_private_addresses": True},
        "feeds": [{"id": fid, "url": url} for fid, url in feeds],
        "channels": {"mail": {"urls": [mail_url]}},
        "rules": [{**r, "notify": ["mail"]} for r in rules],
    }
    cfg = merged(cfg, extra)
    path.write_text(
        yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False, width=200), encoding="utf-8"
    )
    return path


def default_settings() -> dict[str, Any]:
    """The defaults of the sections that decide the speed, as this checkout has them."""
    from monitor.config.models import Config

    dump = Config().model_dump(mode="json")
    return {k: dump[k] for k in ("scheduler", "delivery", "defaults") if k in dump}


def run_process(argv: list[str], log: Path, out: Path, timeout: float) -> dict[str, Any]:
    """Run ``argv`` to its end; wall time, and CPU time and peak RSS from its rusage."""
    with open(log, "w") as err, open(out, "w") as stdout:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=stdout, stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        why = f"stopped after {timeout:.0f} s" if wall >= timeout else f"exit {proc.returncode}"
        raise SystemExit(f"{' '.join(argv[:4])} ...: {why}\n{tail}")
    return {
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_rss_mb": ru.ru_maxrss / 1024,
    }


_SUMMARY = re.compile(
    r"items: (\d+) new, (\d+) updated, (\d+) repeats; alerts: (\d+) created, (\d+) sent, "
    r"(\d+) failed, (\d+) dead"
)


def parse_once(text: str) -> dict[str, Any]:
    """Outcomes per feed and the totals out of ``feed-monitor once``'s output."""
    outcomes: Counter[str] = Counter()
    summary = None
    for line in text.splitlines():
        m = _SUMMARY.search(line)
        if m:
            summary = [int(x) for x in m.groups()]
            continue
        fid, sep, rest = line.partition(": ")
        if sep and re.fullmatch(r"f\d{5}", fid):
            outcomes[rest.split(":", 1)[0].strip()] += 1
    if summary is None:
        raise SystemExit(f"no summary line in feed-monitor once's output:\n{text[-2000:]}")
    new, updated, _repeats, created, sent, failed, dead = summary
    return {
        "outcomes": dict(outcomes),
        "feeds": sum(outcomes.values()),
        "new_items": new,
        "updated_items": updated,
        "alerts": created,
        "sent": sent,
        "send_failed": failed + dead,
    }


# --- reader, in processes of its own --------------------------------------------------------


def child_reader(db: str, urls_file: str, warm: bool, out: str) -> None:
    """reader with its defaults: one ``update_feeds_iter(scheduled=False)``; with ``warm``
    (the unmeasured first polls) the missing feeds are added and more workers update."""
    from reader import UpdatedFeed, make_reader

    r = make_reader(db)
    if warm:
        known = {f.url for f in r.get_feeds()}
        for url in Path(urls_file).read_text().split():
            if url not in known:
                r.add_feed(url)
    outcomes: Counter[str] = Counter()
    new = 0
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    it = (
        r.update_feeds_iter(scheduled=False, workers=WARM_READER_WORKERS)
        if warm
        else r.update_feeds_iter(scheduled=False)  # reader's default worker count
    )
    for _url, value in it:
        if value is None:
            outcomes["not-modified"] += 1
        elif isinstance(value, UpdatedFeed):
            outcomes["ok"] += 1
            new += value.new
        else:
            outcomes[type(value).__name__] += 1
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    update_s = time.perf_counter() - t0
    r.close()
    Path(out).write_text(
        json.dumps(
            {
                "outcomes": dict(outcomes),
                "feeds": sum(outcomes.values()),
                "new_items": new,
                "update_s": update_s,
                "update_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            }
        )
    )


# --- the parent -----------------------------------------------------------------------------


def say(msg: str) -> None:
    print(msg, flush=True)


class Bench:
    def __init__(
        self, args: argparse.Namespace, farm: FarmProcess, sink: SmtpSink, work: Path
    ) -> None:
        self.args = args
        self.farm = farm
        self.sink = sink
        self.work = work
        self.rules = watch_rules(args.rules)
        self.tuned = dotted(args.tuned)
        self.runs: list[dict[str, Any]] = []

    def once(self, cfg: Path, label: str) -> dict[str, Any]:
        out = self.work / f"{label}.out"
        r = run_process(
            [sys.executable, "-m", "monitor", "once", "-c", str(cfg)],
            self.work / f"{label}.log",
            out,
            CHILD_TIMEOUT,
        )
        return {**r, **parse_once(out.read_text(errors="replace"))}

    def reader(self, db: Path, urls: Path, warm: bool, label: str) -> dict[str, Any]:
        out = self.work / f"{label}.json"
        r = run_process(
            [
                sys.executable,
                __file__,
                "--child",
                "reader",
                "--db",
                str(db),
                "--urls",
                str(urls),
                *(["--warm"] if warm else []),
                "--out",
                str(out),
            ],
            self.work / f"{label}.log",
            self.work / f"{label}.out",
            CHILD_TIMEOUT,
        )
        return {**r, **json.loads(out.read_text())}

    def step(self, hosts: int, n: int) -> None:
        """Warm-ups, then the measured cycles of every client, at ``n`` feeds on ``hosts``."""
        farm, work = self.farm, self.work
        ns_fm, ns_rd = f"fm{hosts}", f"rd{hosts}"
        fm_db, rd_db = work / f"fm-h{hosts}.db", work / f"reader-h{hosts}.sqlite"
        feeds = [(feed_id(i), farm.url(ns_fm, i, host(i, hosts))) for i in range(n)]
        url = self.sink.apprise_url()
        configs = {
            "default": write_config(
                work / f"default-h{hosts}-{n}.yaml", fm_db, feeds, self.rules, url, {}
            ),
            "tuned": write_config(
                work / f"tuned-h{hosts}-{n}.yaml", fm_db, feeds, self.rules, url, self.tuned
            ),
        }
        urls = work / f"reader-h{hosts}-{n}.urls"
        urls.write_text("\n".join(farm.url(ns_rd, i, host(i, hosts)) for i in range(n)))
        t0 = time.monotonic()
        farm.advance(ns_fm, n)
        self.once(configs["tuned"], f"warm-fm-h{hosts}-{n}")
        farm.advance(ns_rd, n)
        self.reader(rd_db, urls, True, f"warm-reader-h{hosts}-{n}")
        say(f"  {n:>5} feeds on {hosts} host(s): warm-ups {time.monotonic() - t0:.0f} s")
        for config, cfg in configs.items():
            farm.advance(ns_fm, n)
            farm.stats(ns_fm)  # reset
            self.sink.clear()
            r = self.once(cfg, f"{config}-h{hosts}-{n}")
            r.update(mails=len(self.sink.mails), farm=farm.stats(ns_fm))
            self.add(hosts, n, "feed-monitor", config, r)
        farm.advance(ns_rd, n)
        farm.stats(ns_rd)
        r = self.reader(rd_db, urls, False, f"reader-h{hosts}-{n}")
        r.update(mails=None, alerts=None, farm=farm.stats(ns_rd))
        self.add(hosts, n, "reader", "default", r)

    def add(self, hosts: int, n: int, client: str, config: str, r: dict[str, Any]) -> None:
        r.update(hosts=hosts, feeds=n, client=client, config=config)
        self.runs.append(r)
        mails = (
            f", {r['mails']} mails of {r['alerts']} alerts" if r.get("mails") is not None else ""
        )
        say(
            f"    {client} {config}: {r['wall_s']:7.2f} s (CPU {r['cpu_s']:.1f} s, peak "
            f"{r['peak_rss_mb']:.0f} MB, {r['new_items']} new items{mails})"
        )


def find(
    runs: list[dict[str, Any]], hosts: int, feeds: int, client: str, config: str = "default"
) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in runs
            if r["hosts"] == hosts
            and r["feeds"] == feeds
            and r["client"] == client
            and r["config"] == config
        ),
        None,
    )


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layout and feed count: reader ÷ default, default ÷ tuned, and one host ÷ 64
    hosts for the default config (where both layouts ran)."""
    out = []
    layouts = sorted({r["hosts"] for r in runs}, reverse=True)
    for n in sorted({r["feeds"] for r in runs}):
        for h in layouts:
            d = find(runs, h, n, "feed-monitor")
            t = find(runs, h, n, "feed-monitor", "tuned")
            p = find(runs, h, n, "reader")
            if d is None:
                continue
            out.append(
                {
                    "hosts": h,
                    "feeds": n,
                    "reader_over_default": p["wall_s"] / d["wall_s"] if p else None,
                    "default_over_tuned": d["wall_s"] / t["wall_s"] if t else None,
                }
            )
        many, one = find(runs, max(layouts), n, "feed-monitor"), find(runs, 1, n, "feed-monitor")
        if many and one and max(layouts) > 1:
            out.append(
                {
                    "hosts": f"1 ÷ {max(layouts)}",
                    "feeds": n,
                    "one_over_many": one["wall_s"] / many["wall_s"],
                }
            )
    return out


def table(runs: list[dict[str, Any]], hosts: int) -> list[str]:
    """The markdown table of one layout."""
    lines = [
        "| feeds | client | config | wall | CPU | peak RSS | 304 / 200 / failed | new items "
        "| alerts / mails received | reader ÷ this |",
        "|---:|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in (x for x in runs if x["hosts"] == hosts):
        oc = r["outcomes"]
        not_mod = sum(v for k, v in oc.items() if k in NOT_MODIFIED)
        ok = sum(v for k, v in oc.items() if k.startswith("ok"))
        failed = r["feeds"] - not_mod - ok
        peer = find(runs, hosts, r["feeds"], "reader")
        ratio = f"{peer['wall_s'] / r['wall_s']:.1f}x" if peer and r["client"] != "reader" else ""
        mails = f"{r['alerts']:,} / {r['mails']:,}" if r.get("mails") is not None else "-"
        lines.append(
            f"| {r['feeds']:,} | {r['client']} | {r['config']} | {r['wall_s']:.1f} s | "
            f"{r['cpu_s']:.1f} s | {r['peak_rss_mb']:.0f} MB | {not_mod} / {ok} / {failed} | "
            f"{r['new_items']:,} | {mails} | {ratio} |"
        )
    return lines


def ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for x in rows:
        if "one_over_many" in x:
            out.append(
                f"{x['feeds']:>5,} feeds, default config, {x['hosts']} hosts: "
                f"{x['one_over_many']:.2f}x (goal at 5,000: at most 2)"
            )
            continue
        parts = []
        if x["reader_over_default"] is not None:
            parts.append(f"reader ÷ default {x['reader_over_default']:.1f}x (goal ≥ 5)")
        if x["default_over_tuned"] is not None:
            parts.append(f"default ÷ tuned {x['default_over_tuned']:.2f}x (goal ≤ 1.25)")
        out.append(f"{x['feeds']:>5,} feeds, {x['hosts']} host(s): " + ", ".join(parts))
    return out


def write(path: Path | None, figures: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=1, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 and 1,000 feeds: a smoke run")
    p.add_argument("--feeds", default="1000,5000", help="feed counts, ascending")
    p.add_argument(
        "--hosts", default="64,1", help=f"layouts: hosts the feeds spread over (≤ {MAX_HOSTS})"
    )
    p.add_argument("--rules", type=int, default=100, help="rules of the watch list")
    p.add_argument("--tuned", default=TUNED, help="settings of the tuned config, dotted")
    p.add_argument("--latency", default="0.01-0.05", help="farm answer delay range, seconds")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    # The reader child (this same file in a process of its own).
    p.add_argument("--child", choices=("reader",), help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--urls", help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "reader":
        child_reader(args.db, args.urls, args.warm, args.out)
        return 0
    if args.quick:
        args.feeds = "200,1000"
    args.feeds = sorted(int(x) for x in args.feeds.split(","))
    args.hosts = [int(x) for x in args.hosts.split(",")]
    if not all(1 <= h <= MAX_HOSTS for h in args.hosts):
        p.error(f"--hosts: each between 1 and {MAX_HOSTS}")
    dotted(args.tuned)  # a typo fails here, not after the first warm-up
    m = machine()
    say(f"machine: {machine_line(m)}")
    import reader as reader_pkg

    settings = default_settings()
    say(
        "defaults of this checkout: scheduler "
        + json.dumps(settings.get("scheduler"))
        + "; per host "
        + json.dumps(
            {k: v for k, v in settings.get("defaults", {}).items() if "host_concurrency" in k}
        )
        + f"; tuned: {args.tuned}"
    )
    figures: dict[str, Any] = {
        "machine": m,
        "reader_version": reader_pkg.__version__,
        "farm": {
            "latency": args.latency,
            "hang": HANG,
            "new_per_cycle": NEW_PER_CYCLE,
            "hosts": args.hosts,
        },
        "rules": args.rules,
        "tuned": args.tuned,
        "defaults": settings,
    }
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="feed-monitor-defaults-"))
    try:
        with (
            SmtpSink() as sink,
            FarmProcess(
                max(args.feeds),
                args.latency,
                hang=HANG,
                new_per_cycle=NEW_PER_CYCLE,
                hosts=MAX_HOSTS,
            ) as farm,
        ):
            say(
                f"farm: 80 % 304, 15 % changed 50-item RFI feeds ({farm.source}; "
                f"{NEW_PER_CYCLE} new per cycle), 5 % faults (500, {HANG:g} s stall, broken "
                f"XML); answer delay {args.latency} s; {args.rules} rules mailing to "
                f"127.0.0.1; reader {reader_pkg.__version__}"
            )
            b = Bench(args, farm, sink, work)
            figures["farm"]["source"] = farm.source
            for hosts in args.hosts:
                say(f"{hosts} host(s)")
                for n in args.feeds:
                    b.step(hosts, n)
                    # What is measured so far, should a later step fail or be stopped.
                    write(args.json, {**figures, "runs": b.runs, "partial": True})
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    rows = ratios(b.runs)
    for hosts in args.hosts:
        say(f"\n{hosts} host(s):\n")
        for line in table(b.runs, hosts):
            say(line)
    say("")
    for line in ratio_lines(rows):
        say(line)
    figures.update(runs=b.runs, ratios=rows, elapsed_s=time.monotonic() - started)
    write(args.json, figures)
    say(f"\n(elapsed {figures['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
