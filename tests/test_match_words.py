"""The word check's shipped dictionary is jieba's list, and its shortcuts (pairs of
characters, one-character positions, the verdict cache) give the verdicts of the plain
method: every dictionary word crossing either end looked up, then the window segmented."""

from __future__ import annotations

import fnmatch
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.match import wordlist, words
from monitor.match.words import Verdict, check

# Characters of many words and of names in the news: random strings of them hold words
# that cross a hit's ends, words inside which it sits, and hits on word boundaries.
ALPHABET = "中法律集美国人民共和非洲关系乌克兰俄罗斯普京的是在了有大对总统越来多资源藏独特合作"


def test_shipped_files_are_built_from_jiebas_list() -> None:
    pytest.importorskip("jieba")
    built = wordlist.build()
    assert sorted(built) == sorted(wordlist.FILES)
    for name, data in built.items():
        shipped = (words._data(name)).read_bytes()  # type: ignore[attr-defined]
        assert shipped == data, f"data/{name} differs: run python -m monitor.match.wordlist"


def test_package_data_globs_cover_the_word_list() -> None:
    repo = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["monitor.match"]
    data = repo / "monitor" / "match" / "data"
    shipped = [f"data/{p.name}" for p in data.iterdir() if p.is_file()]
    assert {f"data/{name}" for name in wordlist.FILES} <= set(shipped)
    assert [f for f in shipped if not any(fnmatch.fnmatch(f, g) for g in globs)] == []


def _reference(text: str, start: int, end: int) -> Verdict:
    """The plain method, with the same dictionary and window."""
    d = words._dictionary()
    hit = text[start:end]
    for offset, word in words._other_meaning().get(hit, ()):
        if start >= offset and text.startswith(word, start - offset):
            return Verdict(False, f"inside {word} (another meaning)")
    lo, hi = start, end
    while lo > 0 and start - lo < words.WINDOW and "\u4e00" <= text[lo - 1] <= "\u9fff":
        lo -= 1
    while hi < len(text) and hi - end < words.WINDOW and "\u4e00" <= text[hi] <= "\u9fff":
        hi += 1
    window, start, end = text[lo:hi], start - lo, end - lo
    n = len(window)

    def crossed(at: int) -> bool:
        return any(
            i + len(w) > at
            for i in range(max(0, at - 5), at)
            for w in d.words.iter_prefixes(window[i:])
        )

    if not (0 < start < n and crossed(start)) and not (0 < end < n and crossed(end)):
        return Verdict(True, "no dictionary word crosses its ends")
    best: list[tuple[float, int]] = [(0.0, 0)] * (n + 1)
    for i in range(n - 1, -1, -1):
        paths = [
            (math.log(d.freq[k]) - d.log_total + best[i + len(w)][0], i + len(w))
            for w, k in d.words.iter_prefixes_with_ids(window[i:])
        ]
        best[i] = max(paths) if paths else (-d.log_total + best[i + 1][0], i + 1)
    tokens, i = [], 0
    while i < n:
        tokens.append((i, best[i][1]))
        i = best[i][1]
    bounds = {a for a, _ in tokens} | {b for _, b in tokens}
    if start in bounds and end in bounds:
        return Verdict(True, "on word boundaries")
    for a, b in tokens:
        if a <= start and end <= b:
            return Verdict(True, f"inside the word {window[a:b]}")
    crossing = [window[a:b] for a, b in tokens if a < end and b > start]
    return Verdict(False, f"straddles {'|'.join(crossing)}")


@settings(max_examples=400, deadline=None)
@given(
    before=st.text(ALPHABET + "，a ", max_size=8),
    hit=st.text(ALPHABET, min_size=2, max_size=3),
    after=st.text(ALPHABET + "。b ", max_size=8),
)
def test_check_agrees_with_the_plain_method(before: str, hit: str, after: str) -> None:
    text = before + hit + after
    start, end = len(before), len(before) + len(hit)
    words._in_window.cache_clear()
    assert check(text, start, end) == _reference(text, start, end)
    assert check(text, start, end) == _reference(text, start, end)  # from the cache


@pytest.mark.parametrize(
    ("text", "start", "end", "expected"),
    [
        ("集中法律", 1, 3, Verdict(False, "straddles 集中|法律")),
        ("中法关系紧张", 0, 2, Verdict(True, "inside the word 中法关系")),
        ("他说中法", 2, 4, Verdict(True, "no dictionary word crosses its ends")),
        ("中非共和国", 0, 2, Verdict(False, "inside 中非共和国 (another meaning)")),
    ],
)
def test_verdicts(text: str, start: int, end: int, expected: Verdict) -> None:
    assert check(text, start, end) == expected
