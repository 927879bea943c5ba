"""Benchmark: the compiled rule engine against a naive loop over the same rules and items.

    python bench/match.py [--quick] [--items N] [--corpus DIR]

Items come from ../shared/corpus (the <!--ms--> archive format) when it sits
beside the repository, else from built-in sample articles; either way they are
multiplied to the requested count (paragraphs reshuffled, half converted to
Traditional Chinese, as the RFI /tw feed serves them). Rules are 2-6 character
Chinese keywords cut from that text (plus some English words) in the shapes
users write: single words, OR, AND, exclusions, title scopes, any/all lists.
Keywords found in more than 5% of articles are skipped, as nobody alerts on
"的是". The naive loop normalizes each item once and then tests every rule with
``str.find``; it runs on a sample of the items (it is slow) and both engines'
results are compared on that sample.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import opencc

from monitor.match import compile_rules
from monitor.match.engine import FIELD_ORDER, item_fields
from monitor.match.normalize import fold_text, is_word_char
from monitor.match.query import DEFAULT_FIELDS, And, Node, Not, Or, Pattern, Term, parse_query
from monitor.types import Item, RuleSpec

REPO = Path(__file__).resolve().parent.parent
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
_ENTRY = re.compile(r"<!--(\d+)-->\s*\n\[(.*)\]\((\S+)\)\s*\n-+\s*\n(.*?)(?=\n<!--\d+-->|\Z)", re.S)
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_LATIN_WORD = re.compile(r"\b[A-Za-z]{4,12}\b")

SAMPLE_ARTICLES = [
    ("习近平结束访俄，北京与莫斯科建立针对西方的&quot;特殊&quot;关系",
     "<div>22/03/2023 - 15:10</div><p><strong>中国国家主席习近平周三离开莫斯科，"
     "结束对俄罗斯的国是访问。普京和习近平说，中俄之间的特殊关系正在进入一个新时代。</strong></p><p><span><span>法新社说，"
     "习近平先生的莫斯科之行是对俄罗斯领导人的一个重要认可，他一直是国际刑事法院（ICC）逮捕令的目标。"
     "</span></span></p><p>乌克兰总统泽连斯基周二表示，他已经邀请中国进行对话，并等待中国的回应。</p>"
     "<p>白宫国家安全委员会发言人约翰-柯比说，在乌克兰问题上，中国不能被合理地看作是公正的。</p>"),
    ("台湾总统大选：选民关注经济与两岸关系",
     "<p>台湾选举委员会公布投票率。民进党与国民党候选人在台北举行最后造势晚会。</p>"
     "<p>分析人士认为，两岸关系、能源政策和年轻人住房问题是选民最关心的议题。</p>"
     "<p>美国国务院表示尊重台湾人民的选择，北京则重申反对任何形式的台独。</p>"),
    ("Europe weighs AI rules as elections near",
     "<p>European lawmakers debated artificial intelligence rules on Tuesday. The proposal "
     "covers AI-driven surveillance and transparency for large language models.</p>"
     "<p>欧盟委员会表示，新规将在两年内生效，科技企业需要提交风险评估报告。</p>"),
]


def parse_archive(text: str) -> list[tuple[int, str, str, str]]:
    return [(int(m[1]), m[2], m[3], m[4].strip()) for m in _ENTRY.finditer(text)]


def load_articles(corpus: Path | None) -> tuple[list[tuple[int, str, str, str]], str]:
    if corpus is not None and corpus.is_dir():
        out = []
        for path in sorted(corpus.glob("*/*.md")):
            out.extend(parse_archive(path.read_text(encoding="utf-8", errors="replace")))
        if out:
            return out, f"{len(out)} articles from {corpus}"
    return ([(1679494503000 + i, t, f"https://example.org/{i}", b)
             for i, (t, b) in enumerate(SAMPLE_ARTICLES)],
            f"{len(SAMPLE_ARTICLES)} built-in sample articles (no corpus found)")


def make_items(articles: Sequence[tuple[int, str, str, str]], count: int,
               rng: random.Random) -> list[Item]:
    s2t = opencc.OpenCC("s2t")
    traditional = {i: (s2t.convert(t), s2t.convert(b)) for i, (_, t, _, b) in enumerate(articles)}
    items = []
    for n in range(count):
        i = n % len(articles)
        ms, title, url, body = articles[i]
        if n % 2:
            title, body = traditional[i]
        paragraphs = body.split("</p>")
        if n >= len(articles) * 2:
            rng.shuffle(paragraphs)
        items.append(Item(key=f"{url}#{n}", url=url, title=title, published_ms=ms,
                          feed_id="rfi-tw" if n % 2 else "rfi-cn",
                          content="</p>".join(paragraphs)))
    return items


def make_rules(items: Sequence[Item], count: int, rng: random.Random) -> list[RuleSpec]:
    texts = [fold_text(" ".join(f.folded for f in item_fields(it).values())) for it in items]
    han: list[str] = [run for t in texts for run in _HAN_RUN.findall(t)]
    latin: list[str] = sorted({w for t in texts for w in _LATIN_WORD.findall(t)}) or ["news"]
    limit = max(1, len(texts) // 20)
    cache: dict[str, bool] = {}

    def selective(word: str) -> bool:
        if word not in cache:
            cache[word] = sum(word in t for t in texts) <= limit
        return cache[word]

    def cjk_word() -> str:
        for _ in range(50):
            run = rng.choice(han)
            size = rng.randint(2, min(6, len(run)))
            start = rng.randint(0, len(run) - size)
            word = run[start:start + size]
            if selective(word):
                return word
        return word

    specs: list[RuleSpec] = []
    for n in range(count):
        shape = rng.random()
        a, b = cjk_word(), cjk_word()
        if shape < 0.40:
            spec = RuleSpec(f"r{n}", query=a)
        elif shape < 0.60:
            spec = RuleSpec(f"r{n}", query=f"{a} OR {b}")
        elif shape < 0.72:
            spec = RuleSpec(f"r{n}", query=f"{a} {b}")
        elif shape < 0.82:
            spec = RuleSpec(f"r{n}", query=f"{a} -{b}")
        elif shape < 0.87:
            spec = RuleSpec(f"r{n}", query=f'title:"{a}"')
        elif shape < 0.94:
            spec = RuleSpec(f"r{n}", query=f"{rng.choice(latin)} OR {rng.choice(latin)}")
        elif shape < 0.999:
            spec = RuleSpec(f"r{n}", any=(a, b, cjk_word()), none=(cjk_word(),))
        else:
            spec = RuleSpec(f"r{n}", query=f"{a} re:/{b[0]}.{{0,4}}{b[-1]}/")
        specs.append(spec)
    return specs


class NaiveRules:
    """The baseline: every rule tested against every item with plain string searches."""

    def __init__(self, specs: Sequence[RuleSpec]) -> None:
        self.rules: list[tuple[RuleSpec, Node]] = []
        for spec in specs:
            parts: list[Node] = [parse_query(spec.query)] if spec.query else []
            if spec.any:
                parts.append(Or(tuple(Term(k, DEFAULT_FIELDS, 0) for k in spec.any)))
            parts += [Term(k, DEFAULT_FIELDS, 0) for k in spec.all]
            parts += [Not(Term(k, DEFAULT_FIELDS, 0)) for k in spec.none]
            self.rules.append((spec, parts[0] if len(parts) == 1 else And(tuple(parts))))

    @staticmethod
    def _found(word: str, text: str) -> bool:
        start = text.find(word)
        while start >= 0:
            end = start + len(word)
            if (not is_word_char(word[0]) or start == 0 or not is_word_char(text[start - 1])) \
                    and (not is_word_char(word[-1]) or end == len(text)
                         or not is_word_char(text[end])):
                return True
            start = text.find(word, start + 1)
        return False

    def _eval(self, node: Node, fields: dict[str, str]) -> bool:
        if isinstance(node, Term):
            word = fold_text(node.text)
            return any(self._found(word, fields[f]) for f in node.fields)
        if isinstance(node, Pattern):
            pattern = re.compile(node.source, re.I)
            return any(pattern.search(fields[f]) for f in node.fields)
        if isinstance(node, Not):
            return not self._eval(node.child, fields)
        values = (self._eval(c, fields) for c in node.children)
        return all(values) if isinstance(node, And) else any(values)

    def match(self, item: Item) -> list[str]:
        fields = {name: f.folded for name, f in item_fields(item).items()}
        return [spec.name for spec, tree in self.rules if self._eval(tree, fields)]


def per_item_ms(seconds: float, n: int) -> float:
    return seconds * 1000 / max(n, 1)


def run(rule_count: int, items: list[Item], naive_sample: int, rng: random.Random) -> None:
    specs = make_rules(items[:800], rule_count, rng)
    t0 = time.perf_counter()
    ruleset = compile_rules(specs)
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    engine_results = [ruleset.match(it, [it.feed_id]) for it in items]
    engine_s = time.perf_counter() - t0
    matches = [len(r) for r in engine_results]

    t0 = time.perf_counter()
    for it in items:
        item_fields(it)
    normalize_s = time.perf_counter() - t0

    sample = items[:: max(1, len(items) // naive_sample)][:naive_sample]
    naive = NaiveRules(specs)
    t0 = time.perf_counter()
    naive_results = [naive.match(it) for it in sample]
    naive_s = time.perf_counter() - t0
    same = all(
        [m.rule for m in ruleset.match(it, [it.feed_id])] == names
        for it, names in zip(sample, naive_results, strict=True))

    engine_ms = per_item_ms(engine_s, len(items))
    naive_ms = per_item_ms(naive_s, len(sample))
    print(f"rules {rule_count:>6}: compile {compile_s:6.3f} s | engine {engine_ms:7.4f} ms/item "
          f"over {len(items)} items "
          f"(normalization alone {per_item_ms(normalize_s, len(items)):.4f})"
          f" | naive {naive_ms:8.3f} ms/item over {len(sample)} items | ratio "
          f"{naive_ms / engine_ms:6.1f}x | matches/item mean {statistics.mean(matches):.2f} "
          f"max {max(matches)} | results identical on sample: {same}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer items, smaller naive sample")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    args = parser.parse_args(argv)
    rng = random.Random(20230322)
    count = args.items or (2000 if args.quick else 10000)
    articles, origin = load_articles(args.corpus)
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | Python {sys.version.split()[0]}")
    print(f"fields scanned per item: {', '.join(FIELD_ORDER)}")
    if len(articles) < 50:
        print("note: without ../shared/corpus every keyword hits a third of the items; the "
              "figures then measure match reporting, not a realistic rule set")
    rfi = [a for a in articles if "rfi.fr" in a[2]]
    sets = [("RFI news items", rfi), ("whole corpus (RFI + long-form oped2)", articles)]
    for label, subset in sets if rfi and len(rfi) < len(articles) else sets[1:]:
        items = make_items(subset, count, rng)
        chars = statistics.mean(len(i.title) + len(i.content) for i in items)
        print(f"\n{label}: {len(items)} items built from {len(subset)} of {origin}; "
              f"mean {chars:.0f} chars of title+HTML")
        for rule_count in (1000, 10000):
            run(rule_count, items, 40 if args.quick else 200, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
