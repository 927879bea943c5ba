"""Snippets: a hit shown in context, in the item's own script, marked with 【】 (pure).

Hits are found in normalized text; the snippet quotes the original plain text,
using the offset map from ``fold_with_offsets`` (computed only for fields that
produced a reported match, and only when folding moved offsets in that field).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.match.normalize import fold_with_offsets, stepwise_offsets

SNIPPET_MAX = 120  # characters, marks and ellipses included
MARK_OPEN, MARK_CLOSE = "【", "】"
ELLIPSIS = "…"


@dataclass(slots=True)
class FieldText:
    """One field of an item: plain text in its own script and its normalized form."""

    plain: str
    folded: str
    # True when folded[i] comes from plain[i] for every i (see fold_texts_aligned):
    # offsets then need no map.
    aligned: bool = False
    # True when NFKC replaced characters one by one (see fold_fields): offsets then map
    # from the expansions alone ("…" to "..."), without folding the text again.
    stepwise: bool = False
    _mapped: tuple[str, list[int]] | None = field(default=None, repr=False)

    def mapped(self) -> tuple[str, list[int]]:
        if self._mapped is None:
            offsets = stepwise_offsets(self.plain, self.folded) if self.stepwise else None
            self._mapped = (
                (self.folded, offsets) if offsets is not None else fold_with_offsets(self.plain)
            )
        return self._mapped


def _original_span(text: FieldText, start: int, end: int, hit: str) -> tuple[int, int]:
    if text.aligned and text.folded[start:end] == hit:
        return start, end
    folded, offsets = text.mapped()
    if folded[start:end] != hit:
        # The mapped fold differs from the fast one (composition across a chunk
        # boundary): find the hit again in the text the map belongs to.
        found = folded.find(hit)
        if found < 0:
            return 0, 0
        start, end = found, found + len(hit)
    o_start = offsets[start]
    # The end maps to the start of the next source character, unless the hit ends
    # inside one character's expansion ("…" folds to "..."): then cover that character.
    o_end = offsets[end] if offsets[end] > offsets[end - 1] else offsets[end - 1] + 1
    return o_start, max(o_end, o_start + 1)


def make_snippet(text: FieldText, start: int, end: int, hit: str, limit: int = SNIPPET_MAX) -> str:
    """Context around ``text.folded[start:end]`` quoted from ``text.plain``, hit in 【】."""
    plain = text.plain
    o_start, o_end = _original_span(text, start, end, hit)
    if o_end <= o_start or o_end > len(plain):
        return plain[: limit - 1] + ELLIPSIS if len(plain) > limit else plain
    room = limit - len(MARK_OPEN) - len(MARK_CLOSE)
    marked = plain[o_start:o_end]
    if len(marked) > room - 1:
        marked = marked[: room - 1] + ELLIPSIS
    room -= len(marked)
    n_before, n_after = o_start, len(plain) - o_end  # no copies of a long text
    # Split the room evenly, lending what one side does not need to the other.
    want_before = min(n_before, max(room // 2, room - n_after))
    want_after = min(n_after, room - want_before)
    head = plain[o_start - want_before : o_start]
    tail = plain[o_end : o_end + want_after]
    if want_before < n_before and head:
        head = ELLIPSIS + head[1:]
    if want_after < n_after and tail:
        tail = tail[:-1] + ELLIPSIS
    return f"{head}{MARK_OPEN}{marked}{MARK_CLOSE}{tail}"


def make_snippet_spans(
    text: FieldText, spans: list[tuple[int, int]], limit: int = SNIPPET_MAX
) -> str:
    """Like ``make_snippet`` for several hits of ``text.folded`` (in order, not overlapping;
    a NEAR's two), each in 【】; the context is centred on the stretch from first to last."""
    if len(spans) < 2:
        start, end = spans[0]
        return make_snippet(text, start, end, text.folded[start:end], limit)
    plain = text.plain
    marks = [_original_span(text, s, e, text.folded[s:e]) for s, e in spans]
    if any(e <= s or e > len(plain) for s, e in marks) or any(
        a[1] > b[0] for a, b in zip(marks, marks[1:], strict=False)
    ):
        first, last = spans[0], spans[-1]
        return make_snippet(text, first[0], last[1], text.folded[first[0] : last[1]], limit)
    parts: list[str] = []
    for i, (s, e) in enumerate(marks):
        if i:
            parts.append(plain[marks[i - 1][1] : s])
        parts.append(f"{MARK_OPEN}{plain[s:e]}{MARK_CLOSE}")
    marked = "".join(parts)
    o_start, o_end = marks[0][0], marks[-1][1]
    room = limit - len(marked)
    if room < 2:
        return marked[: limit - 1] + ELLIPSIS
    n_before, n_after = o_start, len(plain) - o_end
    want_before = min(n_before, max(room // 2, room - n_after))
    want_after = min(n_after, room - want_before)
    head = plain[o_start - want_before : o_start]
    tail = plain[o_end : o_end + want_after]
    if want_before < n_before and head:
        head = ELLIPSIS + head[1:]
    if want_after < n_after and tail:
        tail = tail[:-1] + ELLIPSIS
    return f"{head}{marked}{tail}"
