"""Word boundaries for short Chinese keywords: is a hit a word of the text, or a piece of
two other words (中法 in 集中法律), or of a longer word meaning something else (中非 in
中非共和国)? Decided around one candidate hit at a time with jieba's dictionary (pure).

Only keywords of two or three Han characters are checked (``needs_check``): longer ones
rarely straddle words, single characters always would. The check costs little when no
dictionary word crosses either end of the hit (the common case: a few prefix lookups);
only then is the text around the hit segmented, at most ``WINDOW`` characters each side,
the way jieba segments without its HMM (the most probable path through the dictionary
words). The dictionary is jieba's word list, held in a marisa trie: a few MB, where
jieba's own tables take about 90. Cost and precision: docs/benchmarks-match.md.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import marisa_trie

WINDOW = 4  # characters of context segmented on each side of a hit
_LONGEST = 6  # longest dictionary word looked for across a hit's ends


_HAN = "\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
_SHORT = re.compile(f"[{_HAN}]{{2,3}}")
CACHE_SIZE = 1 << 16  # verdicts kept, by the text around the hit: news repeats its phrases


def _is_han(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF


def needs_check(folded: str) -> bool:
    """Whether hits of this (folded) keyword are checked for word boundaries."""
    return _SHORT.fullmatch(folded) is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one hit counts, and why (for ``test-rule --explain``)."""

    counted: bool
    reason: str


_PLAIN = Verdict(True, "no dictionary word crosses its ends")
_ON_BOUNDARIES = Verdict(True, "on word boundaries")


@dataclass(frozen=True, slots=True)
class _Dictionary:
    words: marisa_trie.Trie
    log_p: array[float]  # by the trie's key id: log(frequency / total)
    unknown: float  # log(1 / total): a character no word starts with


@cache
def _dictionary() -> _Dictionary:
    """jieba's word list (``dict.txt``: word, frequency, part of speech), read once."""

    def entries() -> Iterator[tuple[str, int]]:
        # Streamed: the list is 349,000 lines, and a list of them would double the peak.
        with resources.files("jieba").joinpath("dict.txt").open("r", encoding="utf-8") as f:
            for line in f:
                word, _, rest = line.partition(" ")
                yield word, int(rest.split(" ", 1)[0])

    words = marisa_trie.Trie(w for w, _ in entries())
    freq = array("d", bytes(8 * len(words)))
    total = 0
    for word, f in entries():
        freq[words[word]] = f or 1
        total += f
    log_total = math.log(total)
    log_p = array("d", (math.log(f) - log_total for f in freq))
    return _Dictionary(words, log_p, -log_total)


def load() -> None:
    """Load the dictionary now (about 1 s; the first check would otherwise pay for it)."""
    _dictionary()


@cache
def _other_meaning() -> dict[str, tuple[tuple[int, str], ...]]:
    """Keyword -> (offset, word) for each listed longer word that contains it."""
    text = resources.files("monitor.match").joinpath("data/other_words.txt").read_text("utf-8")
    out: dict[str, list[tuple[int, str]]] = {}
    for line in text.splitlines():
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        for size in (2, 3):
            for i in range(len(word) - size + 1):
                out.setdefault(word[i : i + size], []).append((i, word))
    return {k: tuple(v) for k, v in out.items()}


def other_words() -> frozenset[str]:
    """The listed longer words with another meaning."""
    return frozenset(w for pairs in _other_meaning().values() for _, w in pairs)


def _crossed(words: marisa_trie.RecordTrie, text: str, hi: int, at: int) -> bool:
    """Whether a dictionary word within text[:hi] starts before ``at`` and ends after it."""
    if at >= hi:
        return False
    for i in range(max(0, at - _LONGEST + 1), at):
        if any(i + len(w) > at for w in words.iter_prefixes(text[i:hi])):
            return True
    return False


def _segment(d: _Dictionary, text: str) -> list[tuple[int, int]]:
    """jieba's segmentation without HMM: the most probable path through dictionary words
    (a character no word starts with is a word of its own)."""
    n = len(text)
    log_p = d.log_p
    best: list[tuple[float, int]] = [(0.0, 0)] * (n + 1)
    for i in range(n - 1, -1, -1):
        ends = [
            (log_p[k] + best[i + len(w)][0], i + len(w))
            for w, k in d.words.iter_prefixes_with_ids(text[i:])
        ]
        # A character no word starts with: a word of frequency 1.
        best[i] = max(ends) if ends else (d.unknown + best[i + 1][0], i + 1)
    tokens: list[tuple[int, int]] = []
    i = 0
    while i < n:
        j = best[i][1]
        tokens.append((i, j))
        i = j
    return tokens


def check(text: str, start: int, end: int) -> Verdict:
    """Whether the hit ``text[start:end]`` (folded text) is a word of ``text``."""
    hit = text[start:end]
    for offset, word in _other_meaning().get(hit, ()):
        if start >= offset and text.startswith(word, start - offset):
            return Verdict(False, f"inside {word} (another meaning)")
    # The run of Han characters around the hit: words never cross other characters.
    lo, hi = start, end
    while lo > 0 and start - lo < WINDOW and _is_han(text[lo - 1]):
        lo -= 1
    while hi < len(text) and hi - end < WINDOW and _is_han(text[hi]):
        hi += 1
    # The verdict depends on this window alone: the same phrase gets the same answer.
    return _in_window(text[lo:hi], start - lo, end - lo)


@lru_cache(maxsize=CACHE_SIZE)
def _in_window(window: str, start: int, end: int) -> Verdict:
    """``check`` for the hit window[start:end], the window being all the context used."""
    text, hi = window, len(window)
    d = _dictionary()
    if not _crossed(d.words, text, hi, start) and not _crossed(d.words, text, hi, end):
        return _PLAIN
    tokens = _segment(d, window)
    bounds = {a for a, _ in tokens} | {b for _, b in tokens}
    if start in bounds and end in bounds:
        return _ON_BOUNDARIES
    for a, b in tokens:
        if a <= start and end <= b:
            # A longer word that starts or ends with the keyword, or holds it (乌克兰人,
            # 中法关系): the same meaning unless listed above.
            return Verdict(True, f"inside the word {text[a:b]}")
    crossing = [text[a:b] for a, b in tokens if a < end and b > start]
    return Verdict(False, f"straddles {'|'.join(crossing)}")
