"""Alert latency: from a poll finishing to the SMTP server receiving the mail.

Runs the daemon's real parts in this process (scheduler jobs, poller, outbox,
deliverer, Apprise's email plugin) against the feed farm (bench/support/farm.py, no
answer delay; the benchmark publishes the feed's items) and a local aiosmtpd server.
New matching items are published in small batches; for each alert, latency = time the
SMTP server got the mail - time the poll that stored the item returned. The baseline,
measured in the same run, is Apprise sending the same kind of mail directly to the
same server (no daemon in between).

Usage: python bench/latency.py [--alerts 250] [--batch 10] [--every 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apprise  # noqa: E402

from bench.support import FarmProcess, SmtpSink, rss, wait_until, write_config  # noqa: E402
from monitor.daemon import Daemon  # noqa: E402
from monitor.types import FeedRow, PollResult  # noqa: E402

NS = "latency"  # the farm namespace of this benchmark
# (published ms, title, url, html body) of one article
Article = tuple[int, str, str, str]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=250)
    ap.add_argument("--batch", type=int, default=10, help="new items per publication")
    ap.add_argument("--every", type=float, default=0.5, help="seconds between publications")
    ap.add_argument(
        "--json",
        type=Path,
        help="also write the figures to this file as JSON (bench/run_all.py reads it)",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fm-latency-"))
    with FarmProcess(0, latency="0", hang=0) as farm, SmtpSink() as sink:
        # Baseline: Apprise straight to the SMTP server, one mail at a time.
        direct = apprise.Apprise()
        direct.add(sink.apprise_url())
        for plugin in direct:
            plugin.request_rate_per_sec = 0
        base = []
        for i in range(50):
            t = time.time()
            direct.notify(
                title=f"baseline {i}", body="<p>x</p>", body_format=apprise.NotifyFormat.HTML
            )
            base.append(time.time() - t)
        wait_until(lambda: len(sink.mails) >= 50, 30, "the baseline's mails")
        sink.clear()

        published: list[Article] = []
        farm.publish(NS, 0, rss("RFI - 中国", []))
        cfg = write_config(
            tmp / "monitor.yaml",
            database=f"sqlite:///{tmp / 'monitor.db'}",
            feeds=[{"id": "cn", "url": farm.url(NS, 0), "backlog": "all"}],
            channels={"mail": {"urls": [sink.apprise_url()]}},
            rules=[{"name": "china-russia", "any": ["中俄"], "notify": ["mail"]}],
            defaults={
                "interval": "0.2s",
                "jitter": 0,
                "timeout": "5s",
                "backlog": "none",
                "allowed_networks": ["127.0.0.0/8", "::1/128"],
            },
            scheduler={"tick": 0.1, "workers": 4},
            delivery={"interval": 1.0, "backoff": 0.2, "max_backoff": 1},
        )
        monitor = Daemon.open(str(cfg))
        item_polled: dict[str, float] = {}  # title -> when the poll that stored it returned
        lock = threading.Lock()
        original_poll = monitor.poll

        def poll(row: FeedRow) -> PollResult:
            before = {title for _, title, _, _ in published}
            result = original_poll(row)
            done = time.time()
            if result.stats.new:
                with lock:
                    for title in before:
                        item_polled.setdefault(title, done)
            return result

        monitor.poll = poll  # type: ignore[method-assign]
        cfgd = monitor.parts.runtime.loaded.config
        monitor.jobs.add("tick", monitor.tick, every=cfgd.scheduler.tick)
        monitor.jobs.add("deliver", monitor.deliver, every=cfgd.delivery.interval)
        monitor.jobs.start()
        t0 = time.time()
        n = 0
        while n < args.alerts:
            batch = [
                (
                    1_700_000_000_000 + n + i,
                    f"中俄新闻 {n + i}",
                    f"https://www.rfi.fr/cn/lat{n + i}",
                    "<p>中俄关系</p>",
                )
                for i in range(min(args.batch, args.alerts - n))
            ]
            published.extend(batch)
            n += len(batch)
            farm.publish(NS, 0, rss("RFI - 中国", list(reversed(published))))
            time.sleep(args.every)
        wait_until(lambda: len(sink.mails) >= args.alerts, 120, "every alert")
        wall = time.time() - t0
        monitor.stopping.set()
        monitor.jobs.shutdown()
        monitor.pool.shutdown(wait=True)
        latencies = []
        for mail in sink.mails:
            title = mail.subject.split("] ", 1)[1]
            latencies.append(mail.received_at - item_polled[title])
        monitor.parts.store.close()

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, apprise {apprise.__version__}"
    )
    print(f"{len(latencies)} alerts in {wall:.1f} s, published {args.batch} every {args.every} s")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    b50, b99 = percentile(base, 50), percentile(base, 99)
    print(f"{'path':<44}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    print(
        f"{'poll finished -> mail received (daemon)':<44}{p50 * 1000:>10.1f}"
        f"{p99 * 1000:>10.1f}{max(latencies) * 1000:>10.1f}"
    )
    print(
        f"{'Apprise -> same SMTP server (baseline)':<44}{b50 * 1000:>10.1f}"
        f"{b99 * 1000:>10.1f}{max(base) * 1000:>10.1f}"
    )
    print(
        f"ratio daemon/baseline: p50 {p50 / b50:.1f}x, p99 {p99 / b99:.1f}x; "
        f"goal p99 <= 1000 ms: {'met' if p99 <= 1.0 else 'NOT met'}"
    )
    print(f"mean {statistics.mean(latencies) * 1000:.1f} ms")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "alerts": len(latencies),
                    "p50_ms": p50 * 1000,
                    "p99_ms": p99 * 1000,
                    "max_ms": max(latencies) * 1000,
                    "mean_ms": statistics.mean(latencies) * 1000,
                    "baseline_p50_ms": b50 * 1000,
                    "baseline_p99_ms": b99 * 1000,
                    "baseline_max_ms": max(base) * 1000,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
