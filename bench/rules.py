"""Per-item matching cost against the number of rules (100 to 10,000), one run.

    python bench/rules.py [--quick] [--counts 100,300,1000,3000,10000] [--items 2000]
                          [--json PATH]

Items are RFI 中文 articles (../shared/corpus/rfi, as bench/support/farm.py serves them;
every second one converted to Traditional Chinese, as the /tw feed serves them). Two rule
sets of each size, both compiled by ``monitor.match.compile_rules``:

- **watch list**: bench/support/watchlist.py's ``watch_rules``, the rule set of the cycle and
  memory benchmarks: mostly keywords absent from the day's news, 5 % cut from it;
- **news words**: every keyword cut from the same articles (found in at most 5 % of
  them), so almost every rule can hit; an upper bound on hits and snippets.

Each size is measured twice in the same run: "today" (every rule ``aliases: false``,
``exact: true``: matching as before issue #17) and "analyst" (the defaults: the built-in
alias table, and 2-3 character Chinese keywords counted only where they are words).

Each size is timed on fresh Item objects (nothing carried over from the run before).
The baseline is the cost of the smallest rule set in the same run: the ratio column
says how the cost per item grows with the rule count (one automaton for all keywords
should keep it well below the rule-count ratio).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import corpus_articles, machine, machine_line, watch_rules  # noqa: E402

_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_TAG = re.compile(r"<[^>]+>")


def make_items(count: int) -> list[Any]:
    import opencc

    from monitor.types import Item

    articles, _ = corpus_articles()
    s2t = opencc.OpenCC("s2t")
    items = []
    for n in range(count):
        title, url, body = articles[n % len(articles)]
        if n % 2:
            title, body = s2t.convert(title), s2t.convert(body)
        items.append(
            Item(
                key=f"{url}#{n}",
                url=url,
                title=title,
                published_ms=1_690_000_000_000 + n,
                feed_id="rfi",
                content=body,
            )
        )
    return items


def news_rules(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """Rules whose keywords are all cut from the articles (at most 5 % of them each)."""
    rng = random.Random(seed)
    articles, _ = corpus_articles()
    texts = [t + _TAG.sub("", b) for t, _, b in articles]
    runs = [r for t in texts for r in _HAN_RUN.findall(t)]
    limit = max(1, len(texts) // 20)
    seen: dict[str, bool] = {}

    def word() -> str:
        for _ in range(100):
            run = rng.choice(runs)
            size = rng.randint(2, min(4, len(run)))
            start = rng.randint(0, len(run) - size)
            w = run[start : start + size]
            if w not in seen:
                seen[w] = sum(w in t for t in texts) <= limit
            if seen[w]:
                return w
        return w

    rules: list[dict[str, Any]] = []
    for n in range(count):
        shape = rng.random()
        if shape < 0.5:
            rules.append({"name": f"n{n}", "any": [word()]})
        elif shape < 0.8:
            rules.append({"name": f"n{n}", "any": [word(), word(), word()]})
        else:
            rules.append({"name": f"n{n}", "all": [word(), word()]})
    return rules


def specs(rules: list[dict[str, Any]], analyst: bool = True) -> list[Any]:
    from monitor.types import RuleSpec

    return [
        RuleSpec(
            r["name"],
            query=r.get("query"),
            any=tuple(r.get("any", ())),
            all=tuple(r.get("all", ())),
            none=tuple(r.get("none", ())),
            notify=("out",),
            aliases=analyst,
            exact=not analyst,
        )
        for r in rules
    ]


def measure(
    rules: list[dict[str, Any]], items: int, repeat: int, analyst: bool = False
) -> dict[str, float]:
    from monitor.match import compile_rules

    t0 = time.perf_counter()
    ruleset = compile_rules(specs(rules, analyst))
    compile_s = time.perf_counter() - t0
    per_item, hits = [], 0
    for _ in range(repeat):
        batch = make_items(items)  # fresh objects: no cache can carry over
        t0 = time.perf_counter()
        found = [ruleset.match(it, ("rfi",)) for it in batch]
        per_item.append((time.perf_counter() - t0) * 1000 / len(batch))
        hits = sum(len(f) for f in found)
    return {
        "rules": len(rules),
        "compile_s": compile_s,
        "ms_per_item": statistics.median(per_item),
        "matches_per_item": hits / items,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="500 items, 3 sizes")
    p.add_argument("--counts", default="100,300,1000,3000,10000")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3, help="timed passes per size (median)")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.items, args.counts, args.repeat = 500, "100,1000,10000", 1
    counts = [int(x) for x in args.counts.split(",")]
    m = machine()
    print(f"machine: {machine_line(m)}")
    print(f"{args.items} RFI items (half in Traditional Chinese), median of {args.repeat}")
    # Imports, OpenCC's dictionaries, the query grammar and the normalizer's caches get
    # built on first use: once here, outside the timings, or the smallest (first) rule
    # set, the baseline of the ratios, would pay for them.
    # jieba's dictionary too (about 1 s, once a process).
    measure(watch_rules(counts[0]), min(args.items, 200), 1, analyst=True)
    out: dict[str, Any] = {"machine": m, "items": args.items, "sets": {}}
    for name, gen in (("watch list", watch_rules), ("news words", news_rules)):
        print(
            f"\n{name}\n| rules | matching | compile | per item | x {counts[0]} rules "
            "| matches/item |\n|---:|---|---:|---:|---:|---:|"
        )
        for mode in ("today", "analyst"):
            rows = [measure(gen(n), args.items, args.repeat, mode == "analyst") for n in counts]
            base = rows[0]["ms_per_item"]
            for r in rows:
                r["ratio"] = r["ms_per_item"] / base
            out["sets"][f"{name}, {mode}"] = rows
            for r in rows:
                print(
                    f"| {r['rules']:,} | {mode} | {r['compile_s']:.2f} s | "
                    f"{r['ms_per_item']:.3f} ms | {r['ratio']:.2f}x | "
                    f"{r['matches_per_item']:.2f} |",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
