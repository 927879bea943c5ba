"""Word boundaries for short Chinese keywords: is a hit a word of the text, or a piece of
two other words (中法 in 集中法律), or of a longer word meaning something else (中非 in
中非共和国)? Decided around one candidate hit at a time with jieba's dictionary (pure).

Only keywords of two or three Han characters are checked (``needs_check``): longer ones
rarely straddle words, single characters always would. The check costs nothing when no
dictionary word crosses either end of the hit (the common case: a few dictionary lookups);
only then is the text around the hit segmented (jieba's DAG and route, no HMM, on at most
``WINDOW`` characters each side). Cost and precision: docs/benchmarks-match.md.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

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


@cache
def _tokenizer() -> object:
    """jieba's default tokenizer, its dictionary loaded once (about 1 s; cached by jieba)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it announces its dictionary load on INFO
    jieba.dt.initialize()
    return jieba.dt


def load() -> None:
    """Load the dictionary now (the first check would otherwise pay for it)."""
    _tokenizer()


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
                out.setdefault(word[i:i + size], []).append((i, word))
    return {k: tuple(v) for k, v in out.items()}


def other_words() -> frozenset[str]:
    """The listed longer words with another meaning."""
    return frozenset(w for pairs in _other_meaning().values() for _, w in pairs)


def _crossed(freq: dict[str, int], text: str, lo: int, hi: int, at: int) -> bool:
    """Whether a dictionary word within text[lo:hi] starts before ``at`` and ends after it."""
    if at >= hi:
        return False
    for i in range(max(lo, at - _LONGEST + 1), at):
        # jieba's FREQ holds every prefix of every word (frequency 0): a word starting at
        # i that crosses ``at`` has text[i:at + 1] as a prefix.
        j = at + 1
        f = freq.get(text[i:j])
        while f is not None:
            if f:
                return True
            j += 1
            if j > hi or j - i > _LONGEST:
                break
            f = freq.get(text[i:j])
    return False


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
    text, lo, hi = window, 0, len(window)
    dt = _tokenizer()
    freq: dict[str, int] = dt.FREQ  # type: ignore[attr-defined]
    if not _crossed(freq, text, lo, hi, start) and not _crossed(freq, text, lo, hi, end):
        return _PLAIN
    route: dict[int, tuple[float, int]] = {}
    dt.calc(window, dt.get_DAG(window), route)  # type: ignore[attr-defined]
    tokens: list[tuple[int, int]] = []
    i = 0
    while i < len(window):
        j = route[i][1] + 1
        tokens.append((i, j))
        i = j
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
