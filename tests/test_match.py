"""The rule engine: normalization, query language, scopes, feeds, snippets and errors."""

from __future__ import annotations

import pytest

from monitor.errors import RuleError
from monitor.match import compile_query, compile_rules, normalize_text
from monitor.match.normalize import fold_text, fold_with_offsets, html_to_text
from monitor.types import Item, RuleSpec


def make_item(
    title: str = "",
    content: str = "",
    *,
    summary: str = "",
    author: str = "",
    categories: tuple[str, ...] = (),
    url: str = "https://www.rfi.fr/cn/x",
    feed_id: str = "rfi-cn",
) -> Item:
    return Item(
        key=url,
        url=url,
        title=title,
        published_ms=1679494503000,
        feed_id=feed_id,
        summary=summary,
        content=content,
        author=author,
        categories=categories,
    )


RFI_TITLE = "习近平结束访俄，北京与莫斯科建立针对西方的&quot;特殊&quot;关系"
RFI_BODY = (
    "<div>22/03/2023 - 15:10</div><p><strong>中国国家主席习近平周三离开莫斯科。普京和习近平说，"
    '中俄之间的"特殊关系"正在进入一个"新时代"。</strong></p>'
    "<p><span><span>法新社说，国际刑事法院（ICC）逮捕令。北京&quot;支持在乌克兰实现和平&quot;。"
    "</span></span></p><script>var 体育 = 1;</script><style>.x{content:'体育'}</style>"
)
TW_TITLE = "習近平結束訪俄，北京與莫斯科建立針對西方的「特殊」關係"
TW_BODY = "<p>烏克蘭總統澤連斯基表示，臺灣問題與中俄關係。</p>"

CASES = [
    # (case id, query, item, expected match)
    ("simplified query, simplified text", "中俄", make_item(RFI_TITLE, RFI_BODY), True),
    ("traditional query, simplified text", "烏克蘭", make_item(RFI_TITLE, RFI_BODY), True),
    ("simplified query, traditional text", "乌克兰", make_item(TW_TITLE, TW_BODY), True),
    ("traditional query, traditional text", "臺灣", make_item(TW_TITLE, TW_BODY), True),
    ("台 and 臺 are one character", "台湾", make_item(TW_TITLE, TW_BODY), True),
    ("习近平 = 習近平", "title:習近平", make_item(RFI_TITLE, RFI_BODY), True),
    ("OR with group", "中俄 OR (习近平 AND 普京)", make_item("普京与习近平"), True),
    ("OR with group, neither side", "中俄 OR (习近平 AND 普京)", make_item("习近平访欧"), False),
    ("full-width query", "Ｇ７", make_item("G7 summit opens"), True),
    ("full-width text", "G7", make_item("Ｇ７峰会开幕"), True),
    ("entity-encoded title", 'title:"特殊"关系', make_item(RFI_TITLE), True),
    ("entity in body", '"支持在乌克兰"', make_item("t", RFI_BODY), True),
    ("script content is not text", "体育", make_item("t", RFI_BODY), False),
    ("tags do not split CJK words", "习近平", make_item("t", "<span>习</span><b>近平</b>"), True),
    ("block tags split Latin words", "foobar", make_item("t", "<p>foo</p><p>bar</p>"), False),
    ("word boundary: AI not in PAIN", "AI", make_item("Growing PAIN in markets"), False),
    ("word boundary: AI-driven", "AI", make_item("AI-driven newsrooms"), True),
    ("word boundary: ai case-folded", "ai", make_item("The AI race"), True),
    ("word boundary next to CJK", "AI", make_item("中国AI产业"), True),
    ("word boundary: digits count", "G7", make_item("G77 meeting"), False),
    ("CJK matches inside words", "克兰", make_item("乌克兰战争"), True),
    ("NOT excludes", "乌克兰 NOT 体育", make_item("乌克兰体育新闻"), False),
    ("-term excludes", "乌克兰 -体育", make_item("乌克兰体育新闻"), False),
    ("-term absent", "乌克兰 -体育", make_item("乌克兰战争"), True),
    (
        "NOT scoped to category",
        "(Ukraine OR 乌克兰) AND NOT category:体育",
        make_item("乌克兰队获胜", categories=("体育",)),
        False,
    ),
    (
        "NOT scoped to category, other category",
        "(Ukraine OR 乌克兰) AND NOT category:体育",
        make_item("Ukraine talks", categories=("国际",)),
        True,
    ),
    ("category scope hits category only", "category:体育", make_item("体育"), False),
    ("title scope ignores body", 'title:"特殊关系"', make_item("x", "特殊关系"), False),
    ("title scope phrase", 'title:"特殊关系"', make_item("中俄特殊关系"), True),
    ("content scope", "content:ICC", make_item("ICC", RFI_BODY), True),
    ("summary scope", "summary:法新社", make_item("x", "法新社"), False),
    ("author scope", "author:柯比", make_item("x", author="约翰-柯比"), True),
    (
        "url scope, percent-encoded path",
        "url:国际",
        make_item("x", url="https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/1"),
        True,
    ),
    (
        "unscoped term ignores url",
        "国际",
        make_item("x", url="https://a/%E5%9B%BD%E9%99%85"),
        False,
    ),
    ("scoped group", "title:(中俄 OR 美国) 普京", make_item("美国", "普京"), True),
    ("phrase with spaces", '"prime minister"', make_item("The Prime   Minister said"), True),
    ("phrase order matters", '"prime minister"', make_item("minister prime"), False),
    ("implicit AND", "中俄 普京", make_item("中俄关系"), False),
    ("regex opt-in", r"title:re:/g\d+峰会/", make_item("Ｇ２０峰会"), True),
    ("regex is not a word", "re", make_item("re:/x/ is here"), True),
    ("regex does not match", r"re:/^俄/", make_item("中俄"), False),
    ("regex in traditional", "re:/烏克蘭|台湾/", make_item("乌克兰"), True),
    ("lower-case or is a term", "中俄 or 美国", make_item("中俄 美国"), False),
]


@pytest.mark.parametrize(
    ("query", "item", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_query_matches_table(query: str, item: Item, expected: bool) -> None:
    matches = compile_query(query).match(item, [item.feed_id])
    assert bool(matches) is expected, matches


def test_rule_reports_configured_keywords_and_snippet_in_original_script() -> None:
    rules = compile_rules([RuleSpec("ru-cn", query="中俄 OR 烏克蘭")])
    [m] = rules.match(make_item(TW_TITLE, TW_BODY), ["rfi-tw"])
    assert m.rule == "ru-cn"
    assert m.keywords == ("中俄", "烏克蘭")
    # The first hit is in the body (the title has neither word); quoted in Traditional.
    assert m.snippet == "【烏克蘭】總統澤連斯基表示，臺灣問題與中俄關係。"


def test_snippet_is_bounded_and_centred_on_first_hit() -> None:
    body = "<p>" + "前文" * 100 + "乌克兰" + "后文" * 100 + "</p>"
    [m] = compile_query("烏克蘭").match(make_item("标题", body))
    assert len(m.snippet) <= 120
    assert "【乌克兰】" in m.snippet
    assert m.snippet.startswith("…") and m.snippet.endswith("…")


def test_snippet_maps_through_length_changing_normalization() -> None:
    # "…" folds to "..." and "ﬁ" to "fi": offsets after them shift in the folded text.
    title = "他说……ﬁnal Ｇ７峰会"
    [m] = compile_query("g7").match(make_item(title))
    assert m.snippet == "他说……ﬁnal 【Ｇ７】峰会"


def test_title_hit_is_preferred_for_snippet() -> None:
    [m] = compile_query("普京").match(make_item("普京访华", "<p>正文提到普京</p>"))
    assert m.snippet == "【普京】访华"


def test_sugar_fields_combine_with_query() -> None:
    spec = RuleSpec("s", query="普京", any=("中俄", "美俄"), all=("会谈",), none=("体育",))
    rules = compile_rules([spec])
    assert rules.match(make_item("普京 中俄 会谈"))
    assert not rules.match(make_item("普京 中俄"))  # all= missing
    assert not rules.match(make_item("普京 会谈"))  # any= missing
    assert not rules.match(make_item("普京 中俄 会谈 体育"))  # none= present
    assert not rules.match(make_item("中俄 会谈"))  # query missing


def test_sugar_without_query() -> None:
    rules = compile_rules([RuleSpec("s", any=("AI",), none=("PAIN",))])
    assert [m.keywords for m in rules.match(make_item("AI rules"))] == [("AI",)]
    assert not rules.match(make_item("AI and pain"))


@pytest.mark.parametrize(
    ("rule_feeds", "seen_in", "expected"),
    [
        ((), ["rfi-cn"], True),
        (("rfi-tw",), ["rfi-cn"], False),
        (("rfi-tw",), ["rfi-cn", "rfi-tw"], True),
        (("rfi-cn",), [], True),  # item.feed_id counts as seen
    ],
)
def test_rules_limited_to_feeds(
    rule_feeds: tuple[str, ...], seen_in: list[str], expected: bool
) -> None:
    rules = compile_rules([RuleSpec("r", query="中俄", feeds=rule_feeds)])
    assert bool(rules.match(make_item("中俄"), seen_in)) is expected


def test_many_rules_share_keywords_and_keep_config_order() -> None:
    specs = [
        RuleSpec(f"r{i}", query=q)
        for i, q in enumerate(
            ["中俄", "普京 -中俄", "普京", "title:普京", "習近平 OR 中俄", "美国"]
        )
    ]
    rules = compile_rules(specs)
    assert rules.names == [s.name for s in specs]
    assert [m.rule for m in rules.match(make_item("中俄峰会：普京"))] == ["r0", "r2", "r3", "r4"]


@pytest.mark.parametrize(
    ("query", "line", "column", "fragment"),
    [
        ("中俄 AND", 12, 7, "ends too early"),
        ("中俄 OR )", 12, 7, "unexpected ')'"),
        ('title:"特殊关系', 12, 7, "unterminated quoted phrase"),
        ("re:/abc", 12, 1, "unterminated regular expression"),
        ("中俄\nOR (普京", 13, 7, "ends too early"),
        ("中俄\nOR re:/a(/", 13, 9, "bad regular expression"),
        ("title:re:/(abc/", 12, 11, "bad regular expression"),
        ("x re:/a[b/", 12, 8, "bad regular expression"),
    ],
)
def test_syntax_errors_name_rule_file_line_and_column(
    query: str, line: int, column: int, fragment: str
) -> None:
    spec = RuleSpec("bad-rule", query=query, source="config.yaml", line=12)
    with pytest.raises(RuleError) as err:
        compile_rules([RuleSpec("ok", query="中俄"), spec])
    e = err.value
    assert (e.rule, e.path, e.line, e.column) == ("bad-rule", "config.yaml", line, column)
    assert fragment in str(e)
    assert "bad-rule" in str(e) and f"config.yaml:{line}" in str(e)


@pytest.mark.parametrize("query", ["NOT 体育", "-体育", "中俄 OR NOT 体育", "NOT (a AND b)"])
def test_purely_negative_rules_are_rejected(query: str) -> None:
    with pytest.raises(RuleError, match="none of its terms"):
        compile_query(query, name="neg")


def test_negation_of_negation_is_positive() -> None:
    rules = compile_query("NOT (NOT 中俄 OR 体育)")
    assert rules.match(make_item("中俄"))
    assert not rules.match(make_item("中俄 体育"))


def test_empty_keyword_and_empty_rule_are_errors() -> None:
    with pytest.raises(RuleError, match="empty after normalization"):
        compile_rules([RuleSpec("e", any=("&nbsp;",))])
    with pytest.raises(RuleError, match="no query"):
        compile_rules([RuleSpec("e")])


def test_regex_only_rule_is_evaluated_for_every_item() -> None:
    rules = compile_query(r"re:/\d{4}年/")
    assert rules.match(make_item("2023年"))
    assert not rules.match(make_item("今年"))


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Ｇ７ 峰會", "g7 峰会"),
        ("烏克蘭  習近平\n臺灣", "乌克兰 习近平 台湾"),
        ("<p>A&amp;B</p><script>x()</script>", "a&b"),
        ("Straße", "strasse"),
    ],
)
def test_normalize_text(raw: str, folded: str) -> None:
    assert normalize_text(raw) == folded


@pytest.mark.parametrize("plain", ["他说……ﬁnal Ｇ７峰会", "Straße ＡＢＣ 烏克蘭", "e\u0301té ½ ㈱"])
def test_offsets_point_back_to_source_characters(plain: str) -> None:
    folded, offsets = fold_with_offsets(html_to_text(plain))
    assert folded == fold_text(plain)
    assert len(offsets) == len(folded) + 1
    for i, ch in enumerate(folded):
        if ch != " ":
            assert fold_text(plain[offsets[i]]).find(ch) >= 0 or ch in fold_text(
                plain[offsets[i] : offsets[i + 1] + 1]
            )


def test_keyword_bytes_straddling_two_characters_do_not_match() -> None:
    # The automaton reads UTF-16: 中俄 is 2D 4E C4 4F, and 쑎 (U+C44E) is 4E C4, which
    # occurs at an odd offset across the two characters. That is no match.
    assert compile_query("쑎").match(make_item("中俄")) == []
    assert compile_query("쑎").match(make_item("中쑎")) != []


def test_astral_characters_keep_hit_offsets() -> None:
    # Emoji and CJK extension B characters are two UTF-16 code units each.
    item = make_item("😀😀 中俄 𠀀峰会 AI", "<p>𠀀𠀁</p>")
    [m] = compile_query("峰会").match(item)
    assert m.snippet == "😀😀 中俄 𠀀【峰会】 AI"
    [m] = compile_query("𠀁").match(item)
    assert m.snippet == "𠀀【𠀁】"
    assert compile_query("AI").match(item)  # word boundary checked at the right place
    assert not compile_query("AI").match(make_item("😀PAIN"))


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<a href='x'>foo</a>bar", "foobar"),
        ("<B>foo</B><SPAN class=x>bar</SPAN>", "foobar"),
        ("<b>foo</b><br/>bar", "foo bar"),
        ("<i>foo</i><img src=x>bar", "foo bar"),
        ("<ARTICLE>foo</ARTICLE>bar", "foo bar"),
        ("<span>foo</span><section>bar</section>", "foo bar"),
        ("<p>foo</p><P>bar</P><pre>baz</pre>", "foo bar baz"),
        ("<strong>习</strong><em>近平</em>", "习近平"),
        ("a<!-- <p> -->b<script>x<y</script>c", "ab c"),
    ],
)
def test_block_tags_separate_inline_tags_do_not(markup: str, text: str) -> None:
    assert html_to_text(markup) == text
