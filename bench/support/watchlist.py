"""A watch list of rules as users write them, mostly words absent from today's news."""

from __future__ import annotations

import random
import re
from typing import Any

from bench.support.farm import corpus_articles

# Common characters to build watch-list words from. A two- or three-character word made
# of them, and absent from the corpus, is the typical keyword a user adds "in case".
COMMON = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去"
    "之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又"
    "如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明"
    "其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东"
    "政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书"
    "比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或"
    "司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度"
    "统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言"
)
ENGLISH = (
    "Ukraine",
    "NATO",
    "Taiwan",
    "Xinjiang",
    "Huawei",
    "sanctions",
    "Beijing",
    "Kremlin",
    "election",
    "tariff",
    "semiconductor",
    "Hong Kong",
    "Tibet",
    "Macron",
    "Zelensky",
    "Biden",
    "Putin",
    "Shanghai",
    "WHO",
    "G7",
    "BRICS",
    "Belt and Road",
    "TikTok",
    "ByteDance",
    "Alibaba",
    "Tencent",
    "Uyghur",
    "Dalai Lama",
    "Hamas",
    "Gaza",
)
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_TAG = re.compile(r"<[^>]+>")


def corpus_texts() -> list[tuple[str, str]]:
    """(title, plain text) of the articles the farm serves."""
    articles, _ = corpus_articles()
    return [(title, _TAG.sub("", body)) for title, _, body in articles]


def watch_rules(
    count: int,
    seed: int = 7,
    corpus_share: float = 0.05,
    english_share: float = 0.08,
    news_words: int = 80,
) -> list[dict[str, Any]]:
    """``count`` rules as a watch list looks: mostly words that are not in today's news.

    Keywords are 2-3 common characters absent from the corpus (most of a real watch list
    on a given day), ``corpus_share`` of them (but at most about ``news_words`` in all)
    cut from the corpus titles and found in at most 2 % of its articles (these hit now
    and then), ``english_share`` English names (capped alike). The caps keep the alerts per new item
    near 2 whatever the rule count (a larger list adds more rare terms, not more of
    today's), so the cost of more rules is not confused with the cost of more alerts;
    bench/rules.py's "news words" set is the dense case. Shapes as users write them:
    one word, an any-list, all of two, an exclusion, a query.
    """
    # About 1.6 keywords per rule on average (the shapes below). English names are
    # capped alike: a few dozen names repeated over thousands of rules would make one
    # "G7" in an article match hundreds of rules.
    corpus_share = min(corpus_share, news_words / (1.6 * max(count, 1)))
    english_share = min(english_share, news_words / (1.6 * max(count, 1)))
    rng = random.Random(seed)
    texts = corpus_texts()
    joined = [t + "\n" + b for t, b in texts]
    grams: set[str] = set()
    for text in joined:
        for run in _HAN_RUN.findall(text):
            grams.update(run[i : i + 2] for i in range(len(run) - 1))
            grams.update(run[i : i + 3] for i in range(len(run) - 2))
    title_runs = [r for t, _ in texts for r in _HAN_RUN.findall(t)]
    limit = max(1, len(joined) // 50)
    selective: dict[str, bool] = {}

    def corpus_word() -> str:
        for _ in range(100):
            run = rng.choice(title_runs)
            size = rng.randint(2, min(4, len(run)))
            start = rng.randint(0, len(run) - size)
            word = run[start : start + size]
            if word not in selective:
                selective[word] = sum(word in t for t in joined) <= limit
            if selective[word]:
                return word
        return absent_word()

    def absent_word() -> str:
        while True:
            word = "".join(rng.choice(COMMON) for _ in range(rng.choice((2, 2, 3))))
            if word not in grams:
                return word

    def word() -> str:
        x = rng.random()
        if x < corpus_share:
            return corpus_word()
        if x < corpus_share + english_share:
            return rng.choice(ENGLISH)
        return absent_word()

    rules: list[dict[str, Any]] = []
    for n in range(count):
        shape = rng.random()
        rule: dict[str, Any] = {"name": f"r{n:05d}"}
        if shape < 0.5:
            rule["any"] = [word()]
        elif shape < 0.75:
            rule["any"] = [word(), word(), word()]
        elif shape < 0.85:
            rule["all"] = [word(), word()]
        elif shape < 0.95:
            rule["any"] = [word(), word()]
            rule["none"] = [word()]
        else:
            a, b, c = (f'"{w}"' if " " in w else w for w in (word(), word(), word()))
            rule["query"] = f"{a} AND ({b} OR {c})"
        rule["notify"] = ["out"]
        rules.append(rule)
    return rules
