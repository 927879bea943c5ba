"""The compiled matcher agrees with a plain reference matcher on random rules and texts.

The reference normalizes each field, finds keywords with ``str.find`` plus the
word-boundary rule, runs regexes with ``re.search`` and evaluates the formula
tree generated here directly, so the query parser is checked too (formulas are
rendered to query strings for the engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.errors import RuleError
from monitor.match import compile_rules, normalize_text
from monitor.match.normalize import fold_text, is_word_char, to_simplified
from monitor.types import Item, RuleSpec

WORDS = [
    "乌克兰",
    "烏克蘭",
    "习近平",
    "習近平",
    "台湾",
    "臺灣",
    "中俄",
    "普京",
    "关系",
    "關係",
    "体育",
    "體育",
    "峰会",
    "AI",
    "ai",
    "pain",
    "PAIN",
    "G7",
    "Ｇ７",
    "news",
    "driven",
]
# "…" and "ß" change length when folded, so snippets of such text need an offset map.
SEPARATORS = ["", "", " ", "-", "，", "。", "&amp;", "  ", "…", "ß", "\u3000", "（"]
PATTERNS = [r"关系|ai", r"g\d", r"^习", r"峰会$", r"[a-z]+-driven"]
SCOPES = [None, "title", "content"]


@dataclass(frozen=True)
class Leaf:
    text: str
    scope: str | None
    regex: bool = False


@dataclass(frozen=True)
class Op:
    kind: str  # "and", "or", "not"
    children: tuple[object, ...]


def cjk_fragment(word: str) -> st.SearchStrategy[str]:
    # Substrings of CJK words give partial-overlap keywords; Latin words stay whole.
    if is_word_char(word[0]):
        return st.just(word)
    return st.integers(0, len(word) - 1).flatmap(
        lambda i: st.integers(i + 1, len(word)).map(lambda j: word[i:j])
    )


keywords = st.sampled_from(WORDS).flatmap(cjk_fragment)
leaves = st.one_of(
    st.builds(Leaf, keywords, st.sampled_from(SCOPES)),
    st.builds(Leaf, st.sampled_from(PATTERNS), st.sampled_from(SCOPES), st.just(True)),
)
formulas = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.builds(lambda c: Op("and", tuple(c)), st.lists(kids, min_size=2, max_size=3)),
        st.builds(lambda c: Op("or", tuple(c)), st.lists(kids, min_size=2, max_size=3)),
        st.builds(lambda c: Op("not", (c,)), kids),
    ),
    max_leaves=6,
)
texts = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8).map(
    lambda parts: "".join(w + s for w, s in parts)
)


def render(node: object, style: int = 0) -> str:
    if isinstance(node, Leaf):
        scope = f"{node.scope}:" if node.scope else ""
        body = f"re:/{node.text}/" if node.regex else f'"{node.text}"'
        return scope + body
    assert isinstance(node, Op)
    if node.kind == "not":
        inner = render(node.children[0], style)
        return f"-{inner}" if isinstance(node.children[0], Leaf) and style % 2 else f"NOT {inner}"
    joiner = " OR " if node.kind == "or" else (" " if style % 2 else " AND ")
    return "(" + joiner.join(render(c, style + 1) for c in node.children) + ")"


def field_texts(item: Item) -> dict[str, str]:
    return {
        "title": normalize_text(item.title, markup=False),
        "content": normalize_text(item.content),
    }


def keyword_hits(keyword: str, text: str) -> bool:
    k = fold_text(keyword)
    start = text.find(k)
    while start >= 0:
        end = start + len(k)
        left_ok = not is_word_char(k[0]) or start == 0 or not is_word_char(text[start - 1])
        right_ok = not is_word_char(k[-1]) or end == len(text) or not is_word_char(text[end])
        if left_ok and right_ok:
            return True
        start = text.find(k, start + 1)
    return False


def leaf_hits(leaf: Leaf, fields: dict[str, str]) -> bool:
    scoped = [leaf.scope] if leaf.scope else ["title", "content"]
    if leaf.regex:
        pattern = re.compile(to_simplified(leaf.text), re.IGNORECASE)
        return any(pattern.search(fields[f]) for f in scoped)
    return any(keyword_hits(leaf.text, fields[f]) for f in scoped)


def evaluate(node: object, hit: dict[Leaf, bool]) -> bool:
    if isinstance(node, Leaf):
        return hit[node]
    assert isinstance(node, Op)
    if node.kind == "not":
        return not evaluate(node.children[0], hit)
    values = [evaluate(c, hit) for c in node.children]
    return all(values) if node.kind == "and" else any(values)


def positive_leaves(node: object, positive: bool = True) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node] if positive else []
    assert isinstance(node, Op)
    flip = node.kind == "not"
    return [leaf for c in node.children for leaf in positive_leaves(c, positive != flip)]


def all_leaves(node: object) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    assert isinstance(node, Op)
    return [leaf for c in node.children for leaf in all_leaves(c)]


@settings(max_examples=200, deadline=None)
@given(
    rules=st.lists(st.tuples(formulas, st.integers(0, 3)), min_size=1, max_size=6),
    title=texts,
    content=texts,
    wrap=st.booleans(),
)
def test_compiled_matcher_agrees_with_reference(
    rules: list[tuple[object, int]], title: str, content: str, wrap: bool
) -> None:
    specs = [RuleSpec(f"r{i}", query=render(f, style)) for i, (f, style) in enumerate(rules)]
    try:
        ruleset = compile_rules(specs)
    except RuleError as e:
        assume("none of its terms" not in str(e))
        raise
    item = Item(
        key="k",
        url="https://example.org/a",
        title=title,
        published_ms=0,
        feed_id="f",
        content=f"<p>{content}</p>" if wrap else content,
    )
    fields = field_texts(item)
    expected: dict[str, set[str]] = {}
    for spec, (formula, _) in zip(specs, rules, strict=True):
        hit = {leaf: leaf_hits(leaf, fields) for leaf in all_leaves(formula)}
        # Accepted rules must be anchored: false when no term hits at all.
        assert not evaluate(formula, dict.fromkeys(hit, False)), spec.query
        if evaluate(formula, hit):
            expected[spec.name] = {
                f"re:/{leaf.text}/" if leaf.regex else leaf.text
                for leaf in positive_leaves(formula)
                if hit[leaf]
            }
    matches = ruleset.match(item, ["f"])
    got = {m.rule: set(m.keywords) for m in matches}
    assert got == expected, (specs, fields)
    for m in matches:
        assert_snippet_marks_a_hit(m.snippet, m.keywords)


def assert_snippet_marks_a_hit(snippet: str, labels: tuple[str, ...]) -> None:
    """The text in 【】 is, once folded, one of the keywords or a match of one of the regexes."""
    assert snippet.count("【") == 1 and snippet.count("】") == 1, snippet
    marked = fold_text(snippet[snippet.index("【") + 1 : snippet.index("】")])
    words = [fold_text(k) for k in labels if not k.startswith("re:/")]
    patterns = [re.compile(to_simplified(k[4:-1]), re.I) for k in labels if k.startswith("re:/")]
    assert marked in words or any(p.fullmatch(marked) for p in patterns), (snippet, labels)
