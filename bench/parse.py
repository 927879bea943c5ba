"""Bytes -> Items for a changed 50-item RFI-sized feed: parse_feed against feedparser.

Run: ``python bench/parse.py`` (``--quick`` for fewer runs). Builds the feed from
../shared/corpus/rfi the way ../shared/tools/serve-corpus renders it, or from an
RFI-shaped generator when the corpus is absent. Prints medians of every reader in the
same run and their ratios to parse_feed; no thresholds, the numbers are the result.
"""

from __future__ import annotations

import argparse
import io
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser
import lxml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor import parse as parse_module  # noqa: E402
from monitor.parse import parse_fast, parse_feed, parse_with_feedparser  # noqa: E402

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
            "<p><span><span><span><span>" + "".join(rng.choice(hanzi) for _ in range(120))
            + "。</span></span></span></span></p>" for _ in range(12))
        body = f'<div>22/03/2023 - 15:10</div><img src="https://s.rfi.fr/x{i}.jpg">{paragraphs}'
        items.append((1679494503000 - i * 60_000, title, url, body))
    return items


def render(items: list[tuple[int, str, str, str]]) -> bytes:
    """RSS 2.0 exactly as serve-corpus renders archive items."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
           "<title>rfi</title><link>http://127.0.0.1/rfi</link><description>rfi</description>"]
    for ts, title, url, body in items:
        pub = format_datetime(datetime.fromtimestamp(ts / 1000, UTC), usegmt=True)
        body = body.replace("]]>", "]]]]><![CDATA[>")
        out.append(f"<item><title>{escape(title)}</title><link>{escape(url)}</link>"
                   f"<guid>{escape(url)}</guid><pubDate>{pub}</pubDate>"
                   f"<description><![CDATA[{body}]]></description></item>")
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
    import os

    return (f"{cpu}, {os.cpu_count()} cpus, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, feedparser {feedparser.__version__}, "
            f"lxml {lxml.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    ap.add_argument("--items", type=int, default=50)
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
        return lambda: feedparser.parse(io.BytesIO(body), response_headers={
            "content-type": HEADERS["Content-Type"]}, **options)

    def cold() -> object:
        # A first poll: no URL canonicalised before (the key cache is emptied each run).
        parse_module._cached_item_key.cache_clear()
        return parse_feed(body, HEADERS, "rfi", 0)

    def fallback() -> object:
        parse_module._cached_item_key.cache_clear()
        return parse_with_feedparser(body, HEADERS, "rfi", 0)

    rows = [
        ("parse_feed, cold key cache (lxml -> Items)", median_ms(cold, runs)),
        ("parse_feed, warm (URLs seen last poll)", median_ms(
            lambda: parse_feed(body, HEADERS, "rfi", 0), runs)),
        ("parse_with_feedparser, cold (fallback)", median_ms(fallback, slow_runs)),
        ("feedparser.parse, defaults", median_ms(fp(), slow_runs)),
        ("feedparser.parse, sanitize/resolve off", median_ms(
            fp(sanitize_html=False, resolve_relative_uris=False), slow_runs)),
    ]
    ours = rows[0][1]
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.2f} ms   x{ms / ours:6.1f}")
    print("\nratios are to the first row (parse_feed on a first poll)")


if __name__ == "__main__":
    main()
