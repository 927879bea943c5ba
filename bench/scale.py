"""Scale-out: the poll-cycle time of 1 daemon and of 3 daemons on one PostgreSQL.

    FEED_MONITOR_TEST_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/scale.py [--feeds 600] [--cycles 3] [--processes 1,3] [--quick]

A feed farm (bench/support/farm.py, its own process, weighted mix) serves ``--feeds`` feeds on
127.0.0.1, each answer delayed 50-100 ms as a distant server's would be, in a mix of
unchanged feeds with validators (304), unchanged feeds without (full download, all
repeats) and feeds with new articles. In one run:

1. the database is emptied; warm-up: every feed's first poll (backlogs stored, ETags
   learnt) by the largest process count, not measured;
2. per block, that many ``feed-monitor run`` processes start on the database (interval
   1 h, so nothing is polled except when the benchmark says so), run one settling cycle
   and ``--cycles`` measured ones, and stop. A cycle: the farm moves on (news feeds gain
   articles), the benchmark makes every feed due at one instant T, and the cycle time
   is from T until the last feed's poll was recorded (``max(last_poll_ms) - T``);
3. blocks alternate between the process counts (1, 3, 3, 1, ... for ``--rounds``), so a
   drift in the machine's load hits both alike.

It prints the median cycle time per process count and the speed-up over the first, with
the CPU seconds spent meanwhile by the daemons, by the PostgreSQL sessions serving them,
by the farm, and by everything else on the machine (other users, the kernel), and two
floors: the network wait the workers share, and our CPU spread over all cpus. So a
speed-up below the process count can be told apart: waiting on the network (more
workers help) or short of CPU (more processes on the same cores do not).

The database is ``<test database>_bench`` on the same server when the role may create
it (so a benchmark and a test run do not empty each other's tables), else the one
named. Each daemon has its own ``scheduler.workers`` (default 8). All feeds sit on one
host (127.0.0.1, a private host) here while real ones are spread over many, so
``defaults.private_host_concurrency`` is set to the worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import FarmProcess, cpu_seconds, machine, write_config  # noqa: E402
from monitor.store.schema import feeds  # noqa: E402

NS = "scale"  # the farm namespace of this benchmark


def bench_database(url: str) -> str:
    """``<name>_bench`` on the same server, created if the role may; else ``url`` itself."""
    u = make_url(url)
    own = u.set(database=f"{u.database}_bench")
    admin = create_engine(u, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": own.database}
            ).first():
                conn.execute(text(f'CREATE DATABASE "{own.database}"'))
        return own.render_as_string(hide_password=False)
    except SQLAlchemyError:
        return url
    finally:
        admin.dispose()


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


def scale_config(path: Path, database: str, farm: FarmProcess, n_feeds: int, workers: int) -> Path:
    return write_config(
        path,
        database=database,
        feeds=[{"id": f"feed{i:04d}", "url": farm.url(NS, i)} for i in range(n_feeds)],
        rules=[
            {"name": "china-russia", "any": ["中俄"], "notify": ["out"]},
            {"name": "ukraine", "any": ["乌克兰", "烏克蘭"], "notify": ["out"]},
            {"name": "summit", "all": ["峰会", "总统"], "notify": ["out"]},
        ],
        defaults={
            "interval": "1h",
            "jitter": 0,
            "timeout": "10s",
            "backlog": "none",
            "private_host_concurrency": min(workers, 64),
            "allowed_networks": ["127.0.0.0/8"],
        },
        scheduler={"tick": 0.2, "workers": workers},
        delivery={"interval": 1},
    )


def server_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one()).split(" ")[0]
    finally:
        engine.dispose()


def backend_cpu(engine: Engine) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the benchmark's database
    (other databases on the server, e.g. a test run's, are someone else's load)."""
    with engine.connect() as conn:
        pids = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = "
                "current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        out = {}
        for pid in pids:
            try:
                out[pid] = cpu_seconds(pid)
            except OSError:  # gone meanwhile
                pass
        return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def count_where(engine: Engine, cond: Any) -> int:
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(feeds).where(cond)).scalar_one()
            )
    except SQLAlchemyError:  # the daemons have not created the tables yet
        return 0


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """``processes`` daemons on one database, started and stopped together."""

    def __init__(self, processes: int, config: Path, workdir: Path, tag: str) -> None:
        self.logs = [workdir / f"daemon-{tag}-{n}.log" for n in range(processes)]
        self.procs = []
        for log in self.logs:
            with open(log, "w") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "monitor", "run", "-c", str(config)],
                        cwd=REPO,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def check(self) -> None:
        for log, proc in zip(self.logs, self.procs, strict=True):
            if proc.poll() is not None:
                raise SystemExit(
                    f"a daemon exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )

    def running(self) -> bool:
        self.check()
        return all("feed-monitor running" in log.read_text() for log in self.logs)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def cycle(engine: Engine, cluster: Cluster, farm: FarmProcess, n_feeds: int) -> dict[str, float]:
    """One poll cycle: its seconds, and the CPU seconds the daemons, PostgreSQL, the farm
    and everything else on the machine used meanwhile."""
    farm.advance(NS, n_feeds)
    farm_pid = farm.pid
    cpu0, pg0, farm0, busy0 = (
        cluster.cpu(),
        backend_cpu(engine),
        cpu_seconds(farm_pid),
        machine_busy(),
    )
    due = int(time.time() * 1000) + 300
    with engine.begin() as conn:
        conn.execute(update(feeds).values(next_poll_ms=due))

    def done() -> bool:
        cluster.check()
        return count_where(engine, feeds.c.last_poll_ms >= due) == n_feeds

    wait_for(done, 600, "a poll cycle")
    busy1 = machine_busy()
    with engine.connect() as conn:
        last = conn.execute(select(func.max(feeds.c.last_poll_ms))).scalar_one()
        # A failed poll ends quickly: a cycle with failures would look fast.
        failed = conn.execute(
            select(func.count())
            .select_from(feeds)
            .where(feeds.c.last_outcome.not_in(["ok", "ok-with-warnings", "not-modified"]))
        ).scalar_one()
    seconds = (last - due) / 1000
    # /proc/stat counts clock ticks summed over all cpus.
    busy = (busy1[0] - busy0[0]) / os.sysconf("SC_CLK_TCK")
    pg1 = backend_cpu(engine)
    out = {
        "seconds": seconds,
        "daemons": cluster.cpu() - cpu0,
        "postgres": sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items()),
        "farm": cpu_seconds(farm_pid) - farm0,
    }
    out["others"] = max(0.0, busy - out["daemons"] - out["postgres"] - out["farm"])
    out["capacity"] = (busy1[1] - busy0[1]) / os.sysconf("SC_CLK_TCK")  # cpus x wall time
    out["failed"] = failed
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="poll-cycle time, 1 daemon against several")
    p.add_argument("--feeds", type=int, default=600)
    p.add_argument("--cycles", type=int, default=3, help="measured cycles per block")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="blocks per process count, interleaved (1,3,3,1,...) against drift",
    )
    p.add_argument("--processes", default="1,3", help="comma-separated process counts")
    p.add_argument("--workers", type=int, default=8, help="scheduler.workers per process")
    p.add_argument("--latency", default="0.05-0.1", help="farm answer delay range, seconds")
    p.add_argument(
        "--mix",
        default="etag=60,plain=20,news=20",
        help="farm feeds per kind, percent: etag (304), plain (200, repeats), news",
    )
    p.add_argument(
        "--database",
        default=os.environ.get("FEED_MONITOR_BENCH_PG") or os.environ.get("FEED_MONITOR_TEST_PG"),
        help="PostgreSQL URL (default $FEED_MONITOR_BENCH_PG, $FEED_MONITOR_TEST_PG)",
    )
    p.add_argument("--quick", action="store_true", help="200 feeds, 1 round of 1 cycle")
    p.add_argument(
        "--json",
        type=Path,
        help="also write the figures to this file as JSON (bench/run_all.py reads it)",
    )
    args = p.parse_args()
    if not args.database:
        raise SystemExit("needs a PostgreSQL URL: --database or FEED_MONITOR_TEST_PG")
    if args.quick:
        args.feeds, args.cycles, args.rounds = 200, 1, 1
    database = bench_database(args.database)
    counts = [int(x) for x in args.processes.split(",")]
    print(
        f"machine: {machine()['cpu']}, {os.cpu_count()} cpus, Linux {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server_version(database)}"
    )
    print(
        f"farm: {args.feeds} feeds ({args.mix}), latency {args.latency} s per answer; "
        f"{args.workers} workers per process; load average before: "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    farm = FarmProcess(args.feeds, args.latency, mix=args.mix)
    engine = create_engine(database)
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    try:
        with tempfile.TemporaryDirectory(prefix="feed-monitor-scale-") as tmp:
            workdir = Path(tmp)
            config = scale_config(workdir / "bench.yaml", database, farm, args.feeds, args.workers)
            # Warm-up, once: every feed's first poll (backlogs stored, ETags learnt).
            reset(engine)
            started = time.monotonic()
            cluster = Cluster(max(counts), config, workdir, "warm-up")
            try:
                wait_for(
                    lambda: (
                        cluster.running()
                        and count_where(engine, feeds.c.first_poll_done.is_(True)) == args.feeds
                    ),
                    600,
                    "warm-up",
                )
            finally:
                cluster.stop()
            print(
                f"warm-up (first polls, {max(counts)} processes): "
                f"{time.monotonic() - started:.1f} s",
                flush=True,
            )
            for r in range(args.rounds):
                for n in counts if r % 2 == 0 else counts[::-1]:
                    cluster = Cluster(n, config, workdir, f"{r}-{n}")
                    try:
                        wait_for(cluster.running, 60, "the daemons to start")
                        cycle(engine, cluster, farm, args.feeds)  # settling
                        block = [
                            cycle(engine, cluster, farm, args.feeds) for _ in range(args.cycles)
                        ]
                    finally:
                        cluster.stop()
                    results[n] += block
                    times = ", ".join(f"{c['seconds']:.2f}" for c in block)
                    failed = sum(c["failed"] for c in block)
                    if failed:
                        times += f" (WARNING: {failed} failed polls: see the daemon logs)"
                    print(
                        f"  round {r + 1}, {n} process(es): cycles {times} s; load average "
                        f"{os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
        stats = farm.get(f"/_stats?ns={NS}")
    finally:
        farm.close()
        engine.dispose()

    def median(n: int, key: str) -> float:
        return statistics.median(c[key] for c in results[n])

    base = median(counts[0], "seconds")
    print(f"\nfarm answers over the whole run: {stats}")
    print(
        "\nCPU seconds used during one cycle (medians), and the machine's CPU capacity "
        "in that time (cpus x cycle):"
    )
    print(
        f"\n| processes | workers | median cycle | feeds/s | speed-up vs {counts[0]} | "
        "daemons | PostgreSQL sessions | farm | everything else | capacity |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        med = median(n, "seconds")
        print(
            f"| {n} | {n * args.workers} | {med:.2f} s | {args.feeds / med:.0f} | "
            f"{base / med:.2f}x | "
            + " | ".join(
                f"{median(n, k):.2f} s"
                for k in ("daemons", "postgres", "farm", "others", "capacity")
            )
            + " |"
        )
    # What an otherwise idle machine would allow: a cycle can be no shorter than the
    # network wait its workers share, nor than our CPU spread over all the cpus.
    low, _, high = args.latency.partition("-")
    mean_latency = (float(low) + float(high or low)) / 2
    cpus = os.cpu_count() or 1
    print(
        "\nFloors (a cycle can be no shorter than either): network wait = feeds x mean "
        f"latency / workers; CPU = (daemons + PostgreSQL sessions + farm) / {cpus} cpus"
    )
    for n in counts:
        ours = median(n, "daemons") + median(n, "postgres") + median(n, "farm")
        wait = args.feeds * mean_latency / (n * args.workers)
        print(f"  {n} process(es): network wait {wait:.2f} s, CPU {ours / cpus:.2f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "feeds": args.feeds,
                    "workers": args.workers,
                    "farm": json.loads(stats),
                    "processes": {str(n): results[n] for n in counts},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
