"""Bytes -> stored Items for a changed 50-item RFI-sized feed, and parse_feed against
feedparser.

Run: ``python bench/parse.py`` (``--quick`` for fewer runs). Builds the feed from
../shared/corpus/rfi the way ../shared/tools/serve-corpus renders it, or from an
RFI-shaped generator when the corpus is absent. Part 1 prints medians of every reader
in the same run and their ratios to parse_feed. Part 2 times the whole poll after the
fetch: parse_feed, then Store.ingest into a SQLite file with ~100 compiled rules
(matching and the outbox in the same transaction), for a feed whose 50 items are all
new and for the common case of 5 new and 45 repeats. No thresholds: the numbers are
the result.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser
import lxml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor import items as items_module  # noqa: E402
from monitor.parse import parse_fast, parse_feed, parse_with_feedparser  # noqa: E402
from monitor.store import Store  # noqa: E402
from monitor.store.schema import items as items_table  # noqa: E402
from monitor.types import Item, MatchingFunctions, RuleMatch, RuleSpec  # noqa: E402

RFI = REPO.parent / "shared" / "corpus" / "rfi"
HEADERS = {"Content-Type": "application/rss+xml; charset=utf-8"}
ITEM = re.compile(r"^<!--(\d{12,13})-->\n\[(.*)\]\(([^)\s]+)\)\n------\n\n(.*)\Z", re.S | re.M)


def corpus_items(folder: Path, count: int) -> list[tuple[int, str, str, str]]:
    """The newest ``count`` archive items of a folder (same reading as serve-corpus)."""
    items = []
    for path in sorted(folder.glob("*.md")):
        m = ITEM.search(path.read_text(encoding="utf-8"))
        if m:
            items.append((int(m[1]), m[2], m[3], m[4]))
    items.sort(key=lambda i: i[0])
    return list(reversed(items[-count:]))


def synthetic_items(count: int) -> list[tuple[int, str, str, str]]:
    """RFI-shaped items: entity-laden titles, percent-encoded Chinese URLs, ~5.6 KB bodies
    of nested spans, so the feed is about the size of a real RFI feed."""
    rng = random.Random(42)
    hanzi = "中国俄罗斯乌克兰习近平普京北京莫斯科西方关系和平计划总统访问峰会战略伙伴时代"
    items = []
    for i in range(count):
        title = f"新闻{i}：" + "".join(rng.choice(hanzi) for _ in range(16)) + "&quot;特殊&quot;"
        url = f"https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/2023032{i % 10}-{i}-" + "%E4%B9%A0" * 8
        paragraphs = "".join(
            "<p><span><span><span><span>"
            + "".join(rng.choice(hanzi) for _ in range(120))
            + "。</span></span></span></span></p>"
            for _ in range(12)
        )
        body = f'<div>22/03/2023 - 15:10</div><img src="https://s.rfi.fr/x{i}.jpg">{paragraphs}'
        items.append((1679494503000 - i * 60_000, title, url, body))
    return items


def render(items: list[tuple[int, str, str, str]]) -> bytes:
    """RSS 2.0 exactly as serve-corpus renders archive items."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
        "<title>rfi</title><link>http://127.0.0.1/rfi</link><description>rfi</description>",
    ]
    for ts, title, url, body in items:
        pub = format_datetime(datetime.fromtimestamp(ts / 1000, UTC), usegmt=True)
        body = body.replace("]]>", "]]]]><![CDATA[>")
        out.append(
            f"<item><title>{escape(title)}</title><link>{escape(url)}</link>"
            f"<guid>{escape(url)}</guid><pubDate>{pub}</pubDate>"
            f"<description><![CDATA[{body}]]></description></item>"
        )
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cpus, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, feedparser {feedparser.__version__}, "
        f"lxml {lxml.__version__}"
    )


_HAN = re.compile(r"[\u4e00-\u9fff]{2,}")


def make_rules(items: Sequence[tuple[int, str, str, str]], count: int) -> list[RuleSpec]:
    """``count`` rules in the shapes users write (one word, any-lists, all, exclusions).

    Keywords are 2-4 Chinese characters cut from the feed's own titles and bodies, kept
    only when they occur in at most 2 of its items (nobody alerts on a word every article
    has), plus English words; so some rules hit, most items match a few rules at most.
    """
    rng = random.Random(7)
    texts = [title + body for _, title, _, body in items]
    runs = [r for text in texts for r in _HAN.findall(text)]
    english = ["Ukraine", "Taiwan", "NATO", "Xinjiang", "sanctions", "election", "Huawei"]
    seen: dict[str, bool] = {}

    def selective(word: str) -> bool:
        if word not in seen:
            seen[word] = sum(word in t for t in texts) <= 2
        return seen[word]

    def word() -> str:
        for _ in range(100):
            run = rng.choice(runs)
            size = rng.randint(2, min(4, len(run)))
            start = rng.randint(0, len(run) - size)
            if selective(candidate := run[start : start + size]):
                return candidate
        return rng.choice(english)

    specs = []
    for n in range(count):
        shape = rng.random()
        if shape < 0.4:
            spec = RuleSpec(f"r{n}", any=(word(),), notify=("console",))
        elif shape < 0.7:
            spec = RuleSpec(f"r{n}", any=(word(), word(), rng.choice(english)), notify=("console",))
        elif shape < 0.85:
            spec = RuleSpec(f"r{n}", all=(word(), word()), notify=("console",))
        else:
            spec = RuleSpec(f"r{n}", any=(word(), word()), none=(word(),), notify=("console",))
        specs.append(spec)
    return specs


def matcher(
    specs: list[RuleSpec],
) -> tuple[Callable[[Item, Collection[str]], list[RuleMatch]], str]:
    """The real rule engine, or a keyword scan when monitor.match cannot be imported."""
    try:
        from monitor.match import compile_rules
    except ImportError:  # the engine is optional for this benchmark
        words = [(s.name, s.any) for s in specs]

        def scan(item: Item, feeds: Collection[str]) -> list[RuleMatch]:
            text = item.title + item.content
            return [RuleMatch(name, (w,)) for name, ws in words for w in ws if w in text][:5]

        return scan, "trivial substring scan (monitor.match not importable)"
    ruleset = compile_rules(specs)
    return ruleset.match, f"monitor.match.compile_rules, {len(specs)} rules"


def interleaved_medians(
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]], runs: int
) -> list[tuple[str, float]]:
    """Median ms of each (name, setup, fn) case; ``setup`` is not timed. The cases take
    turns, run by run, so a busy machine slows them all alike and their ratios hold."""
    times: list[list[float]] = [[] for _ in cases]
    for run in range(runs + 1):
        for (_, setup, fn), taken in zip(cases, times, strict=True):
            setup()
            start = time.perf_counter()
            fn()
            if run:  # the first round warms up imports and caches
                taken.append(time.perf_counter() - start)
    return [
        (name, statistics.median(taken) * 1000)
        for (name, _, _), taken in zip(cases, times, strict=True)
    ]


INGEST: dict[str, int] = {}  # what the ingest cases did, for --json


def stored(
    items: list[tuple[int, str, str, str]], body: bytes, runs: int, rules: int
) -> list[tuple[str, float]]:
    """Parse + Store.ingest (SQLite file, WAL) for an all-new and a 5-new feed."""
    from sqlalchemy import delete

    match, how = matcher(make_rules(items, rules))
    print(f"matcher: {how}")
    parsed = parse_feed(body, HEADERS, "rfi", 0).items
    keys = [it.key for it in parsed]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{os.path.join(tmp, 'bench.db')}")

        def channels(rule: str) -> tuple[str, ...]:
            return ("console",)

        def ingest(batch: Sequence[Item]) -> object:
            return store.items.ingest("rfi", batch, 1, MatchingFunctions(match, channels))

        def forget(which: Sequence[str]) -> None:
            # Deleting items cascades to where they were seen, matches and alerts.
            with store.engine.begin() as conn:
                conn.execute(delete(items_table).where(items_table.c.key.in_(list(which))))

        def all_new() -> None:
            forget(keys)
            items_module._slow_canonical.cache_clear()

        def five_new() -> None:
            forget(keys[:5])
            # The 45 repeats were seen by the last poll: their keys are in the cache.
            items_module._slow_canonical.cache_clear()
            parse_feed(render(items[5:]), HEADERS, "rfi", 0)

        def poll() -> object:
            return ingest(parse_feed(body, HEADERS, "rfi", 0).items)

        all_new()
        stats = ingest(parsed)
        five_new()
        stats5 = ingest(parsed)
        INGEST.update(
            rules=rules,
            all_new_matches=stats.matched,
            all_new_alerts=stats.alerts,
            five_new_alerts=stats5.alerts,
        )
        print(
            f"ingest:  all new: {stats.new} new, {stats.matched} matches, {stats.alerts} "
            f"alerts; 5 new: {stats5.new} new, {stats5.repeats} repeats, "
            f"{stats5.alerts} alerts"
        )

        def none() -> None:
            pass

        def nothing_matches(item: Item, feeds: Collection[str]) -> list[RuleMatch]:
            return []

        rows = interleaved_medians(
            [
                ("all 50 new: parse_feed + Store.ingest", all_new, poll),
                ("  of which Store.ingest (incl. matching)", all_new, lambda: ingest(parsed)),
                (
                    "  of which matching alone (50 items)",
                    none,
                    lambda: [match(it, ("rfi",)) for it in parsed],
                ),
                (
                    "all 50 new, no rule matches: parse_feed + Store.ingest",
                    all_new,
                    lambda: store.items.ingest(
                        "rfi",
                        parse_feed(body, HEADERS, "rfi", 0).items,
                        1,
                        MatchingFunctions(nothing_matches, channels),
                    ),
                ),
                ("5 new, 45 repeats: parse_feed + Store.ingest", five_new, poll),
                ("  of which Store.ingest (incl. matching)", five_new, lambda: ingest(parsed)),
                ("unchanged (50 repeats): parse_feed + Store.ingest", none, poll),
            ],
            runs,
        )
        store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument(
        "--json",
        type=Path,
        help="also write the figures to this file as JSON (bench/run_all.py reads it)",
    )
    args = ap.parse_args()
    runs, slow_runs = (15, 5) if args.quick else (200, 30)

    if RFI.is_dir():
        items, source = corpus_items(RFI, args.items), f"corpus {RFI}"
    else:
        items, source = synthetic_items(args.items), "synthetic RFI-shaped generator"
    body = render(items)
    fast = parse_fast(body, HEADERS, "rfi", 0)
    assert fast is not None and len(fast.items) == len(items), "fast reader must take this feed"
    assert parse_with_feedparser(body, HEADERS, "rfi", 0).items == fast.items

    print(f"machine: {machine()}")
    print(f"feed:    {len(items)} items, {len(body) / 1024:.0f} KB, from {source}")
    print(f"runs:    {runs} (feedparser readers: {slow_runs}); medians\n")

    def fp(**options: bool) -> Callable[[], object]:
        return lambda: feedparser.parse(
            io.BytesIO(body), response_headers={"content-type": HEADERS["Content-Type"]}, **options
        )

    def cold() -> object:
        # A first poll: no URL canonicalised before (the cache of URLs that miss the
        # already-canonical fast path, monitor.items, is emptied each run).
        items_module._slow_canonical.cache_clear()
        return parse_feed(body, HEADERS, "rfi", 0)

    def fallback() -> object:
        items_module._slow_canonical.cache_clear()
        return parse_with_feedparser(body, HEADERS, "rfi", 0)

    rows = [
        ("parse_feed, cold key cache (lxml -> Items)", median_ms(cold, runs)),
        (
            "parse_feed, warm (URLs seen last poll)",
            median_ms(lambda: parse_feed(body, HEADERS, "rfi", 0), runs),
        ),
        ("parse_with_feedparser, cold (fallback)", median_ms(fallback, slow_runs)),
        ("feedparser.parse, defaults", median_ms(fp(), slow_runs)),
        (
            "feedparser.parse, sanitize/resolve off",
            median_ms(fp(sanitize_html=False, resolve_relative_uris=False), slow_runs),
        ),
    ]
    ours = rows[0][1]
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.2f} ms   x{ms / ours:6.1f}")
    print("\nratios are to the first row (parse_feed on a first poll)")

    print("\nbytes -> stored Items (SQLite file, one transaction, alerts in the outbox)")
    srows = stored(items, body, 100 if not args.quick else 15, args.rules)
    fp_default = rows[3][1]
    width = max(len(name) for name, _ in srows)
    for name, ms in srows:
        print(
            f"{name:<{width}}  {ms:8.2f} ms   feedparser.parse defaults alone: "
            f"x{fp_default / ms:5.1f} this"
        )
    print("cases take turns run by run (medians); the 'of which' rows reuse parsed Items")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "feed": {"items": len(items), "kb": len(body) / 1024, "source": source},
                    "parse_ms": dict(rows),
                    "stored_ms": dict(srows),
                    "ingest": INGEST,
                },
                ensure_ascii=False,
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
