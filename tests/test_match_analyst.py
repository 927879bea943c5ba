"""Rules that read Chinese news like an analyst: equivalent names across the strait (aliases),
proximity (NEAR), and no hits inside other words (word boundaries, exact)."""

from __future__ import annotations

import pytest

from monitor.errors import RuleError
from monitor.match import compile_query, compile_rules
from monitor.match.aliases import builtin_groups
from monitor.match.normalize import fold_text
from monitor.match.words import check, other_words
from monitor.types import Item, RuleSpec


def make_item(title: str = "", content: str = "") -> Item:
    url = "https://www.rfi.fr/cn/x"
    return Item(
        key=url, url=url, title=title, published_ms=1679494503000, feed_id="rfi-cn", content=content
    )


def matches(query: str, title: str = "", content: str = "", **spec: object) -> bool:
    rules = compile_rules([RuleSpec("r", query=query, **spec)])  # type: ignore[arg-type]
    return bool(rules.match(make_item(title, content)))


# (query, title, body, expected): each feature both ways, Simplified and Traditional,
# in titles and in bodies.
ALIASES = [
    ("普京", "普丁與習近平會談", "", True),  # Taiwan form, Traditional title
    ("普京", "", "<p>俄罗斯总统普丁表示</p>", True),  # Taiwan form in a Simplified body
    ("普丁", "", "普京抵达北京", True),  # the other way round
    ("普京", "", "Putin arrives in Beijing", True),  # the English form
    ("Putin", "普京抵达北京", "", True),
    ("马克龙", "馬克宏訪問北京", "", True),
    ("馬克宏", "", "法国总统马克龙说", True),
    ("Macron", "", "馬克宏說", True),
    ("内塔尼亚胡", "", "以色列總理納坦雅胡", True),
    ("老挝", "寮國總理訪台", "", True),
    ("寮國", "", "老挝总理访华", True),
    ("Laos", "", "老挝总理访华", True),
    ("斯塔默", "", "英國首相施紀賢", True),  # the Hong Kong form
    ("普京", "普拉博沃访华", "", False),  # another name entirely
    ("Putin", "", "Rasputin was a mystic", False),  # English forms keep word boundaries
    ("雪梨", "悉尼歌剧院", "", False),  # ambiguous forms are left out of the table
    ("马克龙", "", "马克思主义", False),
]


@pytest.mark.parametrize(("query", "title", "body", "expected"), ALIASES)
def test_aliases(query: str, title: str, body: str, expected: bool) -> None:
    assert matches(query, title, body) is expected


def test_aliases_false_turns_the_table_off() -> None:
    assert matches("普京", "普丁與習近平會談")
    assert not matches("普京", "普丁與習近平會談", aliases=False)
    assert matches("普京", "普京與習近平會談", aliases=False)


def test_config_groups_add_to_the_table() -> None:
    rules = compile_rules([RuleSpec("r", query="赖清德")], [["赖清德", "William Lai"]])
    assert rules.match(make_item("William Lai visits Paraguay"))
    # A config group joins a built-in one it shares a form with.
    rules = compile_rules([RuleSpec("r", query="普京")], [["普京", "Путин"]])
    assert rules.match(make_item("", "Путин и Си"))
    assert rules.match(make_item("", "普丁與習近平"))


def test_alert_says_which_form_hit() -> None:
    rules = compile_query("普京 OR 泽连斯基")
    (m,) = rules.match(make_item("普丁與澤倫斯基"))
    assert m.keywords == ("普京 ← 普丁", "泽连斯基 ← 澤倫斯基")
    assert "【普丁】" in m.snippet
    (m,) = rules.match(make_item("普京抵达"))
    assert m.keywords == ("普京",)


def test_builtin_table_is_consistent() -> None:
    seen: dict[str, tuple[str, ...]] = {}
    for group in builtin_groups():
        assert len(group) >= 2
        for form in group:
            folded = fold_text(form)
            assert seen.get(folded, group) == group, f"{form} is in two groups"
            seen[folded] = group
    for ambiguous in ("雪梨", "尼日", "突尼斯", "沙地", "馬利", "喬治亞", "沙拉"):
        assert fold_text(ambiguous) not in seen


NEAR = [
    ("普京 NEAR/5 习近平", "普京与习近平会谈", "", True),
    ("普京 NEAR/5 习近平", "", "習近平在北京迎接普丁", True),  # either order, alias, Traditional
    ("普京 NEAR/4 习近平", "", "习近平在北京迎接普京", False),  # 5 characters apart
    ("普京 NEAR/5 习近平", "", "习近平在北京迎接普京", True),
    ("Putin NEAR/2 Xi", "", "Putin met Xi in Moscow", True),  # words in Latin text
    ("Putin NEAR/2 Xi", "", "Putin, who came by train, met Xi", False),
    ('"特殊关系" NEAR/10 (中俄 OR 中美)', "", "中俄之间的特殊关系正在进入新时代", True),
    ("title:(普京 NEAR/5 会谈)", "普京与习近平会谈", "", True),
    ("title:(普京 NEAR/5 会谈)", "習近平訪俄", "普京与习近平会谈", False),  # body only
    ("普京 NEAR/5 会谈", "普京访华", "会谈在北京举行", False),  # two fields are not near
    ("普京 NEAR/5 会谈 AND 北京", "", "普京与习近平会谈。北京", True),  # NEAR binds tighter
    ("-普京 NEAR/3 会谈 乌克兰", "", "普京谈乌克兰，会谈另定", True),
]


@pytest.mark.parametrize(("query", "title", "body", "expected"), NEAR)
def test_near(query: str, title: str, body: str, expected: bool) -> None:
    assert matches(query, title, body) is expected


def test_near_snippet_marks_both_hits() -> None:
    (m,) = compile_query("普京 NEAR/5 习近平").match(make_item("", "習近平在北京迎接普丁。"))
    assert m.snippet == "【習近平】在北京迎接【普丁】。"
    assert m.keywords == ("普京 ← 普丁", "习近平")  # in the order of the query


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("a NEAR b", "NEAR needs a distance"),
        ("a NEAR/0 b", "NEAR distance must be 1 to 1000"),
        ("a NEAR/2 b NEAR/2 c", "NEAR joins two terms"),
        ("a NEAR/2 (b AND c)", "each side of NEAR"),
        ("a NEAR/2 re:/b+/", "regular expression cannot be a side of NEAR"),
        ("a NEAR/3", "query ends too early"),
    ],
)
def test_near_errors(query: str, message: str) -> None:
    with pytest.raises(RuleError) as e:
        compile_query(query)
    assert message in e.value.message


BOUNDARIES = [
    ("中法", "", "集中法律援助", False),  # 集中 / 法律
    ("中法", "集中法律援助", "", False),
    ("中法", "", "集中法律援助", False),
    ("中越", "", "集中越来越多资源", False),
    ("中越", "", "集中越來越多資源", False),  # Traditional
    ("中非", "", "中非共和国的局势", False),  # a longer word with another meaning
    ("中非", "中非共和國局勢", "", False),
    ("藏独", "", "收藏独特的古董", False),
    ("藏獨", "", "收藏獨特的古董", False),
    ("中美", "", "中美洲国家", False),
    ("中法", "", "中法关系紧张", True),  # recall: the keyword inside a word it starts
    ("中非", "", "中非合作论坛开幕", True),
    ("中非", "中非合作論壇開幕", "", True),
    ("乌克兰", "", "乌克兰人逃往波兰", True),
    ("烏克蘭", "", "乌克兰危机", True),
    ("中俄", "", "中俄联合声明", True),
    ("中俄", "中俄聯合聲明", "", True),
    ("藏独", "", "藏独分子", True),
    ("中越", "", "中越边境", True),
    ("普京", "", "俄罗斯总统普京遭指控", True),
]


@pytest.mark.parametrize(("query", "title", "body", "expected"), BOUNDARIES)
def test_word_boundaries(query: str, title: str, body: str, expected: bool) -> None:
    assert matches(query, title, body) is expected


@pytest.mark.parametrize(("query", "body"), [(q, b) for q, _, b, e in BOUNDARIES if not e and b])
def test_exact_keeps_substring_matching(query: str, body: str) -> None:
    assert matches(query, "", body, exact=True)


def test_snippet_marks_only_a_counted_hit() -> None:
    (m,) = compile_query("中非").match(make_item("", "集中非常多资源。中非合作论坛开幕"))
    assert m.snippet.count("【") == 1
    assert "【中非】合作" in m.snippet


def test_explain_says_why() -> None:
    rules = compile_query("中非 -体育 title:普京")
    lines = rules.explain(make_item("普丁谈中非共和国", "中非合作论坛 集中非常多 普京 体育"))
    assert lines == [
        "title @0: 普丁 (普京 ← 普丁): counted as another form of the keyword "
        "(no dictionary word crosses its ends)",
        "title @3: 中非 (中非): rejected: inside 中非共和国 (another meaning)",
        "content @0: 中非 (中非): counted (no dictionary word crosses its ends)",
        "content @8: 中非 (中非): rejected: straddles 集中|非常",
        "content @13: 普京 (普京): not counted: the rule does not look for it in the content",
        "content @16: 体育 (体育): counted, under NOT: it keeps the item out "
        "(no dictionary word crosses its ends)",
    ]
    assert compile_query("普京").explain(make_item("无关", "无关")) == []


def test_other_words_are_longer_than_the_keywords() -> None:
    for word in other_words():
        assert len(word) >= 3
        assert not check(word, 0, 2).counted
