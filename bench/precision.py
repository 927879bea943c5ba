"""Precision of short Chinese keywords on the RFI corpus: hits before and after the word
boundary check, and every rejected hit in context (docs/benchmarks-match.md).

    python bench/precision.py [--keywords 中法,中美,...] [--context 8]

Reads ../shared/corpus/rfi (163 RFI 中文 articles: title and body, folded as the matcher
folds them). For each keyword, every occurrence is checked with ``monitor.match.words``
as a rule without ``exact: true`` would; the output lists the counts and each rejected
occurrence with its reason, so a reader can judge whether any of them should have counted.
It also reports the cost of the check per occurrence.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import corpus_articles  # noqa: E402

DEFAULT = "中法,中美,中俄,中非,中欧,台独,中日,美中,中共,法国"


def main(argv: list[str] | None = None) -> int:
    from monitor.match import words
    from monitor.match.normalize import fold_text, html_to_text, plain_text

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keywords", default=DEFAULT)
    p.add_argument("--context", type=int, default=8)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    words.load()
    load_s = time.perf_counter() - t0
    articles, origin = corpus_articles()
    texts = [fold_text(plain_text(t)) + " " + fold_text(html_to_text(b)) for t, _, b in articles]
    print(f"{origin}; word list mapped in {load_s:.3f} s\n")
    print(
        "| keyword | hits (substring) | counted | rejected: straddle | rejected: other "
        "meaning | articles before | after |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    rejected: list[tuple[str, str, str]] = []
    checks, spent = 0, 0.0
    for kw in args.keywords.split(","):
        kinds: Counter[str] = Counter()
        before: set[int] = set()
        after: set[int] = set()
        for n, text in enumerate(texts):
            start = text.find(kw)
            while start >= 0:
                t = time.perf_counter()
                verdict = words.check(text, start, start + len(kw))
                spent += time.perf_counter() - t
                checks += 1
                before.add(n)
                if verdict.counted:
                    kinds["counted"] += 1
                    after.add(n)
                else:
                    kind = "other" if "another meaning" in verdict.reason else "straddle"
                    kinds[kind] += 1
                    c = args.context
                    context = (
                        text[max(0, start - c) : start]
                        + "【"
                        + kw
                        + "】"
                        + text[start + len(kw) : start + len(kw) + c]
                    )
                    rejected.append((kw, context, verdict.reason))
                start = text.find(kw, start + 1)
        total = sum(kinds.values())
        print(
            f"| {kw} | {total} | {kinds['counted']} | {kinds['straddle']} | {kinds['other']} "
            f"| {len(before)} | {len(after)} |"
        )
    info = words._in_window.cache_info()
    print(
        f"\n{checks} checks, {spent / max(checks, 1) * 1e6:.1f} µs each on average; "
        f"verdicts reused from the cache (same phrase around a hit): {info.hits} of "
        f"{info.hits + info.misses}\n"
    )
    print("Rejected hits:\n")
    for kw, context, reason in rejected:
        print(f"- {kw}: {context} — {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
