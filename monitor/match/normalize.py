"""Text normalization shared by item text and rule keywords (pure functions).

One pipeline, two entry points: ``html_to_text`` turns an HTML field into plain
text in the item's own script (what snippets quote), ``fold_text`` turns plain
text into the form the matcher compares (NFKC, case-folded, Simplified Chinese,
whitespace collapsed). ``normalize_text`` is both steps at once.

Folding has fast paths, each equal to the plain library calls (property-tested), and
offsets map back to the plain text: docs/architecture.md, 'Text folding', 'NFKC',
'Skipping OpenCC' and 'Snippet offsets'.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import opencc

_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Block-level tags separate words; inline ones (span, b, a, ...) must not, or
# "<span>习</span><span>近平</span>" would no longer contain 习近平.
BLOCK_TAGS: tuple[str, ...] = (
    "p",
    "div",
    "br",
    "hr",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "td",
    "th",
    "table",
    "thead",
    "tbody",
    "blockquote",
    "section",
    "article",
    "header",
    "footer",
    "figure",
    "figcaption",
    "img",
    "pre",
    "dd",
    "dt",
    "dl",
    "aside",
    "nav",
    "iframe",
    "video",
    "audio",
    "form",
)


def _either_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


def _alternation(words: Iterable[str]) -> str:
    """A case-insensitive regex alternation grouped by first letter, ``[dD](?:[iI][vV]|...)``
    (see docs/architecture.md, 'Tag stripping')."""
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault(w[0].lower(), []).append(w[1:].lower())
    parts = []
    for first, rests in sorted(groups.items()):
        rests.sort(key=len, reverse=True)  # "" (the bare letter) last
        tail = "" if rests == [""] else f"(?:{'|'.join(_either_case(r) for r in rests)})"
        parts.append(_either_case(first) + tail)
    return "|".join(parts)


# Lookaheads and a possessive [^>]*+: see docs/architecture.md, 'Tag stripping'.
_FIRST_LETTERS = "".join(sorted({c for tag in BLOCK_TAGS for c in (tag[0], tag[0].upper())}))
_INLINE_FAST = rf"(?=[{_FIRST_LETTERS}])(?!(?:span|strong|a|em|b|i|font|sup|sub|u)[\s>/])"
_BLOCK_TAG = re.compile(rf"</?{_INLINE_FAST}(?:{_alternation(BLOCK_TAGS)})\b[^>]*+>")
_TAG = re.compile(r"<(?:/?[A-Za-z]|[!?])[^>]*+>")  # </?[A-Za-z][^>]*>, <!...>, <?...>
# Chunks for offset mapping end at whitespace or punctuation, so a chunk whose
# length changed under folding is short and cheap to map character by character.
_CHUNK = re.compile(r"[^\s。！？!?]*[\s。！？!?]|[^\s。！？!?]+")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    # Building the converter loads its dictionaries (milliseconds); do it once.
    return opencc.OpenCC("t2s")


_SURROGATE = re.compile("[\ud800-\udfff]")


# The t2s config these tables are known for, and the .ocd2 header: see docs/architecture.md,
# 'Skipping OpenCC'.
_T2S_CONFIG_DIGEST = "96fe5cc374a80ccc49e3370006cce3aefe4af955868ae0b14fb3079ec695be4f"
_OCD2_HEADER = b"OPENCC_MARISA_0.2.5"


def _phrase_keys(path: Path) -> list[str] | None:
    """The keys of an OpenCC .ocd2 dictionary, or None if it cannot be read."""
    try:
        import marisa_trie

        data = path.read_bytes()
        if not data.startswith(_OCD2_HEADER):
            return None
        trie = marisa_trie.Trie()
        trie.frombytes(data[len(_OCD2_HEADER) :])
        return list(trie.keys())
    except Exception:  # missing module or file, another format: convert everything
        return None


@dataclass(frozen=True, slots=True)
class _T2SCheck:
    """What t2s may change: a text with none of it is returned as it is."""

    chars: re.Pattern[str]  # characters t2s changes on their own (and astral, surrogates)
    phrase_chars: re.Pattern[str]  # characters it changes only inside ``phrases``
    phrases: frozenset[str]
    longest: int
    changed: frozenset[str]  # the BMP characters of ``chars`` and ``phrase_chars``

    def unchanged(self, text: str) -> bool:
        return self.chars.search(text) is None and not self.phrase_in(text)

    def phrase_in(self, text: str) -> bool:
        """Whether one of ``phrases`` occurs in ``text``."""
        phrases, longest, n = self.phrases, self.longest, len(text)
        for m in self.phrase_chars.finditer(text):  # rare: 沈, 藉, 覆, ...
            i = m.start()
            for a in range(max(0, i - longest + 1), i + 1):
                for b in range(max(a + 2, i + 1), min(n, a + longest) + 1):
                    if text[a:b] in phrases:
                        return True
        return False


@lru_cache(maxsize=1)
def _t2s_check() -> _T2SCheck | None:
    """What t2s may change, or None when that is unknown (see docs/architecture.md,
    'Skipping OpenCC')."""
    share = Path(opencc.__file__).parent / "clib" / "share" / "opencc"
    try:
        config = (share / "t2s.json").read_bytes()
    except OSError:
        return None
    if hashlib.sha256(config).hexdigest() != _T2S_CONFIG_DIGEST:
        return None
    keys = _phrase_keys(share / "TSPhrases.ocd2")
    if not keys:
        return None
    chars = [chr(o) for o in range(0x80, 0xD800)] + [chr(o) for o in range(0xE000, 0x10000)]
    converted = _t2s().convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):
        return None
    changed = {c for c, d in zip(chars, converted, strict=True) if c != d}
    # A key converted alone is its dictionary value (no longer key fits in it). Keys
    # with a character that changes on its own are caught by that character.
    keys = [k for k in keys if not changed.intersection(k)]
    values = _t2s().convert("\n".join(keys)).split("\n")
    if len(values) != len(keys):
        return None
    phrases: set[str] = set()
    triggers: set[str] = set()
    for key, value in zip(keys, values, strict=True):
        if value == key:
            continue
        if len(value) != len(key):
            return None  # not length-preserving: offsets could not be kept
        phrases.add(key)
        triggers.update(k for k, v in zip(key, value, strict=True) if k != v)
    if not phrases:
        return None
    return _T2SCheck(
        re.compile(f"[{_char_class(map(ord, changed))}\\ud800-\\udfff\\U00010000-\\U0010ffff]"),
        re.compile(f"[{_char_class(map(ord, triggers))}]"),
        frozenset(phrases),
        max(map(len, phrases)),
        frozenset(changed | triggers),
    )


def _char_class(codes: Iterable[int]) -> str:
    """The body of a regex character class for BMP code points, as ranges."""
    ranges: list[list[int]] = []
    for o in sorted(codes):
        if ranges and ranges[-1][1] == o - 1:
            ranges[-1][1] = o
        else:
            ranges.append([o, o])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


def to_simplified(text: str) -> str:
    """Traditional to Simplified Chinese with OpenCC t2s; other text unchanged."""
    if text.isascii():
        return text
    check = _t2s_check()
    if check is not None and check.unchanged(text):
        return text  # nothing t2s would change (most Simplified text): skip OpenCC
    try:
        return str(_t2s().convert(text))
    except UnicodeEncodeError:
        # A lone surrogate (JSON feeds can carry "\ud800") cannot be passed to OpenCC
        # as UTF-8. U+FFFD keeps the length, so offsets into the text stay valid.
        return str(_t2s().convert(_SURROGATE.sub("\ufffd", text)))


# Where characters that NFKC changes on their own are looked for: docs/architecture.md, 'NFKC'.
_COMPAT_SCAN = (
    (0x00A0, 0x3400),
    (0x4DC0, 0x4E00),
    (0xA000, 0x10000),
    (0x1D400, 0x1D800),
    (0x1F100, 0x1F300),
    (0x2F800, 0x2FA20),
)
_COMPAT_MAX_DISTINCT = 32  # more distinct such characters in one text: normalize it whole


@lru_cache(maxsize=1)
def _compat_table() -> tuple[re.Pattern[str], dict[str, str]]:
    """Characters whose NFKC form differs from themselves, as a character class and a map."""
    table: dict[str, str] = {}
    for lo, hi in _COMPAT_SCAN:
        for o in range(lo, hi):
            ch = chr(o)
            if unicodedata.decomposition(ch):  # no decomposition: NFKC leaves it alone
                folded = unicodedata.normalize("NFKC", ch)
                if folded != ch:
                    table[ch] = folded
    cls = _char_class(ord(ch) for ch in table if ord(ch) < 0x10000)
    # BMP-only classes compile to a bitmap; astral ranges would make the regex engine
    # test a thousand ranges one by one at every character. Any astral character is
    # therefore found and then looked up (rare in news text).
    return re.compile(f"[{cls}\\U00010000-\\U0010ffff]"), table


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, computed faster for typical news text (see
    docs/architecture.md, 'NFKC')."""
    return _nfkc(text)[0]


def _nfkc(text: str) -> tuple[str, bool]:
    """``nfkc(text)``, and whether it only replaced characters one by one (then every
    character of the result comes from one character of ``text``, in order)."""
    if unicodedata.is_normalized("NFKC", text):
        return text, True
    pattern, table = _compat_table()
    found = set(pattern.findall(text))
    if len(found) > _COMPAT_MAX_DISTINCT:
        return unicodedata.normalize("NFKC", text), False
    for ch in found:
        if ch in table:  # astral characters are all found, not all are in the table
            text = text.replace(ch, table[ch])
    if found and unicodedata.is_normalized("NFKC", text):
        return text, True
    return unicodedata.normalize("NFKC", text), False


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
        if "<!--" in markup:
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
    return _fold_joined(text)[0]  # to_simplified(nfkc(text).casefold()), in one scan


def fold_text(text: str) -> str:
    """Plain text to matching form: NFKC, case folding, Traditional to Simplified, spaces collapsed.

    Applied identically to keywords and to item text, so ``Ｇ７`` equals ``g7`` and
    ``烏克蘭`` equals ``乌克兰``.
    """
    return " ".join(_fold_raw(text).split())


def fold_texts(texts: Sequence[str]) -> list[str]:
    """``[fold_text(t) for t in texts]``, folded as one text (one OpenCC call per item)."""
    return [folded for folded, _ in fold_texts_aligned(texts)]


def fold_texts_aligned(texts: Sequence[str], *, collapsed: bool = False) -> list[tuple[str, bool]]:
    """``(folded, aligned)`` of each text: ``fold_fields`` without its third value."""
    return [(folded, aligned) for folded, aligned, _ in fold_fields(texts, collapsed=collapsed)]


def fold_fields(texts: Sequence[str], *, collapsed: bool = False) -> list[tuple[str, bool, bool]]:
    """``fold_text`` of each text, and whether that text is *aligned*: the folded
    text has the length of the original and its i-th character comes from the
    original's i-th character (then a hit's offsets are the offsets in the original,
    and a snippet needs no offset map).

    The texts are folded as one, joined with newlines; why that is exact, and when a
    part is aligned: docs/architecture.md, 'Text folding' and 'Snippet offsets'.

    ``collapsed``: the caller promises that every text is whitespace-collapsed
    (``" ".join(t.split()) == t``, as ``plain_text`` makes it); then the parts need
    collapsing only when folding brought whitespace (U+3000 becomes a space).

    Each text gives ``(folded, aligned, stepwise)``: ``stepwise`` when NFKC replaced
    characters one by one and collapsing changed nothing, so that ``stepwise_offsets``
    maps offsets without folding the text again (``fold_texts_aligned``: the first two).
    """
    joined = "\n".join(texts)
    if joined.isascii():
        raw, stepwise, spaced = joined.lower(), True, False
    else:
        raw, stepwise, spaced = _fold_joined(joined)
    parts = raw.split("\n")
    if len(parts) != len(texts):
        return [(fold_text(t), False, False) for t in texts]
    out = []
    for plain, part in zip(texts, parts, strict=True):
        folded = part if collapsed and not spaced else " ".join(part.split())
        same = stepwise and len(part) == len(folded)  # collapsing removes, never replaces
        out.append((folded, same and len(part) == len(plain), same))
    return out


@dataclass(frozen=True, slots=True)
class _Fused:
    """One character class for NFKC's and t2s's fast paths (one scan of a text)."""

    pattern: re.Pattern[str]  # compatibility characters, risky ones, astral, surrogates
    compat: dict[str, str]  # character -> its NFKC form
    risky: frozenset[str]  # BMP characters t2s may change, or from which NFKC and case
    #                        folding bring one
    phrase_chars: frozenset[str]  # risky only as part of a phrase (覆, 沈, ...)
    spacing: frozenset[str]  # characters that NFKC and case folding make whitespace
    unlowered: frozenset[str]  # BMP characters from which NFKC and str.lower do not give
    #                            what case folding gives (ß, ﬁ, Σ, ...)
    check: _T2SCheck
    common: tuple[tuple[str, str], ...]  # full-width punctuation of Chinese text, NFKC


@lru_cache(maxsize=1)
def _fused() -> _Fused | None:
    check = _t2s_check()
    if check is None:
        return None
    _, table = _compat_table()
    relevant = check.changed
    risky: set[str] = set()
    spacing: set[str] = set()
    unlowered: set[str] = set()
    for ch in map(chr, range(0x80, 0x10000)):
        nfkc_ch = table.get(ch, ch)
        folded = nfkc_ch.casefold()
        if ch in relevant or not relevant.isdisjoint(folded):
            risky.add(ch)
        if not ch.isspace() and any(c.isspace() for c in folded):
            spacing.add(ch)
        # str.lower lowers a final Σ to ς, case folding to σ: Σ counts whatever it gives.
        if folded != nfkc_ch.lower() or "Σ" in nfkc_ch:
            unlowered.add(ch)
    bmp = {ch for ch in table if ord(ch) < 0x10000} | risky | spacing | unlowered
    cls = _char_class(o for o in map(ord, bmp) if not 0xD800 <= o <= 0xDFFF)
    phrase_chars = {ch for ch in relevant if check.phrase_chars.fullmatch(ch)}
    common = tuple(
        (ch, table[ch])
        for ch in "，：（）；？！"
        if ch in table and ch not in risky and ch not in spacing
    )
    return _Fused(
        re.compile(f"[{cls}\\ud800-\\udfff\\U00010000-\\U0010ffff]"),
        table,
        frozenset(risky),
        frozenset(phrase_chars),
        frozenset(spacing),
        frozenset(unlowered),
        check,
        common,
    )


def _fold_joined(text: str) -> tuple[str, bool, bool]:
    """``to_simplified(nfkc(text).casefold())`` and ``_nfkc``'s one-by-one flag (and t2s
    kept every length), from one scan of ``text`` (see docs/architecture.md, 'Text
    folding'). Equal to the step-by-step computation (tests/test_match_normalize.py).
    Third: False when folding certainly turned no character into whitespace."""
    fused = _fused()
    if fused is None or fused.check.chars.search(text, 0, 256) is not None:
        # Traditional Chinese from the start (the title): t2s converts the text anyway,
        # and the scan below would make a string of every Traditional character.
        normalized, stepwise = _nfkc(text)
        folded = normalized.casefold()
        raw = to_simplified(folded)
        return raw, stepwise and len(raw) == len(folded), True
    # The commonest compatibility characters go first, with str.replace (each scan is
    # cheaper than the regex making a string of every occurrence).
    replaced = 0
    for ch, nfkc_ch in fused.common:
        after = text.replace(ch, nfkc_ch)
        if after is not text:
            replaced += 1
            text = after
    found = set(fused.pattern.findall(text))
    table = fused.compat
    compat = [ch for ch in found if ch in table]
    stepwise = replaced + len(compat) <= _COMPAT_MAX_DISTINCT
    if stepwise:
        for ch in compat:
            text = text.replace(ch, table[ch])
        stepwise = unicodedata.is_normalized("NFKC", text)
    if not stepwise:
        text = unicodedata.normalize("NFKC", text)
    risky = fused.risky
    t2s = [ch for ch in found if ch in risky or "\ud800" <= ch <= "\udfff" or ch > "\uffff"]
    # str.lower is faster than case folding, and equal to it on text without ß, ﬁ, Σ, ...
    # (found here, as are astral characters: those in t2s).
    lower = stepwise and fused.unlowered.isdisjoint(found) and not any(ch > "\uffff" for ch in t2s)
    folded = text.lower() if lower else text.casefold()
    if stepwise and (
        not t2s or fused.phrase_chars.issuperset(t2s) and not fused.check.phrase_in(folded)
    ):
        # t2s changes nothing (most Simplified text), or finds phrase characters (覆,
        # 沈, ...) outside the phrases where it changes them.
        return folded, True, not fused.spacing.isdisjoint(found)
    raw = to_simplified(folded)
    return raw, stepwise and len(raw) == len(folded), True


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


@lru_cache(maxsize=1)
def _expanding() -> re.Pattern[str]:
    """Characters that fold to other than one character (NFKC then case folding):
    "…" to "...", "ß" to "ss", "ﬁ" to "fi". Astral characters are all included and
    measured when found (rare)."""
    _, table = _compat_table()
    chars = [
        chr(o)
        for o in range(0xA0, 0x10000)
        if not 0xD800 <= o <= 0xDFFF and len(table.get(chr(o), chr(o)).casefold()) != 1
    ]
    cls = "".join(f"\\u{ord(c):04x}" for c in chars)
    return re.compile(f"[{cls}\\U00010000-\\U0010ffff]")


def _stepwise_offsets(plain: str, total: int) -> list[int] | None:
    """Offsets for text that ``_nfkc`` folded character by character: each source
    character yields ``len(NFKC(c).casefold())`` characters. None if the count
    does not come out at ``total`` (then the caller maps chunk by chunk)."""
    table = _compat_table()[1]
    offsets: list[int] = []
    pos = 0
    for m in _expanding().finditer(plain):
        ch, i = m.group(), m.start()
        k = len(table.get(ch, ch).casefold())
        if k == 1:
            continue  # an astral character that folds to one: covered by the next range
        offsets.extend(range(pos, i))
        offsets.extend([i] * k)
        pos = i + 1
    offsets.extend(range(pos, len(plain)))
    return offsets if len(offsets) == total else None


def stepwise_offsets(plain: str, folded: str) -> list[int] | None:
    """``fold_with_offsets(plain)[1]`` for a text that ``fold_fields`` folded to ``folded``
    stepwise, without folding it again; None if the counts do not agree."""
    offsets = _stepwise_offsets(plain, len(folded))
    if offsets is not None:
        offsets.append(len(plain))
    return offsets


def fold_with_offsets(plain: str) -> tuple[str, list[int]]:
    """Fold ``plain`` (output of ``html_to_text``/``plain_text``) and map offsets back.

    Returns ``(folded, offsets)`` where ``offsets[i]`` is the index in ``plain`` of
    the character that produced ``folded[i]``; ``offsets`` has one extra entry,
    ``len(plain)``, so an end offset maps too. ``folded`` equals
    ``fold_text(plain)`` except in rare cases where composition crosses a chunk
    boundary; callers that need an exact hit position re-find it in ``folded``.
    """
    normalized, stepwise = _nfkc(plain)
    folded = normalized.casefold()
    mapped = _stepwise_offsets(plain, len(folded)) if stepwise else None
    if mapped is not None:
        offsets = mapped
    else:
        folded, offsets = _fold_chunks(plain)
    simplified = to_simplified(folded)
    if len(simplified) != len(folded):
        # Not expected with current OpenCC tables (see docs/architecture.md, 'Snippet
        # offsets'): map proportionally.
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
