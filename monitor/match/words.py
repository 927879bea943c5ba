"""Word boundaries for short Chinese keywords: is a hit a word of the text, or a piece of
two other words (中法 in 集中法律), or of a longer word meaning something else (中非 in
中非共和国)? Decided around one candidate hit at a time with jieba's dictionary (pure).

Only keywords of two or three Han characters are checked (``needs_check``): longer ones
rarely straddle words, single characters always would. The check costs two lookups when
the characters on either side of each end of the hit are no pair found inside a
dictionary word (most hits), a few prefix lookups when no word crosses either end; only
then is the text around the hit segmented, at most ``WINDOW`` characters each side, the
way jieba segments without its HMM (the most probable path through the dictionary words).
The dictionary is jieba's word list, built by ``monitor.match.wordlist`` into marisa tries
shipped as package data and mapped from their files (a few MB, shared and read on
demand, where jieba's own tables take about 90). Cost and precision:
docs/benchmarks-match.md.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import marisa_trie

WINDOW = 4  # characters of context segmented on each side of a hit
_LONGEST = 6  # longest dictionary word looked for across a hit's ends


_HAN = "\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
_SHORT = re.compile(f"[{_HAN}]{{2,3}}")
# The Han characters just before a hit (searched up to its start) and just after it.
_HAN_BEFORE = re.compile(f"[{_HAN}]{{0,{WINDOW}}}\\Z")
_HAN_AFTER = re.compile(f"[{_HAN}]{{0,{WINDOW}}}")
# Verdicts kept, by the text around the hit: news repeats its phrases. Only hits that a
# dictionary word may cross get here; an entry takes about 290 bytes.
CACHE_SIZE = 1 << 12


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
    freq: Sequence[int]  # by the trie's key id
    log_total: float  # log of the list's total frequency
    pairs: marisa_trie.Trie  # every two consecutive characters inside a word
    starts: marisa_trie.Trie  # the first two characters of every word
    # character -> (its key id,), or () if it is no word; filled as characters are seen
    # (a few thousand in Chinese news, about 100 bytes each)
    singles: dict[str, tuple[int, ...]]

    @property
    def unknown(self) -> float:
        """log(1 / total): the probability of a character no word starts with."""
        return -self.log_total


def _data(name: str) -> Traversable:
    return resources.files("monitor.match").joinpath(f"data/{name}")


def _trie(name: str) -> marisa_trie.Trie:
    """A trie of the package data, mapped from its file (pages shared and read on demand)."""
    source = _data(name)
    if isinstance(source, Path):
        return marisa_trie.Trie().mmap(str(source))
    return marisa_trie.Trie().frombytes(source.read_bytes())  # pragma: no cover - zipped


def _frequencies() -> tuple[Sequence[int], int]:
    """(frequency by key id, total) from ``data/words.freq``, mapped from its file."""
    source = _data("words.freq")
    data: bytes | mmap.mmap
    if isinstance(source, Path):
        with source.open("rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    else:  # pragma: no cover - a zipped package
        data = source.read_bytes()
    (total,) = struct.unpack_from("<Q", data)
    freq: Sequence[int] = memoryview(data)[8:].cast("I")
    if sys.byteorder == "big":  # pragma: no cover - the file is little-endian
        swapped = array("I", freq)
        swapped.byteswap()
        freq = swapped
    return freq, total


@cache
def _dictionary() -> _Dictionary:
    """jieba's word list, as ``monitor.match.wordlist`` builds it into package data."""
    freq, total = _frequencies()
    return _Dictionary(
        _trie("words.marisa"),
        freq,
        math.log(total),
        _trie("word_pairs.marisa"),
        _trie("word_starts.marisa"),
        {},
    )


def load() -> None:
    """Map the dictionary now (a few ms; the first check would otherwise do it)."""
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


class _Window:
    """The dictionary words in a window of text, looked up once per position."""

    __slots__ = ("d", "text", "_ends")

    def __init__(self, d: _Dictionary, text: str) -> None:
        self.d = d
        self.text = text
        self._ends: list[list[tuple[int, int]] | None] = [None] * len(text)

    def ends(self, i: int) -> list[tuple[int, int]]:
        """(end, key id) of every dictionary word text[i:end], shortest first."""
        got = self._ends[i]
        if got is None:
            d, text = self.d, self.text
            if text[i : i + 2] in d.starts:
                found = d.words.iter_prefixes_with_ids(text[i:])
                got = [(i + len(w), k) for w, k in found]
            else:  # half the positions of Chinese text: a one-character word, or none
                single = d.singles.get(text[i])
                if single is None:
                    found = d.words.iter_prefixes_with_ids(text[i])
                    single = d.singles[text[i]] = tuple(k for _, k in found)
                got = [(i + 1, k) for k in single]
            self._ends[i] = got
        return got

    def crossed(self, at: int) -> bool:
        """Whether a dictionary word starts before ``at`` (at most ``_LONGEST`` - 1
        characters before) and ends after it."""
        if at == 0 or at >= len(self.text) or self.text[at - 1 : at + 1] not in self.d.pairs:
            return False
        ends = self.ends
        return any(j > at for i in range(max(0, at - _LONGEST + 1), at) for j, _ in ends(i))

    def segment(self) -> list[tuple[int, int]]:
        """jieba's segmentation without HMM: the most probable path through dictionary
        words (a character no word starts with is a word of its own)."""
        n = len(self.text)
        d, ends = self.d, self.ends
        freq, log, log_total = d.freq, math.log, d.log_total
        best: list[tuple[float, int]] = [(0.0, 0)] * (n + 1)
        for i in range(n - 1, -1, -1):
            # log(frequency / total), computed as jieba does: the same paths on ties.
            paths = [(log(freq[k]) - log_total + best[j][0], j) for j, k in ends(i)]
            # A character no word starts with: a word of frequency 1.
            best[i] = max(paths) if paths else (d.unknown + best[i + 1][0], i + 1)
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
    # A word that crosses the hit's start holds the two characters on either side of it,
    # and so does one that crosses its end: where neither is a pair of the dictionary's,
    # no word crosses (most hits; two lookups).
    pairs = _dictionary().pairs
    before, after = text[start - 1 : start + 1] if start else "", text[end - 1 : end + 1]
    if before not in pairs and after not in pairs:
        return _PLAIN
    # The run of Han characters around the hit: words never cross other characters.
    lo = start - len(_HAN_BEFORE.search(text, max(0, start - WINDOW), start)[0])  # type: ignore[index]
    hi = end + len(_HAN_AFTER.match(text, end)[0])  # type: ignore[index]
    # The verdict depends on this window alone: the same phrase gets the same answer.
    return _in_window(text[lo:hi], start - lo, end - lo)


@lru_cache(maxsize=CACHE_SIZE)
def _in_window(window: str, start: int, end: int) -> Verdict:
    """``check`` for the hit window[start:end], the window being all the context used."""
    text = window
    words = _Window(_dictionary(), window)
    if not words.crossed(start) and not words.crossed(end):
        return _PLAIN
    tokens = words.segment()
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
