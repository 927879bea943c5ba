"""The fast normalization paths agree exactly with the plain library calls they replace.

``nfkc`` replaces compatibility characters one by one instead of running
``unicodedata.normalize`` on the whole text; ``fold_texts_aligned`` folds all
fields of an item in one pass and says when offsets need no map;
``fold_with_offsets`` maps offsets from per-character expansions. Each is
checked against the straightforward computation on text built from the
characters that make normalization hard: full-width forms, half-width katakana
with voiced marks (which compose), combining marks (which reorder and compose),
Hangul jamo, ligatures, ellipses, ß, İ, final sigma, astral letters and
ideographs, and Traditional Chinese.
"""

from __future__ import annotations

import re
import unicodedata

import opencc
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.match import compile_query
from monitor.match.engine import item_fields
from monitor.match.normalize import (
    _COMMENT,
    _SCRIPT_STYLE,
    BLOCK_TAGS,
    _alternation,
    _fold_joined,
    _nfkc,
    _t2s_check,
    fold_fields,
    fold_text,
    fold_texts,
    fold_texts_aligned,
    fold_with_offsets,
    html_to_text,
    nfkc,
    plain_text,
    stepwise_offsets,
    to_simplified,
)
from monitor.match.query import _parser, _ToTree, _word_list, simple_term
from monitor.types import Item

_T2S = opencc.OpenCC("t2s")

HARD = (
    "中俄烏克蘭習近平臺灣關係體育乾隆沈默瞭解后里面"  # CJK, Traditional, phrase-dependent
    "，（）：；！？％＋．、。「」“”…—·\u3000"  # full-width and CJK punctuation
    "ＡＢｃｄ０１２"  # full-width Latin and digits
    "ｶｷｸﾞﾟﾊﾟ"  # half-width katakana and (combining) voiced sound marks
    "e\u0301\u0308\u0334\u0323a\u0327"  # combining marks: compose, reorder
    "\u1100\u1161\u11a8가각"  # Hangul jamo (compose) and syllables
    "ﬁﬂ½①㈱㍿™ßİΣσςǅϹẞΐĲ"  # ligatures, fractions, enclosed, case-folding expansions
    "\u0f73\u0f71\u0f72\u0f40"  # Tibetan: a starter that decomposes to non-starters
    "\U0001d400\U0001d41a\U0001f110\U00020000\U0002f800😀"  # astral letters, ideographs
    "AZaz09 -_\t\xa0"
)
hard_text = st.text(alphabet=st.sampled_from(HARD), max_size=40)
any_text = st.one_of(hard_text, st.text(max_size=30))


def reference_fold(text: str) -> str:
    """The definition: NFKC, case folding, OpenCC t2s, whitespace collapsed."""
    return " ".join(_T2S.convert(unicodedata.normalize("NFKC", text).casefold()).split())


@settings(max_examples=500, deadline=None)
@given(any_text)
def test_nfkc_equals_unicodedata(text: str) -> None:
    text = text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    assert nfkc(text) == unicodedata.normalize("NFKC", text)


@settings(max_examples=300, deadline=None)
@given(hard_text)
def test_fold_text_equals_reference(text: str) -> None:
    assert fold_text(text) == reference_fold(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(hard_text, min_size=1, max_size=6))
def test_fields_folded_together_equal_each_folded_alone(texts: list[str]) -> None:
    # Plain text as the engine produces it: whitespace collapsed, so no newlines.
    plains = [" ".join(t.split()) for t in texts]
    got = fold_texts_aligned(plains)
    assert [f for f, _ in got] == [reference_fold(p) for p in plains]
    assert fold_texts_aligned(plains, collapsed=True) == got
    assert fold_texts(plains) == [f for f, _ in got]
    for plain, (folded, aligned) in zip(plains, got, strict=True):
        if aligned:
            # Character i of the folded text comes from character i of the plain text:
            # each folds to exactly one character and t2s converts that sequence.
            singles = [unicodedata.normalize("NFKC", ch).casefold() for ch in plain]
            assert all(len(s) == 1 for s in singles), plain
            assert _T2S.convert("".join(singles)) == folded


def test_a_field_with_a_newline_is_folded_on_its_own() -> None:
    assert fold_texts(["烏克蘭\n臺灣", "Ｇ７"]) == ["乌克兰 台湾", "g7"]


def test_common_news_text_is_aligned_and_ellipsis_is_not() -> None:
    [(_, aligned)] = fold_texts_aligned(["習近平說，中俄（ICC）：關係！"])
    assert aligned
    [(folded, aligned)] = fold_texts_aligned(["他说……好"])
    assert folded == "他说......好" and not aligned


@settings(max_examples=300, deadline=None)
@given(hard_text)
def test_offsets_point_at_the_source_character(text: str) -> None:
    plain = " ".join(text.split())
    folded, offsets = fold_with_offsets(plain)
    assert len(offsets) == len(folded) + 1 and offsets[-1] == len(plain)
    assert offsets == sorted(offsets)
    if (
        "\u0f73" in plain
        or any(unicodedata.combining(c) for c in plain)
        or any("\u1100" <= c <= "\u11ff" for c in plain)
        or "\uff9e" in plain
        or "\uff9f" in plain
    ):
        return  # composition may cross chunks; folded is then re-searched (see docstring)
    assert folded == fold_text(plain)
    # Compare before t2s, which converts phrases ("瞭解" -> "了解", while "瞭" stays):
    # it maps k characters to k, so offsets are those of the text before it.
    before_t2s = " ".join(unicodedata.normalize("NFKC", plain).casefold().split())
    assert len(before_t2s) == len(folded)
    for i, ch in enumerate(before_t2s):
        if ch != " ":
            source = plain[offsets[i]]
            assert ch in unicodedata.normalize("NFKC", source).casefold(), (i, ch, source)


T2S_TEXT = "沈默瞭解藉口反覆打坏乾隆乾燥后後里裡面麵髮发中俄烏克蘭习近平著看么什麼甦醒"


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(T2S_TEXT + "，。 a\U00020000\U0002f800\ud800"), max_size=20)
)
def test_to_simplified_equals_opencc(text: str) -> None:
    # Skipping OpenCC for text it would not change must never change the result.
    reference = _T2S.convert(text.replace("\ud800", "\ufffd"))
    assert to_simplified(text) == reference


def test_a_lone_surrogate_does_not_stop_matching() -> None:
    item = Item(
        key="k", url="https://example.org/a", title="烏克蘭\ud800新聞", published_ms=0, feed_id="f"
    )
    [m] = compile_query("乌克兰").match(item)
    assert m.snippet == "【烏克蘭】\ud800新聞"
    assert item_fields(item)["title"].folded == "乌克兰\ufffd新闻"


words = st.text(
    alphabet=st.sampled_from('中俄ANDORNOTre:/-"()ab é\t\u3000title'), min_size=1, max_size=8
)


@settings(max_examples=500, deadline=None)
@given(words)
def test_one_word_shortcut_agrees_with_the_parser(query: str) -> None:
    term = simple_term(query)
    if term is not None:
        assert _ToTree().transform(_parser().parse(query)) == term


QUERY_TOKENS = [
    "中俄", "乌克兰", "a", "or", "and", "OR", "AND", "NOT", "-", "-中俄", "-a", "--a", "-OR",
    "-AND", "-NOT", "covid-19", "ANDROID", "NEAR", "NEARBY", "NEAR/3", "title:x", "re:/x/",
    "(", ")", "(a", "a)", '"p q"', "", "a\tb", "\u3000", "é",
]  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(QUERY_TOKENS), min_size=1, max_size=7))
def test_word_list_shortcut_agrees_with_the_parser(tokens: list[str]) -> None:
    query = " ".join(tokens)
    tree = _word_list(query)
    if tree is not None:
        assert _ToTree().transform(_parser().parse(query)) == tree


def test_word_list_shortcut_takes_the_common_shapes() -> None:
    for query in ["中俄 OR 中美", "乌克兰 -体育", "a b c", "a AND b OR -c", "-a"]:
        assert _word_list(query) is not None, query
    for query in ["a OR", "OR a", "a OR OR b", "a  b", "NOT a", "a NEAR/2 b", 'title:"x"']:
        assert _word_list(query) is None, query


# Text made of t2s's phrase-only changes (沈默 -> 沉默 while 沈 alone stays), pieces of
# them and their neighbours: skipping OpenCC must never change the result.
_CHECK = _t2s_check()
_PHRASES = sorted(_CHECK.phrases) if _CHECK is not None else ["沈默", "瞭解", "藉口", "答覆"]
_PHRASE_TOKENS = (
    _PHRASES
    + sorted({p[i:j] for p in _PHRASES for i in range(len(p)) for j in range(i + 1, len(p) + 1)})
    + list("的了么覆盖沉默坏人，。 a乾後")
)


def test_the_phrase_table_is_read_from_the_installed_dictionary() -> None:
    """The phrases come from OpenCC's own TSPhrases.ocd2, not from a copy."""
    assert _CHECK is not None
    assert {"沈默", "瞭解", "藉口", "答覆", "反覆"} <= _CHECK.phrases
    assert "覆盖" not in _CHECK.phrases
    for phrase in _CHECK.phrases:
        assert _T2S.convert(phrase) != phrase


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_PHRASE_TOKENS), max_size=8))
def test_to_simplified_equals_opencc_around_phrases(tokens: list[str]) -> None:
    text = "".join(tokens)
    assert to_simplified(text) == _T2S.convert(text)


def test_simplified_text_with_phrase_characters_skips_opencc() -> None:
    check = _t2s_check()
    if check is None:  # another OpenCC dictionary: every text is converted
        return
    assert check.unchanged("覆盖了什么？沈先生说，聊以慰藉。")
    assert not check.unchanged("藉此机会")
    assert not check.unchanged("他沈默不语")
    assert not check.unchanged("反覆")
    assert not check.unchanged("中國")


def _fold_step_by_step(text: str) -> tuple[str, bool]:
    normalized, stepwise = _nfkc(text)
    folded = normalized.casefold()
    raw = to_simplified(folded)
    return raw, stepwise and len(raw) == len(folded)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.one_of(hard_text, st.sampled_from(_PHRASE_TOKENS), st.text(max_size=6)), max_size=6)
)
def test_one_scan_fold_equals_step_by_step(parts: list[str]) -> None:
    # Traditional Chinese in the first 256 characters takes the step-by-step path: a long
    # Simplified start makes the one scan see the rest.
    for text in ("".join(parts), "中文新闻" * 70 + "".join(parts)):
        raw, stepwise, spaced = _fold_joined(text)
        assert (raw, stepwise) == _fold_step_by_step(text)
        if not any("\ud800" <= c <= "\udfff" for c in text):  # OpenCC takes UTF-8 only
            assert raw == _T2S.convert(unicodedata.normalize("NFKC", text).casefold())
        raw, _, spaced = _fold_joined(" ".join(text.split()))
        if not spaced:  # folding brought no whitespace: collapsed text stays collapsed
            assert " ".join(raw.split()) == raw


@settings(max_examples=500, deadline=None)
@given(st.lists(hard_text, min_size=1, max_size=4), st.booleans())
def test_stepwise_fields_map_offsets_as_fold_with_offsets(texts: list[str], collapse: bool) -> None:
    plains = [" ".join(t.split()) for t in texts] if collapse else texts
    for plain, (folded, aligned, stepwise) in zip(
        plains, fold_fields(plains, collapsed=collapse), strict=True
    ):
        if stepwise:
            offsets = stepwise_offsets(plain, folded)
            if offsets is not None:
                assert (folded, offsets) == fold_with_offsets(plain)
        if aligned:
            assert stepwise and len(folded) == len(plain)


# html_to_text's tag patterns carry lookaheads that only reject early; the plain ones:
_REF_BLOCK = re.compile(rf"</?(?:{_alternation(BLOCK_TAGS)})\b[^>]*>")
_REF_TAG = re.compile(r"</?[A-Za-z][^>]*>|<![^>]*>|<\?[^>]*>")
_MARKUP = [
    "<p>",
    "</p>",
    "<P class=x>",
    "<span>",
    "</span>",
    "<spanx>",
    "<span/>",
    "<a href='<p>'>",
    '<div title="<p>">',
    "<br/>",
    "<BR>",
    "<img src=x>",
    "<!-- c -->",
    "<!x>",
    "<?pi?>",
    "<script>x<p>y</script>",
    "<h1>",
    "<h1x>",
    "<h7>",
    "<sub>",
    "<section>",
    "<b>",
    "<i>",
    "<u>",
    "<ul>",
    "<iframe>",
    "<strong>",
    "<em>",
    "<font>",
    "<sup>",
    "<x-p>",
    "<p-x>",
    "<p中>",
    "<table>",
    "text",
    "中文",
    "&amp;",
    "<",
    ">",
    "<<p>>",
    "< p>",
    "</",
    "/",
    "\u3000",
    " ",
    "<dl>",
    "<dd>",
    "<li\n>",
]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_MARKUP), max_size=12))
def test_html_to_text_equals_the_plain_patterns(parts: list[str]) -> None:
    markup = "".join(parts)
    expected = markup
    if "<" in expected:
        expected = _SCRIPT_STYLE.sub(" ", expected)
        expected = _COMMENT.sub("", expected)
        expected = _REF_TAG.sub("", _REF_BLOCK.sub(" ", expected))
    assert html_to_text(markup) == plain_text(expected)
