"""Benchmark: the web console's pages at 5,000 feeds and 100,000 alerts, rendered on the
server, against /healthz (the floor: routing and a database ping) in the same run.

    python bench/web.py [--feeds 5000] [--alerts 100000] [--repeat 7] [--quick] [--json F]

A fresh SQLite file is seeded directly (SQLAlchemy Core, no polling): ``--feeds`` feed
rows, one in twenty failing; ``--alerts / 2`` items spread over the last 60 days, each
seen in one feed and matched by one of 20 rules; two channels, so two alerts per match
(``--alerts`` in all) in every state (mostly sent; pending, retrying, held, silenced,
dead). Each page is then requested ``--repeat`` times through the console's own Flask
application (``app.test_client()``: the whole request, templates and queries included,
without the socket), after one warm-up request (templates compiled once per process), and
the median and worst times are printed. The backtest box is
timed separately: it matches every stored item published in its window (7 days here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.app import open_store  # noqa: E402
from monitor.clock import SYSTEM_CLOCK  # noqa: E402
from monitor.config import LoadedConfig  # noqa: E402
from monitor.config.models import Config  # noqa: E402
from monitor.metrics import Metrics  # noqa: E402
from monitor.secrets import Masker  # noqa: E402
from monitor.store.schema import alerts, feeds, item_feeds, items, matches  # noqa: E402
from monitor.types import AlertFilter  # noqa: E402
from monitor.web import ConsoleSource  # noqa: E402
from monitor.web.server import make_app  # noqa: E402

DAY = 86_400_000
RULES = [f"rule-{n:02d}" for n in range(20)]
KEYWORDS = [
    "乌克兰",
    "中俄",
    "普京",
    "习近平",
    "台湾",
    "欧盟",
    "北约",
    "稀土",
    "关税",
    "选举",
    "气候",
    "能源",
    "疫情",
    "人权",
    "香港",
    "新疆",
    "南海",
    "朝鲜",
    "伊朗",
    "以色列",
]


def config(n_feeds: int) -> LoadedConfig:
    cfg = Config.model_validate(
        {
            "database": "sqlite:///unused.db",
            "feeds": [
                {"id": f"feed-{i:05d}", "url": f"https://news{i % 50}.example/{i}/rss"}
                for i in range(n_feeds)
            ],
            "channels": {
                "console": {"urls": ["console://"]},
                "mail": {"urls": ["mailto://user:secret@example.com"]},
            },
            "rules": [
                {"name": r, "any": [k], "notify": ["console", "mail"]}
                for r, k in zip(RULES, KEYWORDS, strict=True)
            ],
        }
    )
    return LoadedConfig(cfg, "bench/web.py")


def seed(db: Path, n_feeds: int, n_alerts: int, now: int) -> LoadedConfig:
    loaded = config(n_feeds)
    cfg = loaded.config.model_copy(update={"database": f"sqlite:///{db}"})
    store = open_store(cfg)
    engine = store.engine  # seeding only: straight to the tables
    n_items = n_alerts // 2
    states = ["sent"] * 90 + ["pending", "held", "silenced", "dead", "dead"] + ["pending"] * 5
    with engine.begin() as conn:
        conn.execute(
            insert(feeds),
            [
                {
                    "id": f"feed-{i:05d}",
                    "url": f"https://news{i % 50}.example/{i}/rss",
                    "next_poll_ms": now + 300_000,
                    "failures": 6 if i % 20 == 0 else 0,
                    "first_poll_done": True,
                    "last_poll_ms": now - 60_000,
                    "last_outcome": "timeout" if i % 20 == 0 else "ok",
                    "last_error": "timed out after 30 s" if i % 20 == 0 else None,
                    "last_status": 200,
                    "added_ms": now - 90 * DAY,
                }
                for i in range(n_feeds)
            ],
        )
        step = 60 * DAY // n_items
        for start in range(0, n_items, 10_000):
            rows = []
            for i in range(start, min(n_items, start + 10_000)):
                k = KEYWORDS[i % 20]
                t = now - i * step
                rows.append(
                    {
                        "id": i + 1,
                        "key": f"https://news.example/a/{i}",
                        "url": f"https://news.example/a/{i}",
                        "title": f"{k}：第 {i} 篇报道的标题",
                        "summary": "",
                        "content": f"<p>{'正文内容' * 100} {k} {'更多内容' * 50}</p>",
                        "published_ms": t,
                        "first_seen_ms": t,
                        "updated_ms": t,
                    }
                )
            conn.execute(insert(items), rows)
            conn.execute(
                insert(item_feeds),
                [
                    {
                        "item_id": r["id"],
                        "feed_id": f"feed-{r['id'] % n_feeds:05d}",
                        "first_seen_ms": r["first_seen_ms"],
                    }
                    for r in rows
                ],
            )
            conn.execute(
                insert(matches),
                [
                    {
                        "item_id": r["id"],
                        "rule": RULES[r["id"] % 20],
                        "matched_ms": r["first_seen_ms"],
                        "alerted": True,
                    }
                    for r in rows
                ],
            )
            arows = []
            for r in rows:
                for channel in ("console", "mail"):
                    state = states[(r["id"] * 7 + len(channel)) % 100]
                    arows.append(
                        {
                            "rule": RULES[r["id"] % 20],
                            "item_id": r["id"],
                            "channel": channel,
                            "keywords": json.dumps([KEYWORDS[r["id"] % 20]], ensure_ascii=False),
                            "snippet": f"……{KEYWORDS[r['id'] % 20]}……",
                            "status": state,
                            "attempts": 3 if state in ("dead", "pending") and r["id"] % 2 else 0,
                            "created_ms": r["first_seen_ms"],
                            "next_attempt_ms": now,
                            "sent_ms": r["first_seen_ms"] if state == "sent" else None,
                            "last_error": "connection refused" if state == "dead" else None,
                        }
                    )
            conn.execute(insert(alerts), arows)
    store.close()
    return LoadedConfig(cfg, loaded.path)


def timed(client, url: str, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    client.get(url)  # warm-up, not counted: the template's first compile, a cold cache
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = client.get(url)
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, (url, resp.status_code)
    return out


def _figure(times: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(times), 1), "worst_ms": round(max(times), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=5000)
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="500 feeds, 10,000 alerts, 3 runs")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.feeds, args.alerts, args.repeat = 500, 10_000, 3
    now = SYSTEM_CLOCK.now_ms()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "console.db"
        t0 = time.perf_counter()
        loaded = seed(db, args.feeds, args.alerts, now)
        print(
            f"seeded {args.feeds} feeds, {args.alerts} alerts in "
            f"{time.perf_counter() - t0:.1f} s ({db.stat().st_size / 2**20:.0f} MiB)"
        )
        store = open_store(loaded.config)
        source = ConsoleSource(store, SYSTEM_CLOCK, Masker(), lambda: loaded)
        app = make_app(Metrics(), lambda: [] if store.ping() is None else ["down"], source)
        client = app.test_client()
        oldest = store.readouts.alert_page(AlertFilter(), None, 50)[1]
        pages = [
            ("/healthz (floor)", "/healthz"),
            ("overview", "/"),
            ("alerts, first page", "/alerts"),
            ("alerts, page 2", f"/alerts?before={oldest}"),
            ("alerts, rule filter", f"/alerts?rule={RULES[3]}"),
            ("alerts, channel + state dead", "/alerts?channel=mail&state=dead"),
            ("alerts, state retrying", "/alerts?state=retrying"),
            ("alerts, feed filter", "/alerts?feed=feed-00042"),
            ("alerts, deep page", "/alerts?before=1000"),
            ("alerts/latest (polled)", "/alerts/latest"),
            ("feed page", "/feeds/feed-00042"),
            ("rule page", f"/rules/{RULES[3]}"),
        ]
        figures: dict[str, Any] = {
            "feeds": args.feeds,
            "alerts": args.alerts,
            "repeat": args.repeat,
            "pages": {},
        }
        print(
            f"\n{args.feeds:,} feeds, {args.alerts:,} alerts; {args.repeat} requests a "
            "page after a warm-up\n"
        )
        print("| page | URL | median ms | worst ms |")
        print("|---|---|---:|---:|")
        backtest = f"/rules/{RULES[3]}?q=%E4%B9%8C%E5%85%8B%E5%85%B0&since=7d"
        for label, url in [*pages, ("rule page + backtest over 7 days", backtest)]:
            times = timed(client, url, args.repeat if url != backtest else max(1, args.repeat // 3))
            figures["pages" if url != backtest else "backtest"] = (
                figures["pages"] | {label: _figure(times)} if url != backtest else _figure(times)
            )
            print(f"| {label} | `{url}` | {statistics.median(times):.1f} | {max(times):.1f} |")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
        store.close()


if __name__ == "__main__":
    main()
