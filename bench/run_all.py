"""Runs the whole bench/ suite, collects its figures, writes JSON, markdown and plots.

    python bench/run_all.py            # about 80 minutes; writes docs/benchmarks.md too
    python bench/run_all.py --quick    # a few minutes: bench/results/ only
    python bench/run_all.py --only cycle,memory     # some benches (others: not run)
    python bench/run_all.py --report-only           # re-render from bench/results/latest.json

Every benchmark runs as a process of its own (``--json PATH`` makes each write its
figures), one after another so they do not compete for the 2 cores; its printed output
goes to ``bench/results/<name>.log``. A benchmark that is absent (bench/import.py until
it exists), cannot run here (bench/scale.py without PostgreSQL) or fails is reported as
such, and the rest still run.

Writes:

- ``bench/results/latest.json``: every figure, the machine, what ran and for how long;
- ``bench/results/latest.md``: the summary table (goals and figures);
- plots (matplotlib, Agg backend): ``cycle-growth.png`` (cycle time against feed count,
  feed-monitor and reader), ``rule-cost.png`` (matching cost per item against rule
  count), ``memory.png`` (daemon RSS per cycle), ``defaults.png`` (the default config,
  tuned and reader against feed count); under ``docs/img/`` with the report
  ``docs/benchmarks.md`` on a full run (or with ``--docs``), else under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.support import machine, machine_line  # noqa: E402

RESULTS = BENCH / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # as .ci/run uses


@dataclass
class Spec:
    """One benchmark of the suite and how to run it."""

    name: str
    script: str
    full: list[str]
    quick: list[str]
    timeout: float  # seconds; a benchmark past it is stopped and reported as such
    needs: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    env: dict[str, str] = field(default_factory=dict)


def postgres_url() -> str:
    return (
        os.environ.get("FEED_MONITOR_BENCH_PG")
        or os.environ.get("FEED_MONITOR_TEST_PG")
        or DEFAULT_PG
    )


def scale_database() -> str:
    """The URL bench/scale.py gets: $FEED_MONITOR_BENCH_PG, else the server's ``postgres``
    database, so that scale.py works in ``postgres_bench`` (it uses ``<name>_bench``),
    not in the ``test_bench`` that a scale.py run by hand uses at the same time."""
    if os.environ.get("FEED_MONITOR_BENCH_PG"):
        return os.environ["FEED_MONITOR_BENCH_PG"]
    from sqlalchemy.engine import make_url

    return make_url(postgres_url()).set(database="postgres").render_as_string(hide_password=False)


def postgres_missing() -> str | None:
    """Why bench/scale.py cannot run (it needs a PostgreSQL server), or None."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(postgres_url())
        with socket.create_connection((u.host or "127.0.0.1", u.port or 5432), timeout=2):
            return None
    except (OSError, ValueError) as e:
        return f"no PostgreSQL at {postgres_url()} ({e})"


SPECS = [
    Spec("parse", "parse.py", [], ["--quick"], 600),
    # bench/match.py's own full mode (10,000 items, 3 passes) takes longer than the
    # whole suite may; 2,000 items in one pass still give stable per-item figures.
    Spec(
        "match", "match.py", ["--items", "2000", "--repeat", "1"], ["--quick", "--repeat", "1"], 900
    ),
    Spec("rules", "rules.py", [], ["--quick"], 600),
    Spec("latency", "latency.py", [], ["--alerts", "60"], 300),
    Spec("deliver", "deliver.py", [], ["--quick"], 600),
    Spec("import", "import.py", [], ["--quick"], 600),
    Spec("scale", "scale.py", [], ["--quick"], 900, needs=postgres_missing),
    Spec("cycle", "cycle.py", ["--profile"], ["--quick"], 1500),
    # The default config against reader's defaults and a tuned config, 1,000 and 5,000
    # feeds on 64 loopback hosts and on one: about an hour, most of it reader's serial
    # updates and the 5 s stalls they wait out one by one.
    Spec("defaults", "defaults.py", [], ["--quick"], 6000),
    Spec("memory", "memory.py", [], ["--quick"], 1200),
    Spec("web", "web.py", [], ["--quick"], 600),
    Spec("fanout", "fanout.py", ["--daemon", "1000"], ["--quick"], 900),
]


def say(msg: str) -> None:
    print(msg, flush=True)


def run_one(spec: Spec, quick: bool, extra: list[str]) -> dict[str, Any]:
    """Run one benchmark; its figures (from --json), or why there are none."""
    script = BENCH / spec.script
    out: dict[str, Any] = {"script": f"bench/{spec.script}"}
    if not script.exists():
        return {**out, "status": "absent", "reason": f"bench/{spec.script} does not exist yet"}
    reason = spec.needs()
    if reason:
        return {**out, "status": "skipped", "reason": reason}
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / f"{spec.name}.json"
    json_path.unlink(missing_ok=True)
    log = RESULTS / f"{spec.name}.log"
    args = (spec.quick if quick else spec.full) + extra
    env = {**os.environ, **spec.env}
    if spec.name == "scale":
        args = [*args, "--database", scale_database()]

    def attempt(argv: list[str]) -> tuple[int | None, str, float]:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, str(script), *argv],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=spec.timeout,
            )
            code: int | None = proc.returncode
            text = proc.stdout + ("\n" + proc.stderr if proc.stderr.strip() else "")
        except subprocess.TimeoutExpired as e:
            code = None
            text = (
                (e.stdout or b"").decode(errors="replace")
                if isinstance(e.stdout, bytes)
                else (e.stdout or "")
            )
        return code, text, time.monotonic() - t0

    argv = [*args, "--json", str(json_path)]
    code, text, elapsed = attempt(argv)
    if code == 2 and "--json" in text and "unrecognized arguments" in text:
        # A benchmark without a machine-readable output yet: its printed tables still count.
        argv = list(args)
        code, text, elapsed = attempt(argv)
    log.write_text(text)
    out.update(
        command=" ".join(["python", f"bench/{spec.script}", *argv]).replace(
            str(json_path), f"bench/results/{json_path.name}"
        ),
        seconds=round(elapsed, 1),
        log=f"bench/results/{log.name}",
        tables=table_lines(text),
        text=[line.rstrip() for line in text.strip().splitlines()[-40:]],
    )
    if code is None:
        return {**out, "status": "failed", "reason": f"stopped after {spec.timeout:.0f} s"}
    if code != 0:
        return {
            **out,
            "status": "failed",
            "reason": f"exit {code}: " + " / ".join(text.strip().splitlines()[-3:])[-500:],
        }
    if json_path.exists():
        out["figures"] = json.loads(json_path.read_text())
    return {**out, "status": "ok"}


def table_lines(text: str) -> list[list[str]]:
    """The markdown tables a benchmark printed, each as its lines."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


# --- figures out of the results ------------------------------------------------------------


def _get(d: Any, *path: Any) -> Any:
    for key in path:
        try:
            d = d[key]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def cycle_point(
    results: dict[str, Any], feeds: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    growth = _get(results, "cycle", "figures", "growth") or {}
    ours = next((r for r in growth.get("ours", []) if r["feeds"] == feeds), None)
    peer = next((r for r in growth.get("reader", []) if r["feeds"] == feeds), None)
    return ours, peer


def goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, figure, verdict) rows of the summary."""
    rows: list[tuple[str, str, str]] = []
    growth = _get(results, "cycle", "figures", "growth") or {}
    big = max((r["feeds"] for r in growth.get("ours", [])), default=None)
    if big:
        ours, peer = cycle_point(results, big)
        assert ours is not None and peer is not None
        limit = 60.0
        note = "" if big == 5000 else f" (largest step run: {big:,} feeds)"
        rows.append(
            (
                f"poll cycle of 5,000 feeds ≤ {limit:.0f} s",
                f"{ours['wall_s']:.1f} s{note}",
                "met"
                if ours["wall_s"] <= limit and big >= 5000
                else ("not measured at 5,000" if big < 5000 else "**missed**"),
            )
        )
        ratio = peer["wall_s"] / ours["wall_s"]
        rows.append(
            (
                "≥ 5x faster than reader on the same farm (cycle wall time)",
                f"{ratio:.1f}x (reader {peer['wall_s']:.1f} s, workers {peer['workers']}){note}",
                "not measured at 5,000" if big < 5000 else ("met" if ratio >= 5 else "**missed**"),
            )
        )
        cpu = peer["cpu_s"] / max(ours["cpu_s"], 1e-9)
        rows.append(
            (
                "(for reference) CPU time per cycle, reader ÷ feed-monitor",
                f"{cpu:.1f}x ({peer['cpu_s']:.1f} s against {ours['cpu_s']:.1f} s)",
                "",
            )
        )
    else:
        rows.append(("poll cycle of 5,000 feeds ≤ 60 s", "not run", _status(results, "cycle")))
    rows += defaults_goals(results)
    mem = _get(results, "memory", "figures")
    if mem and mem.get("final"):
        rss = mem["final"]["VmRSS"]
        rows.append(
            (
                f"daemon RSS ≤ 200 MB with {mem['feeds']:,} feeds and {mem['rules']:,} "
                f"rules, after {len(mem['cycles'])} cycles",
                f"{rss:.0f} MB (peak {mem['final']['VmHWM']:.0f} MB; imports alone "
                f"{mem['import_baseline_mb']:.0f} MB)",
                "met"
                if rss <= 200 and mem["feeds"] >= 5000 and mem["rules"] >= 10000
                else ("**missed**" if rss > 200 else "not measured at full size"),
            )
        )
    else:
        rows.append(
            (
                "daemon RSS ≤ 200 MB (5,000 feeds, 10,000 rules)",
                "not run",
                _status(results, "memory"),
            )
        )
    parse = _get(results, "parse", "figures")
    if parse and parse.get("parse_ms"):
        cold = next(iter(parse["parse_ms"].values()))
        stored = parse.get("stored_ms") or {}
        typical = stored.get("5 new, 45 repeats: parse_feed + Store.ingest")
        fresh = stored.get("all 50 new, no rule matches: parse_feed + Store.ingest")
        heavy = stored.get("all 50 new: parse_feed + Store.ingest")
        if typical is not None and fresh is not None:
            worst = max(typical, fresh)
            rows.append(
                (
                    "changed 50-item RFI feed, bytes → stored Items ≤ 10 ms median "
                    "(bench/parse.py: parse, dedupe, store)",
                    f"{typical:.2f} ms with 5 new items, {fresh:.2f} ms with all 50 new "
                    f"(parse_feed alone {cold:.2f} ms)",
                    "met" if worst <= 10 else "**missed**",
                )
            )
        else:
            rows.append(
                (
                    "parse_feed of a 50-item RFI feed ≤ 10 ms (docs/benchmarks-parse.md)",
                    f"{cold:.2f} ms",
                    "met" if cold <= 10 else "**missed**",
                )
            )
        if heavy is not None:
            ing = parse.get("ingest") or {}
            rows.append(
                (
                    "(for reference) the same with rule matching and the outbox in the "
                    f"transaction: all 50 new, {ing.get('rules', '?')} rules matching "
                    f"{ing.get('all_new_matches', '?')} times",
                    f"{heavy:.2f} ms",
                    "",
                )
            )
    lat = _get(results, "latency", "figures")
    if lat and lat.get("p99_ms") is not None:
        rows.append(
            (
                "alert latency p99 ≤ 1,000 ms (bench/latency.py)",
                f"{lat['p99_ms']:.0f} ms",
                "met" if lat["p99_ms"] <= 1000 else "**missed**",
            )
        )
    dlv = _get(results, "deliver", "figures")
    if dlv and dlv.get("plain") and dlv.get("starttls"):
        goal = dlv.get("goal", 5.0)
        speed = min(dlv[k]["ratio"]["msgs_per_s"] for k in ("plain", "starttls"))
        cpu = min(dlv[k]["ratio"]["cpu_per_msg"] for k in ("plain", "starttls"))
        rows.append(
            (
                f"email: ≥ {goal:.0f}x msgs/s and ≥ {goal:.0f}x less CPU per message than "
                "a connection per message (bench/deliver.py, plain and STARTTLS)",
                f"{speed:.1f}x msgs/s, {cpu:.1f}x less CPU (the lower of the two modes)",
                "met" if speed >= goal and cpu >= goal else "**missed**",
            )
        )
    web = _get(results, "web", "figures")
    if web and web.get("pages"):
        label, slowest = max(
            ((k, v["median_ms"]) for k, v in web["pages"].items()), key=lambda kv: kv[1]
        )
        rows.append(
            (
                f"every console page ≤ 300 ms on the server with {web['feeds']:,} feeds "
                f"and {web['alerts']:,} alerts (bench/web.py, median)",
                f"slowest {slowest:.0f} ms ({label})",
                "met" if slowest <= 300 else "**missed**",
            )
        )
    fan = _get(results, "fanout", "figures")
    if fan and fan.get("worst_cpu_ratio") is not None:
        low, high = fan["cases"][0]["carriers"], fan["cases"][-1]["carriers"]
        daemon = fan.get("daemon")
        rows.append(
            (
                f"a poll costs the same whether {low:,} or {high:,} other feeds carry its "
                "articles: CPU ratio ≤ 1.3x (bench/fanout.py)",
                f"{fan['worst_cpu_ratio']:.2f}x"
                + (
                    f"; daemon, {daemon['feeds']:,} feeds sharing 49 articles against "
                    f"not sharing: CPU {daemon['ratio_cpu']:.2f}x"
                    if daemon
                    else ""
                ),
                "met" if fan["worst_cpu_ratio"] <= fan.get("goal", 1.3) else "**missed**",
            )
        )
    return rows


def _status(results: dict[str, Any], name: str) -> str:
    r = results.get(name) or {}
    return f"{r.get('status', 'not run')}: {r.get('reason', '')}".strip(": ")


# --- plots -----------------------------------------------------------------------------------


def plots(results: dict[str, Any], img: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    growth = _get(results, "cycle", "figures", "growth")
    if growth and growth.get("ours"):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for key, label, style in (("ours", "feed-monitor", "o-"), ("reader", "reader", "s--")):
            pts = growth.get(key, [])
            if pts:
                w = pts[0]["workers"]
                ax.plot(
                    [p["feeds"] for p in pts],
                    [p["wall_s"] for p in pts],
                    style,
                    label=f"{label} ({w} workers)",
                )
                ax2.plot([p["feeds"] for p in pts], [p["cpu_s"] for p in pts], style, label=label)
        ax.axhline(60, color="grey", lw=0.8, ls=":", label="goal: 60 s at 5,000")
        ax.set(xlabel="feeds", ylabel="cycle wall time (s)", title="One poll cycle")
        ax2.set(xlabel="feeds", ylabel="CPU time of the process (s)", title="CPU per cycle")
        for a in (ax, ax2):
            a.grid(alpha=0.3)
            a.legend()
            a.set_ylim(bottom=0)
        fig.tight_layout()
        made.append(img / "cycle-growth.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    sets = _get(results, "rules", "figures", "sets")
    if sets:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, rows in sets.items():
            ax.plot([r["rules"] for r in rows], [r["ms_per_item"] for r in rows], "o-", label=name)
        ax.set_xscale("log")
        ax.set(
            xlabel="rules (log scale)",
            ylabel="matching cost per item (ms)",
            title="Matching cost against rule count (RFI items)",
        )
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        made.append(img / "rule-cost.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    mem = _get(results, "memory", "figures")
    if mem and mem.get("cycles"):
        fig, ax = plt.subplots(figsize=(6, 4))
        cycles = mem["cycles"]
        ax.plot(
            [0] + [c["cycle"] for c in cycles],
            [mem["after_warmup"]["VmRSS"]] + [c["rss_mb"] for c in cycles],
            "o-",
            label="daemon RSS",
        )
        ax.axhline(mem["import_baseline_mb"], color="grey", ls="--", lw=0.8, label="imports alone")
        ax.axhline(200, color="red", ls=":", lw=0.8, label="goal: 200 MB")
        ax.set(
            xlabel="cycle (0 = after the warm-up)",
            ylabel="MB",
            title=f"Daemon RSS, {mem['feeds']:,} feeds, {mem['rules']:,} rules",
        )
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        made.append(img / "memory.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    made += defaults_plot(results, img, plt)
    return made


# --- the report ------------------------------------------------------------------------------


def summary_md(results: dict[str, Any]) -> list[str]:
    lines = ["| goal | figure | verdict |", "|---|---|---|"]
    lines += [f"| {g} | {f} | {v} |" for g, f, v in goals(results)]
    return lines


def cycle_md(results: dict[str, Any]) -> list[str]:
    c = _get(results, "cycle", "figures")
    if not c:
        return [f"Not run: {_status(results, 'cycle')}."]
    farm = c["farm"]
    lines = [
        f"`bench/cycle.py`: a feed farm (`bench/support/farm.py`, one asyncio process on "
        f"127.0.0.1, every answer delayed {farm['latency']} s) serves 80 % feeds that "
        f"answer 304 to a conditional GET, 15 % changed 50-item RFI feeds of about 270 KB "
        f"({farm['source']}; "
        "3 new items per cycle, 47 repeats) and 5 % faults (hung until the client's "
        "timeout, HTTP 500, malformed). Each client runs in a process of its own: a warm-up "
        "cycle, then the measured one; the farm moves on before each, so the changed feeds "
        "have new items in both and 80 % of the feeds answer 304. feed-monitor is the "
        "daemon (`python -m monitor run`; SQLite file, "
        f"{c['rules']:,} rules, `scheduler.workers` tuned, `allow_private_addresses: true`, "
        f"timeouts {farm['timeout']:g} s): a cycle makes every feed due at one instant, as an "
        "interval ending does, and lasts until every feed's poll is recorded; it includes "
        "fetching, parsing, storing and matching, while the alerts go out meanwhile "
        '("alerts delivered by": until none was pending). reader '
        f"{c['reader_version']}: `update_feeds(workers=N, scheduled=False)` (SQLite file, "
        f"`session_timeout` {farm['timeout']:g} s); it neither matches nor delivers. CPU is "
        "the process's user+system time during the cycle (all threads); RSS from /proc "
        "after the cycle, and the process's peak.",
        "",
        f"Tuning at {c['tuning']['feeds']:,} feeds (a process per worker count, each a "
        "warm-up and a measured cycle):",
        "",
        "| client | workers | cycle wall | CPU |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("ours", "feed-monitor"), ("reader", "reader")):
        best = c["tuning"][f"best_{key}"]
        for r in c["tuning"][key]:
            mark = " (best)" if r["workers"] == best else ""
            lines.append(
                f"| {label} | {r['workers']}{mark} | {r['wall_s']:.2f} s | {r['cpu_s']:.1f} s |"
            )
    lines += ["", "Growth, with the best worker count of each:", ""]
    sys.path.insert(0, str(BENCH))
    from cycle import table

    lines += table(c["growth"])
    prof = c.get("profile")
    if prof and prof.get("samples"):
        lines += [
            "",
            f"Where the daemon's time goes: one more cycle at {prof['feeds']:,} feeds "
            f"({prof['wall_s']:.1f} s) sampled by py-spy, counting only the thread "
            "that held the GIL (on CPython, what the process spends its one effective "
            f"core on; {prof['samples']:,} samples). Inclusive shares of the functions "
            "in monitor/:",
            "",
            "| share | file:function |",
            "|---:|---|",
        ]
        lines += [f"| {v:.1f} % | `{k}` |" for k, v in prof["inclusive"][:20]]
        lines += [
            "",
            "Self time by package: "
            + ", ".join(f"{k} {v:.1f} %" for k, v in prof["self_by_package"])
            + ".",
        ]
    return lines


# --- bench/defaults.py: the default configuration --------------------------------------------


def _defaults_run(
    runs: list[dict[str, Any]], hosts: int, feeds: int, client: str, config: str = "default"
) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in runs
            if (r["hosts"], r["feeds"], r["client"], r["config"]) == (hosts, feeds, client, config)
        ),
        None,
    )


def defaults_goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The summary rows of bench/defaults.py: at the largest feed count run, reader ÷
    default and default ÷ tuned per layout, and one host ÷ many for the default config."""
    d = _get(results, "defaults", "figures")
    runs = (d or {}).get("runs") or []
    if not runs:
        return [
            (
                "default config ≥ 5x faster than reader's defaults at 5,000 feeds",
                "not run",
                _status(results, "defaults"),
            )
        ]
    big = max(r["feeds"] for r in runs)
    note = "" if big == 5000 else f" (largest step run: {big:,} feeds)"
    layouts = sorted({r["hosts"] for r in runs}, reverse=True)

    def verdict(ok: bool) -> str:
        return "not measured at 5,000" if big < 5000 else ("met" if ok else "**missed**")

    rows: list[tuple[str, str, str]] = []
    for h in layouts:
        o, p = _defaults_run(runs, h, big, "feed-monitor"), _defaults_run(runs, h, big, "reader")
        where = f"{h} hosts" if h > 1 else "one host"
        if o and p:
            ratio = p["wall_s"] / o["wall_s"]
            rows.append(
                (
                    f"default config ≥ 5x faster than reader's defaults, 5,000 feeds on {where} "
                    "(`feed-monitor once`, mail included)",
                    f"{ratio:.1f}x (feed-monitor {o['wall_s']:.1f} s, reader "
                    f"{p['wall_s']:.1f} s){note}",
                    verdict(ratio >= 5),
                )
            )
    for h in layouts:
        o = _defaults_run(runs, h, big, "feed-monitor")
        t = _defaults_run(runs, h, big, "feed-monitor", "tuned")
        where = f"{h} hosts" if h > 1 else "one host"
        if o and t:
            ratio = o["wall_s"] / t["wall_s"]
            rows.append(
                (
                    f"default config within 1.25x of the tuned one, 5,000 feeds on {where}",
                    f"{ratio:.2f}x ({o['wall_s']:.1f} s against {t['wall_s']:.1f} s){note}",
                    verdict(ratio <= 1.25),
                )
            )
    many = _defaults_run(runs, layouts[0], big, "feed-monitor")
    one = _defaults_run(runs, 1, big, "feed-monitor")
    if many and one and layouts[0] > 1:
        ratio = one["wall_s"] / many["wall_s"]
        rows.append(
            (
                f"default config, one host with 5 % stalling within 2x of {layouts[0]} hosts, "
                "5,000 feeds",
                f"{ratio:.2f}x ({one['wall_s']:.1f} s against {many['wall_s']:.1f} s){note}",
                verdict(ratio <= 2),
            )
        )
    return rows


def defaults_md(results: dict[str, Any]) -> list[str]:
    d = _get(results, "defaults", "figures")
    if not d or not d.get("runs"):
        return [f"Not run: {_status(results, 'defaults')}."]
    r = results["defaults"]
    farm = d["farm"]
    settings = d.get("defaults", {})
    sched = ", ".join(
        f"{k} {v}" for k, v in (settings.get("scheduler") or {}).items() if v is not None
    )
    # The corpus as the repository names it, not as the machine that ran found it.
    source = re.sub(r" of /\S*/shared/", " of ../shared/", str(farm.get("source", "?")))
    per_host = ", ".join(
        f"`{k}` {v}"
        for k, v in (settings.get("defaults") or {}).items()
        if k.endswith("host_concurrency")
    )
    lines = [
        f"`{r.get('command', r['script'])}` ({r.get('seconds', 0) / 60:.0f} min; full output "
        f"in `{r.get('log', '')}`). What people run is the default configuration. A feed "
        "farm (`bench/support/farm.py`) serves its feeds on 127.0.1.1 to 127.0.1.64 (Linux "
        "routes all of 127.0.0.0/8 to the loopback interface: 64 hosts to a client that "
        "limits its requests per host) or all on 127.0.1.1; per 20 feeds, 16 answer 304 to "
        "a conditional GET, 3 are changed 50-item RFI feeds of about 270 KB "
        f"({source}) with {farm['new_per_cycle']} new article per cycle, 1 "
        f"is a fault (HTTP 500, a {farm['hang']:g} s stall then a closed connection, a "
        f"truncated XML document); every answer waits {farm['latency']} s first.",
        "",
        "feed-monitor runs `feed-monitor once` (every feed polled, then every alert "
        "delivered, then exit) with a config that sets only the feeds, the SQLite file, "
        "`allow_private_addresses: true`, an email channel to an SMTP server of the "
        f'benchmark (aiosmtpd on 127.0.0.1; "mails received" are its count) and '
        f"{d['rules']:,} watch-list rules sending to it: the **default** row. The defaults "
        f"of this run: scheduler {sched}; {per_host}. The **tuned** "
        f"row adds `{d['tuned']}`. reader {d['reader_version']} runs with its defaults: "
        "`make_reader(path)`, `update_feeds_iter(scheduled=False)` with its default "
        "worker count (one; `scheduled=False` so that every feed is updated, not only the "
        "feeds due by reader's own hourly schedule); it neither matches nor sends mail.",
        "",
        "Each cycle is a process of its own, timed from start to exit (start-up "
        "included); CPU is its user + system time (all threads), peak RSS its maximum, "
        "both from the system's accounting of the child. For each layout and feed count: "
        "an unmeasured warm-up per client (the first polls of the feeds new at that count, "
        "run with more workers to save time; it leaves the same database), then default, "
        "tuned and reader, the farm moving on before each, so that every measured cycle "
        "sees one new article per changed feed.",
        "",
    ]
    sys.path.insert(0, str(BENCH))
    from defaults import ratio_lines, table

    for h in sorted({x["hosts"] for x in d["runs"]}, reverse=True):
        lines += [f"**{h} hosts**" if h > 1 else "**One host**", ""]
        lines += table(d["runs"], h) + [""]
    if d.get("ratios"):
        lines += ["Ratios (wall time, same run):", ""]
        lines += [f"- {x.strip()}" for x in ratio_lines(d["ratios"])]
    if d.get("partial"):
        lines += ["", "The run stopped before its last step: the figures above are partial."]
    return lines


def defaults_plot(results: dict[str, Any], img: Path, plt: Any) -> list[Path]:
    """``defaults.png``: wall and CPU time of each client and config against feed count,
    one line per layout."""
    runs = _get(results, "defaults", "figures", "runs")
    if not runs:
        return []
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    colors = {
        ("feed-monitor", "default"): "C0",
        ("feed-monitor", "tuned"): "C2",
        ("reader", "default"): "C1",
    }
    for h in sorted({r["hosts"] for r in runs}, reverse=True):
        for (client, config), color in colors.items():
            pts = sorted(
                (r for r in runs if (r["hosts"], r["client"], r["config"]) == (h, client, config)),
                key=lambda r: r["feeds"],
            )
            if not pts:
                continue
            style = "o-" if h > 1 else "s--"
            label = f"{client} {config}, {h} host{'s' if h > 1 else ''}"
            xs = [p["feeds"] for p in pts]
            ax.plot(xs, [p["wall_s"] for p in pts], style, color=color, label=label)
            ax2.plot(xs, [p["cpu_s"] for p in pts], style, color=color, label=label)
    ax.set(xlabel="feeds", ylabel="wall time of the cycle (s)", title="One cycle, defaults")
    ax2.set(xlabel="feeds", ylabel="CPU time of the process (s)", title="CPU per cycle")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = img / "defaults.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def memory_md(results: dict[str, Any]) -> list[str]:
    m = _get(results, "memory", "figures")
    if not m:
        return [f"Not run: {_status(results, 'memory')}."]
    cyc = m["cycles"]
    secs = [c["wall_s"] for c in cyc]
    lines = [
        f"`bench/memory.py`: the real daemon (`python -m monitor run`) with {m['feeds']:,} "
        f"feeds and {m['rules']:,} rules (`scheduler.workers` {m['workers']}) on the same "
        f"farm; after its first polls, {len(cyc)} cycles back to back (every feed made due "
        "at once, as an interval ending does). RSS is read from /proc (VmRSS; VmHWM is the "
        "peak).",
        "",
        "| | RSS |",
        "|---|---:|",
        f"| interpreter with the daemon's modules imported (baseline) | "
        f"{m['import_baseline_mb']:.0f} MB |",
        f"| daemon after start-up (config read, rules compiled) | "
        f"{m['after_start']['VmRSS']:.0f} MB |",
        f"| daemon after its first polls (warm-up, {m['warmup_s']:.0f} s) | "
        f"{m['after_warmup']['VmRSS']:.0f} MB |",
        f"| daemon after cycle 1 | {cyc[0]['rss_mb']:.0f} MB |",
        f"| daemon after cycle {len(cyc)} | {m['final']['VmRSS']:.0f} MB |",
        f"| daemon peak (VmHWM) | {m['final']['VmHWM']:.0f} MB |",
        "",
        f"Cycle time {min(secs):.1f}-{max(secs):.1f} s (median "
        f"{sorted(secs)[len(secs) // 2]:.1f} s), daemon CPU "
        f"{sorted(c['cpu_s'] for c in cyc)[len(cyc) // 2]:.1f} s per cycle (median); "
        f"database {m['db_mb']:.0f} MB, {m['items']:,} items, {m['alerts']:,} alerts.",
    ]
    return lines


def rules_md(results: dict[str, Any]) -> list[str]:
    r = _get(results, "rules", "figures")
    if not r:
        return [f"Not run: {_status(results, 'rules')}."]
    lines = [
        f"`bench/rules.py`: `RuleSet.match` over {r['items']:,} RFI items (half in "
        "Traditional Chinese), fresh Item objects per size; the ratio is to the "
        "smallest rule set in the same run.",
        "",
    ]
    for name, rows in r["sets"].items():
        lines += [
            f"**{name}**",
            "",
            "| rules | compile | per item | ratio | matches/item |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {x['rules']:,} | {x['compile_s']:.2f} s | {x['ms_per_item']:.3f} ms | "
            f"{x['ratio']:.2f}x | {x['matches_per_item']:.2f} |"
            for x in rows
        ]
        lines.append("")
    return lines


def other_md(results: dict[str, Any], name: str) -> list[str]:
    """A benchmark owned elsewhere: its printed tables as they are, and how it ran."""
    r = results.get(name)
    if not r or r.get("status") in ("absent", "skipped", "not run") or "status" not in r:
        return [f"Not run: {_status(results, name)}."]
    lines = [
        f"`{r.get('command', r['script'])}` ({r.get('seconds', 0):.0f} s, "
        f"{r['status']}; full output in `{r.get('log', '')}`)",
        "",
    ]
    if r["status"] != "ok":
        lines += [f"Failed: {r.get('reason', '')}", ""]
    for t in r.get("tables", []):
        lines += t + [""]
    if not r.get("tables") and r.get("figures"):
        lines += [
            "```json",
            json.dumps(r["figures"], indent=1, ensure_ascii=False)[:3000],
            "```",
            "",
        ]
    elif not r.get("tables") and r.get("text"):
        # Neither a markdown table nor --json: what it printed, as it printed it.
        lines += ["```text", *r["text"], "```", ""]
    return lines


def parse_md(results: dict[str, Any]) -> list[str]:
    """bench/parse.py's figures as tables (it prints aligned text, not markdown)."""
    f = _get(results, "parse", "figures")
    if not f or not f.get("parse_ms"):
        return other_md(results, "parse")
    r = results["parse"]
    feed = f.get("feed", {})
    lines = [
        f"`{r['command']}` ({r['seconds']:.0f} s; full output in `{r['log']}`). "
        f"Feed: {feed.get('items', '?')} items, {feed.get('kb', 0):.0f} KB, from "
        f"{feed.get('source', '?')}. Medians; the ratio is to the first row.",
        "",
        "| reader | median | ratio |",
        "|---|---:|---:|",
    ]
    first = next(iter(f["parse_ms"].values()))
    lines += [f"| {name} | {ms:.2f} ms | {ms / first:.1f}x |" for name, ms in f["parse_ms"].items()]
    if f.get("stored_ms"):
        lines += ["", "| bytes to stored items (SQLite, rules, outbox) | median |", "|---|---:|"]
        lines += [f"| {name.strip()} | {ms:.2f} ms |" for name, ms in f["stored_ms"].items()]
    return lines


def latency_md(results: dict[str, Any]) -> list[str]:
    f = _get(results, "latency", "figures")
    if not f or f.get("p99_ms") is None:
        return other_md(results, "latency")
    r = results["latency"]
    return [
        f"`{r['command']}` ({r['seconds']:.0f} s; full output in `{r['log']}`). "
        f"{f.get('alerts', '?')} alerts; latency = SMTP server received the mail - the "
        "poll that stored the item returned; the baseline is Apprise sending to the "
        "same SMTP server directly, in the same run.",
        "",
        "| path | p50 | p99 | max |",
        "|---|---:|---:|---:|",
        f"| poll finished → mail received (daemon) | {f['p50_ms']:.1f} ms | "
        f"{f['p99_ms']:.1f} ms | {f['max_ms']:.1f} ms |",
        f"| Apprise → same SMTP server (baseline) | {f['baseline_p50_ms']:.1f} ms | "
        f"{f['baseline_p99_ms']:.1f} ms | {f['baseline_max_ms']:.1f} ms |",
        "",
        f"Ratio daemon / baseline: p50 {f['p50_ms'] / f['baseline_p50_ms']:.1f}x, p99 "
        f"{f['p99_ms'] / f['baseline_p99_ms']:.1f}x.",
    ]


def deliver_md(results: dict[str, Any]) -> list[str]:
    f = _get(results, "deliver", "figures")
    if not f or not f.get("plain"):
        return other_md(results, "deliver")
    r = results["deliver"]
    lines = [
        f"`{r['command']}` ({r['seconds']:.0f} s; full output in `{r['log']}`). "
        f"{f['messages']} messages per delivery run through one channel's notifier to an "
        "SMTP server in another process; before: Apprise's own connection per message, "
        f"after: kept connections; medians of {f['rounds']} interleaved runs each.",
        "",
        "| mode | before msgs/s | after msgs/s | ratio | before CPU/msg | after CPU/msg "
        "| ratio | connections per run (before, after) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode in ("plain", "starttls"):
        b, a, q = f[mode]["before"], f[mode]["after"], f[mode]["ratio"]
        lines.append(
            f"| {mode} | {b['msgs_per_s']:.1f} | {a['msgs_per_s']:.1f} | "
            f"{q['msgs_per_s']:.1f}x | {b['cpu_ms_per_msg']:.2f} ms | "
            f"{a['cpu_ms_per_msg']:.2f} ms | {q['cpu_per_msg']:.1f}x | "
            f"{b['connections_per_run']}, {a['connections_per_run']} |"
        )
    return lines


def report_md(results: dict[str, Any], img_rel: str, pngs: list[Path]) -> str:
    m = results["machine"]
    meta = results["run"]
    earlier = sorted(
        {r["from_earlier_run"] for r in results["benches"].values() if r.get("from_earlier_run")}
    )
    provenance = (
        "every figure below comes from that one run"
        if not earlier
        else "the benchmarks it did not re-run keep their figures from the run of "
        + ", ".join(earlier)
        + " (see the status table)"
    )
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} ({meta['seconds'] / 60:.0f} "
        f"min); {provenance}. Ratios compare things measured in the same run on the "
        "same machine; absolute times are this machine's. Re-run to refresh this page; "
        "do not edit it by hand.",
        "",
        "## Machine",
        "",
        f"{machine_line(m)}. The benchmarks run one after another; "
        "each client under test runs in a process of its own, the feed farm in another, "
        "so on 2 cores the farm and the client each have about one.",
        "",
        "## Summary",
        "",
    ]
    out += summary_md(results["benches"])
    out += ["", "| benchmark | status | time |", "|---|---|---:|"]
    for name, r in results["benches"].items():
        earlier = f" (from the run of {r['from_earlier_run']})" if r.get("from_earlier_run") else ""
        out.append(
            f"| {name} | {r.get('status')}{': ' + r['reason'] if r.get('reason') else ''}"
            f"{earlier} | {r.get('seconds', 0):.0f} s |"
        )
    out += ["", "## Poll cycle: feed-monitor and reader", ""]
    out += cycle_md(results["benches"])
    if any(p.name == "cycle-growth.png" for p in pngs):
        out += ["", f"![cycle time against feed count]({img_rel}/cycle-growth.png)"]
    out += ["", "## The default configuration: reader's defaults and a tuned config", ""]
    out += defaults_md(results["benches"])
    if any(p.name == "defaults.png" for p in pngs):
        out += ["", f"![the default configuration against feed count]({img_rel}/defaults.png)"]
    out += ["", "## Memory of the daemon", ""]
    out += memory_md(results["benches"])
    if any(p.name == "memory.png" for p in pngs):
        out += ["", f"![daemon RSS per cycle]({img_rel}/memory.png)"]
    out += ["", "## Matching cost against rule count", ""]
    out += rules_md(results["benches"])
    if any(p.name == "rule-cost.png" for p in pngs):
        out += [f"![matching cost per item against rule count]({img_rel}/rule-cost.png)"]
    for name, title in (
        ("parse", "Parsing (bench/parse.py)"),
        ("match", "Rule engine against a naive loop (bench/match.py)"),
        ("latency", "Alert latency (bench/latency.py)"),
        ("deliver", "Email delivery (bench/deliver.py)"),
        ("import", "Import (bench/import.py)"),
        ("scale", "Several daemons on one PostgreSQL (bench/scale.py)"),
        ("web", "Web console (bench/web.py)"),
    ):
        out += ["", f"## {title}", ""]
        render = {"parse": parse_md, "latency": latency_md, "deliver": deliver_md}.get(
            name, lambda b, name=name: other_md(b, name)
        )
        out += render(results["benches"])
    out += ["", "## Plots", ""]
    out += [f"- [{p.name}]({img_rel}/{p.name})" for p in pngs] or ["None made in this run."]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="every benchmark's quick mode")
    p.add_argument("--only", help="comma-separated names: " + ",".join(s.name for s in SPECS))
    p.add_argument("--skip", default="", help="comma-separated names not to run")
    p.add_argument(
        "--docs",
        action="store_true",
        help="write docs/benchmarks.md and docs/img/ (the default of a full run)",
    )
    p.add_argument("--no-docs", action="store_true", help="write bench/results/ only")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="re-render the report and plots from bench/results/latest.json",
    )
    args = p.parse_args(argv)
    latest = RESULTS / "latest.json"
    if args.report_only:
        results = json.loads(latest.read_text())
    else:
        chosen = set(args.only.split(",")) if args.only else {s.name for s in SPECS}
        chosen -= set(filter(None, args.skip.split(",")))
        unknown = chosen - {s.name for s in SPECS}
        if unknown:
            p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        m = machine()
        say(f"machine: {machine_line(m)}")
        started = time.monotonic()
        benches: dict[str, Any] = {}
        best_workers: list[str] = []
        for spec in SPECS:
            if spec.name not in chosen:
                benches[spec.name] = {
                    "script": f"bench/{spec.script}",
                    "status": "not run",
                    "reason": "not chosen (--only/--skip)",
                }
                continue
            say(f"== {spec.name} (bench/{spec.script})")
            extra = best_workers if spec.name == "memory" else []
            r = run_one(spec, args.quick, extra)
            benches[spec.name] = r
            say(
                f"   {r['status']}{': ' + r['reason'] if r.get('reason') else ''}"
                f" ({r.get('seconds', 0):.0f} s)"
            )
            if spec.name == "cycle" and _get(r, "figures", "tuning", "best_ours"):
                # The daemon of the memory benchmark runs with the worker count found best.
                best_workers = ["--workers", str(r["figures"]["tuning"]["best_ours"])]
        command = "python bench/run_all.py" + (" --quick" if args.quick else "")
        if args.only and latest.exists():
            # A partial re-run: the other benchmarks keep their figures from the last run
            # of the same kind (full or quick), and the report says so.
            before = json.loads(latest.read_text())
            if before.get("run", {}).get("quick") == args.quick:
                for name, r in before.get("benches", {}).items():
                    if name not in chosen and r.get("status") != "not run":
                        benches[name] = {**r, "from_earlier_run": before["run"]["date"]}
        if args.only:
            command += f" --only {args.only}"
        results = {
            "machine": m,
            "benches": benches,
            "run": {
                "command": command,
                "quick": args.quick,
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "seconds": round(time.monotonic() - started),
            },
        }
        RESULTS.mkdir(exist_ok=True)
        latest.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    docs = (args.docs or not results["run"]["quick"]) and not args.no_docs
    img = REPO / "docs" / "img" if docs else RESULTS / "img"
    pngs = plots(results["benches"], img)
    summary = "\n".join(summary_md(results["benches"])) + "\n"
    (RESULTS / "latest.md").write_text(summary)
    if docs:
        (REPO / "docs" / "benchmarks.md").write_text(report_md(results, "img", pngs))
    else:
        (RESULTS / "benchmarks.md").write_text(report_md(results, "img", pngs))
    say("\n" + summary)
    say(
        f"figures: {latest.relative_to(REPO)}; report: "
        f"{'docs/benchmarks.md' if docs else 'bench/results/benchmarks.md'}; plots: "
        + ", ".join(str(x.relative_to(REPO)) for x in pngs)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
