"""Benchmark: the compiled rule engine against a naive loop over the same rules and items.

    python bench/match.py [--quick] [--items N] [--corpus DIR]
    python bench/match.py --compare [--items N] [--repeat N]

Items come from ../shared/corpus (the <!--ms--> archive format) when it sits
beside the repository, else from built-in sample articles; either way they are
multiplied to the requested count (paragraphs reshuffled, half converted to
Traditional Chinese, as the RFI /tw feed serves them). Two item sets: RFI news
items (the feeds this project is for) and long-form articles (the rest of the
corpus), which are four times longer.

Two rule sets, each at 1,000 and 10,000 rules, in the shapes users write
(single words, OR, AND, exclusions, title scopes, any/none lists, a few
regexes):

- "watch list", the realistic case: keywords are 2-6 character n-grams drawn
  from the whole corpus, kept with probability 1/(1+df)^3 where df is the number
  of the items' source articles that contain them. Most terms of a real watch
  list do not occur in any given week's news; a few do. 3% of the rules name a
  person, place or topic from a list of common news names (0.2% that name
  alone, the rest narrowed by another keyword); 7% are English words chosen
  the same way.
- "hot", a stress case: keywords cut from the items' own text, keeping those
  found in at most 5% of the articles. At 10,000 rules over a hundred rules match
  every item, far more than real alert rules do; the engine then spends its
  time building matches and snippets.

Matches per item are printed so the realism of each set can be judged. The
naive loop normalizes each item once (the same function the engine uses, for
the same fields) and then evaluates every rule's formula with ``str.find`` over
the folded fields; its keywords are folded and its regexes compiled once, when
it is built. It runs on a sample of the items (it is slow) and both engines'
results are compared on that sample.

Each rule set runs twice in the same process: "today", matching as before issue #17
(every rule ``aliases: false`` and ``exact: true``: no alias forms, Chinese keywords as
plain substrings), compared with the naive loop; and "analyst", the defaults (the built-in
alias table, and 2-3 character Chinese keywords counted only where they are words), which
the naive loop does not implement: it is not compared, and its compile time includes
loading the alias table (the word list is mapped before the timings: once a process).

``--compare`` times only the 10,000-rule watch list over RFI news items, today's matching
and the analyst defaults compiled in one process and timed in alternating passes (the
fastest of each kept; with the word check's verdict cache emptied before every item, and
with the word check replaced by a constant, to show its share): the added cost with less
noise from a shared machine.

Times are CPU time of this process, the fastest of ``--repeat`` passes (5), for
the engine and the naive loop alike: on a shared machine, other programs only
ever add time.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import ahocorasick_rs
import opencc

from monitor.match import compile_rules, words
from monitor.match.engine import FIELD_ORDER, item_fields
from monitor.match.normalize import fold_text, html_to_text, is_word_char, to_simplified
from monitor.match.query import DEFAULT_FIELDS, And, Node, Not, Or, Pattern, Term, parse_query
from monitor.types import Item, RuleSpec

REPO = Path(__file__).resolve().parent.parent
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
_ENTRY = re.compile(r"<!--(\d+)-->\s*\n\[(.*)\]\((\S+)\)\s*\n-+\s*\n(.*?)(?=\n<!--\d+-->|\Z)", re.S)
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_LATIN_WORD = re.compile(r"\b[A-Za-z]{4,12}\b")

Article = tuple[int, str, str, str]  # published ms, title, url, HTML body

SAMPLE_ARTICLES = [
    (
        "习近平结束访俄，北京与莫斯科建立针对西方的&quot;特殊&quot;关系",
        "<div>22/03/2023 - 15:10</div><p><strong>中国国家主席习近平周三离开莫斯科，"
        "结束对俄罗斯的国是访问。普京和习近平说，中俄之间的特殊关系正在进入一个新时代。</strong></p><p><span><span>法新社说，"
        "习近平先生的莫斯科之行是对俄罗斯领导人的一个重要认可，他一直是国际刑事法院（ICC）逮捕令的目标。"
        "</span></span></p><p>乌克兰总统泽连斯基周二表示，他已经邀请中国进行对话，并等待中国的回应。</p>"
        "<p>白宫国家安全委员会发言人约翰-柯比说，在乌克兰问题上，中国不能被合理地看作是公正的。</p>",
    ),
    (
        "台湾总统大选：选民关注经济与两岸关系",
        "<p>台湾选举委员会公布投票率。民进党与国民党候选人在台北举行最后造势晚会。</p>"
        "<p>分析人士认为，两岸关系、能源政策和年轻人住房问题是选民最关心的议题。</p>"
        "<p>美国国务院表示尊重台湾人民的选择，北京则重申反对任何形式的台独。</p>",
    ),
    (
        "Europe weighs AI rules as elections near",
        "<p>European lawmakers debated artificial intelligence rules on Tuesday. The proposal "
        "covers AI-driven surveillance and transparency for large language models.</p>"
        "<p>欧盟委员会表示，新规将在两年内生效，科技企业需要提交风险评估报告。</p>",
    ),
]

# People, places and topics that news alerts are written for; they occur often.
NEWS_NAMES = [
    "习近平",
    "普京",
    "拜登",
    "特朗普",
    "泽连斯基",
    "马克龙",
    "李强",
    "王毅",
    "赖清德",
    "蔡英文",
    "乌克兰",
    "俄罗斯",
    "台湾",
    "香港",
    "新疆",
    "西藏",
    "北京",
    "莫斯科",
    "华盛顿",
    "巴黎",
    "欧盟",
    "北约",
    "联合国",
    "中俄",
    "中美",
    "两岸",
    "南海",
    "朝鲜",
    "日本",
    "伊朗",
    "以色列",
    "加沙",
    "哈马斯",
    "国民党",
    "民进党",
    "人权",
    "制裁",
    "华为",
    "台积电",
    "新冠",
    "疫情",
    "选举",
    "关税",
    "稀土",
    "芯片",
    "人工智能",
    "气候变化",
    "难民",
    "军演",
    "间谍",
]


def parse_archive(text: str) -> list[Article]:
    return [(int(m[1]), m[2], m[3], m[4].strip()) for m in _ENTRY.finditer(text)]


def load_articles(corpus: Path | None) -> tuple[list[Article], str]:
    if corpus is not None and corpus.is_dir():
        out = []
        for path in sorted(corpus.glob("*/*.md")):
            out.extend(parse_archive(path.read_text(encoding="utf-8", errors="replace")))
        if out:
            return out, f"{len(out)} articles from {corpus}"
    return (
        [
            (1679494503000 + i, t, f"https://example.org/{i}", b)
            for i, (t, b) in enumerate(SAMPLE_ARTICLES)
        ],
        f"{len(SAMPLE_ARTICLES)} built-in sample articles (no corpus found)",
    )


def make_items(articles: Sequence[Article], count: int, rng: random.Random) -> list[Item]:
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
        items.append(
            Item(
                key=f"{url}#{n}",
                url=url,
                title=title,
                published_ms=ms,
                feed_id="rfi-tw" if n % 2 else "rfi-cn",
                content="</p>".join(paragraphs),
            )
        )
    return items


def folded_article(article: Article) -> str:
    _, title, _, body = article
    return fold_text(html_to_text(title) + " " + html_to_text(body))


WordFn = Callable[[], str]


def spec_of(n: int, rng: random.Random, word: WordFn, latin: WordFn) -> RuleSpec:
    """One rule in a shape users write, its keywords drawn from ``word`` and ``latin``."""
    shape = rng.random()
    a, b = word(), word()
    if shape < 0.40:
        return RuleSpec(f"r{n}", query=a)
    if shape < 0.60:
        return RuleSpec(f"r{n}", query=f"{a} OR {b}")
    if shape < 0.72:
        return RuleSpec(f"r{n}", query=f"{a} {b}")
    if shape < 0.82:
        return RuleSpec(f"r{n}", query=f"{a} -{b}")
    if shape < 0.87:
        return RuleSpec(f"r{n}", query=f'title:"{a}"')
    if shape < 0.94:
        return RuleSpec(f"r{n}", query=f"{latin()} OR {latin()}")
    if shape < 0.999:
        return RuleSpec(f"r{n}", any=(a, b, word()), none=(word(),))
    return RuleSpec(f"r{n}", query=f"{a} re:/{b[0]}.{{0,4}}{b[-1]}/")


def hot_rules(items: Sequence[Item], count: int, rng: random.Random) -> list[RuleSpec]:
    """Keywords cut from the items' own text, kept when in at most 5% of them."""
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
            word = run[start : start + size]
            if selective(word):
                return word
        return word

    return [spec_of(n, rng, cjk_word, lambda: rng.choice(latin)) for n in range(count)]


class Vocabulary:
    """Words drawn from a corpus, kept with probability 1/(1+df)^3 (df: in how many of the
    items' source articles they occur), so most are rare and some are common."""

    def __init__(
        self,
        pool: Sequence[str],
        sources: Sequence[str],
        rng: random.Random,
        pattern: re.Pattern[str],
        sizes: tuple[int, int] | None,
    ) -> None:
        self.runs = [r for t in pool for r in pattern.findall(t)]
        self.ends = list(itertools.accumulate(len(r) for r in self.runs))
        self.sources = sources
        self.rng = rng
        self.sizes = sizes  # n-gram lengths, or None for whole words
        self.ready: list[str] = []

    def _draw(self) -> str:
        # A run chosen in proportion to its length: every position equally likely.
        run = self.runs[bisect.bisect_right(self.ends, self.rng.randrange(self.ends[-1]))]
        if self.sizes is None:
            return run.lower()
        size = self.rng.randint(self.sizes[0], min(self.sizes[1], len(run)))
        start = self.rng.randint(0, len(run) - size)
        return run[start : start + size]

    def _refill(self, batch: int = 4000) -> None:
        # dict, not set: a set's order follows string hashing, which differs per process.
        candidates = list(dict.fromkeys(self._draw() for _ in range(batch)))
        automaton = ahocorasick_rs.AhoCorasick(candidates)
        df = [0] * len(candidates)
        for text in self.sources:  # one scan per article counts every candidate at once
            for i in {m[0] for m in automaton.find_matches_as_indexes(text, overlapping=True)}:
                df[i] += 1
        kept = [
            w for w, d in zip(candidates, df, strict=True) if self.rng.random() < 1 / (1 + d) ** 3
        ]
        self.rng.shuffle(kept)
        self.ready.extend(kept)

    def __call__(self) -> str:
        while not self.ready:
            self._refill()
        return self.ready.pop()


def watch_list_rules(
    pool: Sequence[str], sources: Sequence[str], count: int, rng: random.Random
) -> list[RuleSpec]:
    """The realistic rule set: mostly rare words, a few common news names."""
    han = Vocabulary(pool, sources, rng, _HAN_RUN, (2, 6))
    latin = Vocabulary(pool, sources, rng, _LATIN_WORD, None)
    specs = []
    for n in range(count):
        pick = rng.random()
        if pick < 0.002:
            specs.append(RuleSpec(f"r{n}", query=rng.choice(NEWS_NAMES)))
        elif pick < 0.03:
            # "台湾 半导体": a common name narrowed by another keyword.
            specs.append(RuleSpec(f"r{n}", query=f"{rng.choice(NEWS_NAMES)} {han()}"))
        else:
            specs.append(spec_of(n, rng, han, latin))
    return specs


class NaiveRules:
    """The baseline: every rule tested against every item with plain string searches."""

    def __init__(self, specs: Sequence[RuleSpec]) -> None:
        self.fields: set[str] = set()
        self.rules: list[tuple[str, tuple[object, ...]]] = []
        for spec in specs:
            parts: list[Node] = [parse_query(spec.query)] if spec.query else []
            if spec.any:
                parts.append(Or(tuple(Term(k, DEFAULT_FIELDS, 0) for k in spec.any)))
            parts += [Term(k, DEFAULT_FIELDS, 0) for k in spec.all]
            parts += [Not(Term(k, DEFAULT_FIELDS, 0)) for k in spec.none]
            tree = parts[0] if len(parts) == 1 else And(tuple(parts))
            self.rules.append((spec.name, self._prepare(tree)))
        self.field_names = [f for f in FIELD_ORDER if f in self.fields]

    def _prepare(self, node: Node) -> tuple[object, ...]:
        # Keywords folded and regexes compiled once, as any implementation would.
        if isinstance(node, Term):
            self.fields |= node.fields
            return ("k", fold_text(node.text), tuple(node.fields))
        if isinstance(node, Pattern):
            self.fields |= node.fields
            return ("r", re.compile(to_simplified(node.source), re.I), tuple(node.fields))
        if isinstance(node, Not):
            return ("not", self._prepare(node.child))
        kind = "and" if isinstance(node, And) else "or"
        return (kind, tuple(self._prepare(c) for c in node.children))

    @staticmethod
    def _found(word: str, text: str) -> bool:
        start = text.find(word)
        while start >= 0:
            end = start + len(word)
            if (not is_word_char(word[0]) or start == 0 or not is_word_char(text[start - 1])) and (
                not is_word_char(word[-1]) or end == len(text) or not is_word_char(text[end])
            ):
                return True
            start = text.find(word, start + 1)
        return False

    def _eval(self, node: tuple[object, ...], fields: dict[str, str]) -> bool:
        kind = node[0]
        if kind == "k":
            word = node[1]
            return any(self._found(word, fields[f]) for f in node[2])  # type: ignore[arg-type, union-attr]
        if kind == "r":
            return any(node[1].search(fields[f]) for f in node[2])  # type: ignore[attr-defined, union-attr]
        if kind == "not":
            return not self._eval(node[1], fields)  # type: ignore[arg-type]
        values = (self._eval(c, fields) for c in node[1])  # type: ignore[attr-defined]
        return all(values) if kind == "and" else any(values)

    def match(self, item: Item) -> list[str]:
        fields = {name: f.folded for name, f in item_fields(item, self.field_names).items()}
        return [name for name, tree in self.rules if self._eval(tree, fields)]


@dataclass
class Result:
    items: str
    rules: str
    mode: str
    count: int
    compile_s: float
    engine_ms: float
    normalize_ms: float
    naive_ms: float
    matches: float
    max_matches: int
    same: bool

    @property
    def ratio(self) -> float:
        return self.naive_ms / self.engine_ms


def per_item_ms(seconds: float, n: int) -> float:
    return seconds * 1000 / max(n, 1)


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """CPU seconds of the fastest of ``repeat`` passes. CPU time of this process, not
    wall time, and the fastest pass: other programs on the machine only ever add time."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        work()
        times.append(time.process_time() - t0)
    return min(times)


def run(
    items_label: str,
    rules_label: str,
    specs: list[RuleSpec],
    items: list[Item],
    naive_sample: int,
    repeat: int,
    analyst: bool = False,
) -> Result:
    if not analyst:
        specs = [replace(s, aliases=False, exact=True) for s in specs]
    else:
        words.load()  # once a process, as the daemon does: not the compile's cost
    t0 = time.process_time()
    ruleset = compile_rules(specs)
    compile_s = time.process_time() - t0
    for it in items[:100]:  # warm-up: lazily built tables, caches
        ruleset.match(it, [it.feed_id])

    engine_results: list[list[object]] = []

    def engine() -> None:
        engine_results[:] = [ruleset.match(it, [it.feed_id]) for it in items]

    engine_s = best_of(repeat, engine)
    matches = [len(r) for r in engine_results]

    naive = NaiveRules(specs)
    normalize_s = best_of(repeat, lambda: [item_fields(it, naive.field_names) for it in items])
    mode = "analyst" if analyst else "today"
    if analyst:  # the naive loop knows no aliases nor word boundaries: nothing to compare
        res = Result(
            items_label,
            rules_label,
            mode,
            len(specs),
            compile_s,
            per_item_ms(engine_s, len(items)),
            per_item_ms(normalize_s, len(items)),
            float("nan"),
            statistics.mean(matches),
            max(matches),
            True,
        )
        print(
            f"{rules_label:>10} {res.count:>6} rules, {mode}: compile {compile_s:6.3f} s | "
            f"engine {res.engine_ms:7.4f} ms/item | matches/item mean {res.matches:.2f} "
            f"max {res.max_matches}",
            flush=True,
        )
        return res

    sample = items[:: max(1, len(items) // naive_sample)][:naive_sample]
    naive.match(sample[0])
    naive_results: list[list[str]] = []

    def naive_loop() -> None:
        naive_results[:] = [naive.match(it) for it in sample]

    naive_s = best_of(repeat, naive_loop)
    same = all(
        [m.rule for m in ruleset.match(it, [it.feed_id])] == names
        for it, names in zip(sample, naive_results, strict=True)
    )

    res = Result(
        items_label,
        rules_label,
        mode,
        len(specs),
        compile_s,
        per_item_ms(engine_s, len(items)),
        per_item_ms(normalize_s, len(items)),
        per_item_ms(naive_s, len(sample)),
        statistics.mean(matches),
        max(matches),
        same,
    )
    print(
        f"{rules_label:>10} {res.count:>6} rules, {mode}: compile {compile_s:6.3f} s | engine "
        f"{res.engine_ms:7.4f} ms/item (normalization alone {res.normalize_ms:.4f}) | naive "
        f"{res.naive_ms:8.3f} ms/item over {len(sample)} items | ratio {res.ratio:6.1f}x | "
        f"matches/item mean {res.matches:.2f} max {res.max_matches} | "
        f"same results on sample: {same}",
        flush=True,
    )
    return res


def compare(items: list[Item], specs: list[RuleSpec], repeat: int) -> None:
    """Today's matching against the analyst defaults, alternating passes (``--compare``)."""
    from monitor.match import engine

    words.load()
    sets = {}
    for mode in ("today", "analyst"):
        chosen = (
            specs if mode == "analyst" else [replace(s, aliases=False, exact=True) for s in specs]
        )
        t0 = time.process_time()
        sets[mode] = compile_rules(chosen)
        print(f"{mode}: compile {time.process_time() - t0:.3f} s", flush=True)
        for it in items[:100]:
            sets[mode].match(it, [it.feed_id])
    real = engine.words_check
    counted = words.Verdict(True, "")
    clear = words._in_window.cache_clear
    runs: dict[str, Callable[[], object]] = {
        "today": lambda: [sets["today"].match(it, [it.feed_id]) for it in items],
        "analyst": lambda: [sets["analyst"].match(it, [it.feed_id]) for it in items],
        "analyst, verdict cache emptied per item": lambda: [
            (clear(), sets["analyst"].match(it, [it.feed_id])) for it in items
        ],
    }
    best = {name: float("inf") for name in [*runs, "analyst, word check constant"]}
    for _ in range(repeat):
        for name, work in runs.items():
            best[name] = min(best[name], best_of(1, work))
        engine.words_check = lambda text, start, end: counted  # type: ignore[assignment]
        try:
            best["analyst, word check constant"] = min(
                best["analyst, word check constant"], best_of(1, runs["analyst"])
            )
        finally:
            engine.words_check = real
    for name, seconds in best.items():
        print(f"{name}: {per_item_ms(seconds, len(items)):.3f} ms/item")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer items, smaller naive sample")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    parser.add_argument("--repeat", type=int, default=5, help="passes; the fastest counts")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="only today's matching against the analyst defaults, 10,000 "
        "watch-list rules over RFI items, alternating passes",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the figures to this file as JSON (bench/run_all.py reads it)",
    )
    args = parser.parse_args(argv)
    rng = random.Random(20230322)
    count = args.items or (2000 if args.quick else 10000)
    sample = 40 if args.quick else 100
    articles, origin = load_articles(args.corpus)
    print(
        f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs | Python {sys.version.split()[0]}"
    )
    print(f"times: CPU time of the fastest of {args.repeat} passes, per item; compile: one pass")
    if len(articles) < 50:
        print(
            "note: without ../shared/corpus every keyword hits a third of the items; the "
            "figures then measure match reporting, not a realistic rule set"
        )
    pool = [folded_article(a) for a in articles]
    rfi = [a for a in articles if "rfi.fr" in a[2]]
    other = [a for a in articles if "rfi.fr" not in a[2]]
    sets = [("RFI news", rfi), ("long-form", other)] if rfi and other else [("all", articles)]
    results: list[Result] = []
    if args.compare:
        subset = rfi or articles
        items = make_items(subset, args.items or 2000, rng)
        sources = [folded_article(a) for a in subset]
        watch_list_rules(pool, sources, 1000, rng)  # the same rules as a full run draws
        compare(items, watch_list_rules(pool, sources, 10000, rng), args.repeat)
        return 0
    for label, subset in sets:
        items = make_items(subset, count, rng)
        chars = statistics.mean(len(i.title) + len(i.content) for i in items)
        print(
            f"\n{label}: {len(items)} items built from {len(subset)} of {origin}; "
            f"mean {chars:.0f} chars of title+HTML"
        )
        sources = [folded_article(a) for a in subset]
        for rule_count in (1000, 10000):
            specs = watch_list_rules(pool, sources, rule_count, rng)
            for analyst in (False, True):
                results.append(run(label, "watch list", specs, items, sample, args.repeat, analyst))
        for rule_count in (1000, 10000):
            specs = hot_rules(items[:800], rule_count, rng)
            for analyst in (False, True):
                results.append(run(label, "hot", specs, items, sample, args.repeat, analyst))
    print(
        "\n| items | rules | count | matching | compile | engine ms/item | normalization "
        "| naive ms/item | ratio | matches/item |"
        "\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    for r in results:
        naive = "" if r.mode == "analyst" else f"{r.naive_ms:.2f}"
        ratio = "" if r.mode == "analyst" else f"{r.ratio:.0f}x"
        print(
            f"| {r.items} | {r.rules} | {r.count:,} | {r.mode} | {r.compile_s:.3f} s "
            f"| {r.engine_ms:.3f} | {r.normalize_ms:.3f} | {naive} | {ratio} "
            f"| {r.matches:.2f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                [{**asdict(r), "ratio": r.ratio} for r in results], ensure_ascii=False, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
