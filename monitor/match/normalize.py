"""Text normalization shared by item text and rule keywords (pure functions).

One pipeline, two entry points: ``html_to_text`` turns an HTML field into plain
text in the item's own script (what snippets quote), ``fold_text`` turns plain
text into the form the matcher compares (NFKC, case-folded, Simplified Chinese,
whitespace collapsed). ``normalize_text`` is both steps at once.

Snippets need to point back from the folded text into the plain text. OpenCC's
t2s tables are length-preserving code point for code point (checked for
OpenCC 1.1.x: every TSPhrases, TSCharacters, TSCharactersExt and
CJK_Compatibility_Ideographs entry maps k characters to k characters), so only
NFKC and case folding can move offsets ("…" becomes "...", "ß" becomes "ss").
``fold_with_offsets`` therefore folds chunk by chunk and only maps a chunk
character by character when folding changed its length; should a future
OpenCC table change a length, that chunk is mapped proportionally instead.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote

import opencc

_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Block-level tags separate words; inline ones (span, b, a, ...) must not, or
# "<span>习</span><span>近平</span>" would no longer contain 习近平.
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|br|hr|li|ul|ol|h[1-6]|tr|td|th|table|thead|tbody|blockquote|section|article"
    r"|header|footer|figure|figcaption|img|pre|dd|dt|dl|aside|nav|iframe|video|audio|form)\b[^>]*>",
    re.I,
)
_TAG = re.compile(r"</?[A-Za-z][^>]*>|<![^>]*>|<\?[^>]*>")
# Chunks for offset mapping end at whitespace or punctuation, so a chunk whose
# length changed under folding is short and cheap to map character by character.
_CHUNK = re.compile(r"[^\s。！？!?]*[\s。！？!?]|[^\s。！？!?]+")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    # Building the converter loads its dictionaries (milliseconds); do it once.
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional to Simplified Chinese with OpenCC t2s; other text unchanged."""
    if text.isascii():
        return text
    return _t2s().convert(text)


def is_cjk(ch: str) -> bool:
    """True for Han, kana and Hangul: scripts written without spaces between words."""
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x3040 <= o <= 0x30FF
        or 0xAC00 <= o <= 0xD7AF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3FFFF
        or 0x1100 <= o <= 0x11FF
        or 0x3130 <= o <= 0x318F
    )


def is_word_char(ch: str) -> bool:
    """A character that continues a Latin-script (or other spaced-script) word."""
    return (ch.isalnum() or ch == "_") and not is_cjk(ch)


def html_to_text(markup: str) -> str:
    """HTML to plain text: script/style dropped, tags removed, entities decoded, spaces
    collapsed."""
    if "<" in markup:
        markup = _SCRIPT_STYLE.sub(" ", markup)
        markup = _COMMENT.sub("", markup)
        markup = _BLOCK_TAG.sub(" ", markup)
        markup = _TAG.sub("", markup)
    return plain_text(markup)


def plain_text(text: str) -> str:
    """Plain text with stray entities decoded (feeds double-encode titles) and spaces collapsed."""
    if "&" in text:
        text = html.unescape(text)
    return " ".join(text.split())  # str.split is C-speed; a regex is several times slower


def url_text(url: str) -> str:
    """A URL as plain text, percent-encoding decoded so Chinese paths can be matched."""
    return unquote(url) if "%" in url else url


def _fold_raw(text: str) -> str:
    if text.isascii():
        return text.lower()  # NFKC and t2s are no-ops on ASCII; lower == casefold here
    return to_simplified(unicodedata.normalize("NFKC", text).casefold())


def fold_text(text: str) -> str:
    """Plain text to matching form: NFKC, case folding, Traditional to Simplified, spaces collapsed.

    Applied identically to keywords and to item text, so ``Ｇ７`` equals ``g7`` and
    ``烏克蘭`` equals ``乌克兰``.
    """
    return " ".join(_fold_raw(text).split())


def normalize_text(text: str, *, markup: bool = True) -> str:
    """The whole pipeline: ``fold_text(html_to_text(text))`` (``markup=False``: plain text)."""
    return fold_text(html_to_text(text) if markup else plain_text(text))


def _clusters(chunk: str) -> list[tuple[int, str]]:
    # A base character with its combining marks folds as a unit (NFKC composes them).
    out: list[tuple[int, str]] = []
    for i, ch in enumerate(chunk):
        if out and unicodedata.combining(ch):
            start, text = out[-1]
            out[-1] = (start, text + ch)
        else:
            out.append((i, ch))
    return out


def _fold_chunks(plain: str) -> tuple[str, list[int]]:
    # Only reached when NFKC/case folding changed the length somewhere: map each
    # sentence-sized chunk as a whole unless its own length changed.
    pieces: list[str] = []
    offsets: list[int] = []
    for m in _CHUNK.finditer(plain):
        chunk, base = m.group(), m.start()
        folded = unicodedata.normalize("NFKC", chunk).casefold()
        if len(folded) == len(chunk):
            offsets.extend(range(base, base + len(chunk)))
        else:
            parts = []
            for start, cluster in _clusters(chunk):
                f = unicodedata.normalize("NFKC", cluster).casefold()
                parts.append(f)
                offsets.extend([base + start] * len(f))
            folded = "".join(parts)
        pieces.append(folded)
    return "".join(pieces), offsets


def fold_with_offsets(plain: str) -> tuple[str, list[int]]:
    """Fold ``plain`` (output of ``html_to_text``/``plain_text``) and map offsets back.

    Returns ``(folded, offsets)`` where ``offsets[i]`` is the index in ``plain`` of
    the character that produced ``folded[i]``; ``offsets`` has one extra entry,
    ``len(plain)``, so an end offset maps too. ``folded`` equals
    ``fold_text(plain)`` except in rare cases where composition crosses a chunk
    boundary; callers that need an exact hit position re-find it in ``folded``.
    """
    folded = unicodedata.normalize("NFKC", plain).casefold()
    if len(folded) == len(plain):
        offsets = list(range(len(plain)))
    else:
        folded, offsets = _fold_chunks(plain)
    simplified = to_simplified(folded)
    if len(simplified) != len(folded):
        # Not expected with current OpenCC tables (see module docstring): map proportionally.
        n, m = len(simplified), len(folded)
        offsets = [offsets[min(j * m // n, m - 1)] for j in range(n)]
    if " ".join(simplified.split()) == simplified:
        # The usual case: plain text was collapsed already and folding added no spaces.
        offsets.append(len(plain))
        return simplified, offsets
    # Collapse whitespace the same way fold_text does, keeping the map in step.
    out_chars: list[str] = []
    out_map: list[int] = []
    prev_space = True  # drops leading whitespace
    for ch, off in zip(simplified, offsets, strict=True):
        if ch.isspace():
            if prev_space:
                continue
            ch = " "
            prev_space = True
        else:
            prev_space = False
        out_chars.append(ch)
        out_map.append(off)
    if out_chars and out_chars[-1] == " ":
        out_chars.pop()
        out_map.pop()
    out_map.append(len(plain))
    return "".join(out_chars), out_map
