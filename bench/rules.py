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

Each size is measured twice in the same run, in alternating passes: "today" (every rule
``aliases: false``, ``exact: true``: matching as before issue #17) and "analyst" (the
defaults: the built-in alias table, and 2-3 character Chinese keywords counted only where
they are words), printed side by side with their ratio.

Each pass is timed on fresh Item objects (nothing carried over from the pass before but
the word check's verdict cache, as in a daemon). Times are CPU time of this process, the
fastest of ``--repeat`` passes: on a shared machine, other programs only ever add time.
The baseline is the cost of the smallest rule set in the same run: the "x" column says
how the cost per item grows with the rule count (one automaton for all keywords should
keep it well below the rule-count ratio).
"""

from __future__ import annotations

import argparse
import json
import random
import re
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


def measure(rules: list[dict[str, Any]], items: int, repeat: int) -> dict[str, dict[str, float]]:
    """Both modes of one rule set: compiled, then timed in alternating passes."""
    from monitor.match import compile_rules

    modes = {"today": False, "analyst": True}
    sets, out = {}, {}
    for mode, analyst in modes.items():
        t0 = time.process_time()
        sets[mode] = compile_rules(specs(rules, analyst))
        out[mode] = {"rules": len(rules), "compile_s": time.process_time() - t0}
    best = dict.fromkeys(modes, float("inf"))
    hits = dict.fromkeys(modes, 0)
    for _ in range(repeat):
        for mode, ruleset in sets.items():
            batch = make_items(items)  # fresh objects: no cache can carry over
            t0 = time.process_time()
            found = [ruleset.match(it, ("rfi",)) for it in batch]
            best[mode] = min(best[mode], (time.process_time() - t0) * 1000 / len(batch))
            hits[mode] = sum(len(f) for f in found)
    for mode in modes:
        out[mode]["ms_per_item"] = best[mode]
        out[mode]["matches_per_item"] = hits[mode] / items
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="500 items, 3 sizes")
    p.add_argument("--counts", default="100,300,1000,3000,10000")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3, help="timed passes per size (fastest)")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.items, args.counts, args.repeat = 500, "100,1000,10000", 1
    counts = [int(x) for x in args.counts.split(",")]
    m = machine()
    print(f"machine: {machine_line(m)}")
    print(
        f"{args.items} RFI items (half in Traditional Chinese); CPU time, the fastest of "
        f"{args.repeat} passes, today's and the analyst's alternating"
    )
    # Imports, OpenCC's dictionaries, the query grammar and the normalizer's caches get
    # built on first use: once here, outside the timings, or the smallest (first) rule
    # set, the baseline of the ratios, would pay for them.
    # The word list's tries are mapped then too.
    measure(watch_rules(counts[0]), min(args.items, 200), 1)
    out: dict[str, Any] = {"machine": m, "items": args.items, "sets": {}}
    for name, gen in (("watch list", watch_rules), ("news words", news_rules)):
        print(
            f"\n{name}\n| rules | compile today | compile analyst | today | analyst "
            f"| analyst / today | analyst x {counts[0]} rules | matches/item today "
            "| analyst |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        rows: dict[str, list[dict[str, float]]] = {"today": [], "analyst": []}
        for n in counts:
            got = measure(gen(n), args.items, args.repeat)
            for mode, row in got.items():
                row["ratio"] = row["ms_per_item"] / (rows[mode] or [row])[0]["ms_per_item"]
                rows[mode].append(row)
            t, a_ = got["today"], got["analyst"]
            print(
                f"| {n:,} | {t['compile_s']:.2f} s | {a_['compile_s']:.2f} s | "
                f"{t['ms_per_item']:.3f} ms | {a_['ms_per_item']:.3f} ms | "
                f"{a_['ms_per_item'] / t['ms_per_item']:.2f} | {a_['ratio']:.2f}x | "
                f"{t['matches_per_item']:.2f} | {a_['matches_per_item']:.2f} |",
                flush=True,
            )
        for mode, mode_rows in rows.items():
            out["sets"][f"{name}, {mode}"] = mode_rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
