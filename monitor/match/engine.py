"""Compiled rules: one Aho-Corasick automaton for every keyword, one formula per rule (pure).

Per item the text of each field is normalized once and scanned once; a rule is
evaluated only when one of its *trigger* keywords hit (see ``_trigger``), so
the cost per item follows the hits, not the number of rules. Regular
expressions run lazily, only when a candidate rule's formula reaches them
(rules anchored on a regex alone are evaluated for every item).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import ahocorasick

from monitor.errors import RuleError
from monitor.match.normalize import (
    fold_text,
    html_to_text,
    is_word_char,
    plain_text,
    to_simplified,
    url_text,
)
from monitor.match.query import (
    DEFAULT_FIELDS,
    And,
    Node,
    Not,
    Or,
    Pattern,
    QuerySyntaxError,
    Term,
    parse_query,
)
from monitor.match.snippet import FieldText, make_snippet
from monitor.types import Item, RuleMatch, RuleSpec

# Field order decides which hit a snippet shows first: the title, then the body.
FIELD_ORDER: tuple[str, ...] = ("title", "summary", "content", "author", "category", "url")
_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(FIELD_ORDER)}

Eval = Callable[["_ItemState"], bool]


@dataclass(slots=True)
class _Keyword:
    """A distinct normalized keyword; several rules may share it."""

    id: int
    folded: str
    left_boundary: bool  # Latin-script start: the hit must not continue a word
    right_boundary: bool


@dataclass(slots=True)
class _Regex:
    id: int
    compiled: re.Pattern[str]


@dataclass(slots=True)
class _Literal:
    """A positive literal of a rule, for reporting which configured keywords hit."""

    label: str  # as configured: the keyword, or "re:/.../"
    keyword: int | None  # keyword id, or None for a regex
    regex: int | None
    mask: int


@dataclass(slots=True)
class _Rule:
    index: int
    spec: RuleSpec
    evaluate: Eval
    literals: list[_Literal]
    feeds: frozenset[str]


@dataclass(slots=True)
class _ItemState:
    """Everything computed about one item while matching it."""

    fields: dict[str, FieldText]
    hits: dict[int, int] = field(default_factory=dict)  # keyword id -> field bits
    first: dict[tuple[int, str], int] = field(default_factory=dict)  # (kw, field) -> offset
    regex_results: dict[tuple[int, str], tuple[int, int] | None] = field(default_factory=dict)
    regexes: list[_Regex] = field(default_factory=list)

    def regex_span(self, rid: int, name: str) -> tuple[int, int] | None:
        key = (rid, name)
        if key not in self.regex_results:
            m = self.regexes[rid].compiled.search(self.fields[name].folded)
            self.regex_results[key] = m.span() if m else None
        return self.regex_results[key]

    def regex_hit(self, rid: int, mask: int) -> bool:
        return any(self.regex_span(rid, n) is not None for n in FIELD_ORDER if mask & _BIT[n])


def _mask(fields: frozenset[str]) -> int:
    out = 0
    for name in fields:
        out |= _BIT[name]
    return out


_DEFAULT_MASK = _mask(DEFAULT_FIELDS)


class _Builder:
    """Collects keywords and regexes across rules while formulas are compiled."""

    def __init__(self) -> None:
        self.keywords: dict[str, _Keyword] = {}
        self.regexes: list[_Regex] = []
        self._regex_ids: dict[str, int] = {}
        self._raw: dict[str, _Keyword | None] = {}  # as written -> keyword; rules repeat words

    def keyword(self, text: str) -> _Keyword | None:
        if text in self._raw:
            return self._raw[text]
        self._raw[text] = kw = self._new_keyword(text)
        return kw

    def _new_keyword(self, text: str) -> _Keyword | None:
        folded = fold_text(plain_text(text))
        if not folded:
            return None
        kw = self.keywords.get(folded)
        if kw is None:
            kw = _Keyword(len(self.keywords), folded, is_word_char(folded[0]),
                          is_word_char(folded[-1]))
            self.keywords[folded] = kw
        return kw

    def regex(self, source: str) -> int:
        rid = self._regex_ids.get(source)
        if rid is None:
            # Patterns run on normalized text: Traditional written in a pattern is
            # simplified, and case is ignored (the text is case-folded). NFKC is not
            # applied to the pattern: it could turn "（" into a regex metacharacter.
            compiled = re.compile(to_simplified(source), re.IGNORECASE)
            rid = len(self.regexes)
            self.regexes.append(_Regex(rid, compiled))
            self._regex_ids[source] = rid
        return rid


class _RuleCompiler:
    """Turns one rule's syntax tree into a closure, its literals and its trigger set."""

    def __init__(self, builder: _Builder, spec: RuleSpec) -> None:
        self.builder = builder
        self.spec = spec
        self.literals: list[_Literal] = []

    def fail(self, message: str, node: Term | Pattern) -> RuleError:
        # Sugar keywords (any/all/none) carry column 0: no position inside a query.
        line = self.spec.line + node.line - 1 if self.spec.line is not None else None
        return RuleError(self.spec.name, message, self.spec.source, line, node.column or None)

    def compile(self, node: Node, positive: bool = True) -> Eval:
        if isinstance(node, Term):
            kw = self.builder.keyword(node.text)
            if kw is None:
                raise self.fail(f"keyword {node.text!r} is empty after normalization", node)
            mask, kid = _mask(node.fields), kw.id
            if positive:
                self.literals.append(_Literal(node.text, kid, None, mask))
            return lambda st: bool(st.hits.get(kid, 0) & mask)
        if isinstance(node, Pattern):
            try:
                rid = self.builder.regex(node.source)
            except re.error as e:
                at = Pattern(node.source, node.fields, node.column + (e.pos or 0), node.line)
                raise self.fail(f"bad regular expression /{node.source}/: {e.msg}", at) from e
            mask = _mask(node.fields)
            if positive:
                self.literals.append(_Literal(f"re:/{node.source}/", None, rid, mask))
            return lambda st: st.regex_hit(rid, mask)
        if isinstance(node, Not):
            inner = self.compile(node.child, not positive)
            return lambda st: not inner(st)
        parts = [self.compile(c, positive) for c in node.children]
        if isinstance(node, And):
            if len(parts) == 2:
                a, b = parts
                return lambda st: a(st) and b(st)
            return lambda st: all(p(st) for p in parts)
        if len(parts) == 2:
            a, b = parts
            return lambda st: a(st) or b(st)
        return lambda st: any(p(st) for p in parts)


# A trigger set is a set of atoms such that the formula is false whenever none of
# them hits; ("k", id) for keywords, ("r", id) for regexes. None: no such set.
Trigger = frozenset[tuple[str, int]] | None


def _trigger(node: Node, builder: _Builder, positive: bool = True) -> Trigger:
    if isinstance(node, Term):
        kw = builder.keyword(node.text)
        return frozenset({("k", kw.id)}) if positive and kw is not None else None
    if isinstance(node, Pattern):
        rid = builder._regex_ids.get(node.source)
        return frozenset({("r", rid)}) if positive and rid is not None else None
    if isinstance(node, Not):
        return _trigger(node.child, builder, not positive)
    kids = [_trigger(c, builder, positive) for c in node.children]
    # De Morgan: under negation AND behaves as OR and vice versa.
    conjunctive = isinstance(node, And) == positive
    if conjunctive:
        usable = [k for k in kids if k is not None]
        if not usable:
            return None
        # Prefer keyword-only triggers (indexable), then the fewest atoms.
        return min(usable, key=lambda k: (any(a[0] == "r" for a in k), len(k)))
    if any(k is None for k in kids):
        return None
    return frozenset().union(*kids)  # type: ignore[arg-type]


def _spec_tree(spec: RuleSpec) -> tuple[Node, int | None]:
    """The rule's formula: its query AND the any/all/none sugar. Returns (tree, query line)."""
    parts: list[Node] = []
    if spec.query is not None and spec.query.strip():
        try:
            parts.append(parse_query(spec.query))
        except QuerySyntaxError as e:
            line = spec.line + e.line - 1 if spec.line is not None else None
            raise RuleError(spec.name, f"query syntax error: {e.message}", spec.source,
                            line, e.column) from e
    if spec.any:
        parts.append(Or(tuple(Term(k, DEFAULT_FIELDS, 0) for k in spec.any)))
    parts.extend(Term(k, DEFAULT_FIELDS, 0) for k in spec.all)
    parts.extend(Not(Term(k, DEFAULT_FIELDS, 0)) for k in spec.none)
    if not parts:
        raise RuleError(spec.name, "rule has no query and no keywords", spec.source, spec.line)
    return (parts[0] if len(parts) == 1 else And(tuple(parts))), spec.line


class RuleSet:
    """Rules compiled for matching; build with ``compile_rules`` or ``compile_query``."""

    def __init__(self, rules: list[_Rule], builder: _Builder) -> None:
        self._rules = rules
        self._regexes = builder.regexes
        self._by_keyword: dict[int, list[int]] = {}
        self._always: list[int] = []  # rules anchored on a regex: evaluated for every item
        self._automaton: ahocorasick.Automaton | None = None
        self._keywords = list(builder.keywords.values())
        if self._keywords:
            automaton = ahocorasick.Automaton()
            for kw in self._keywords:
                automaton.add_word(kw.folded, kw.id)
            automaton.make_automaton()
            self._automaton = automaton

    def _index(self, rule: int, trigger: frozenset[tuple[str, int]]) -> None:
        if any(kind == "r" for kind, _ in trigger):
            self._always.append(rule)
            return
        for _, kid in trigger:
            self._by_keyword.setdefault(kid, []).append(rule)

    @property
    def names(self) -> list[str]:
        return [r.spec.name for r in self._rules]

    def __len__(self) -> int:
        return len(self._rules)

    def _scan(self, state: _ItemState, name: str, bit: int) -> None:
        text = state.fields[name].folded
        if not text or self._automaton is None:
            return
        hits, first, n, keywords = state.hits, state.first, len(text), self._keywords
        seen: set[int] = set()
        # The hot loop: one pass per occurrence, so repeats are dropped first.
        for end, kid in self._automaton.iter(text):
            if kid in seen:
                continue
            kw = keywords[kid]
            start = end - len(kw.folded) + 1
            # Latin-script keywords match whole words only; CJK ones anywhere.
            if kw.left_boundary and start > 0 and is_word_char(text[start - 1]):
                continue
            if kw.right_boundary and end + 1 < n and is_word_char(text[end + 1]):
                continue
            seen.add(kid)
            hits[kid] = hits.get(kid, 0) | bit
            first[(kid, name)] = start

    def match(self, item: Item, feeds: Collection[str] = ()) -> list[RuleMatch]:
        """The rules ``item`` satisfies, in configuration order.

        ``feeds`` are the feed ids the item was seen in; a rule limited to some
        feeds applies only when they intersect (``item.feed_id`` counts too).
        """
        state = _ItemState(item_fields(item), regexes=self._regexes)
        for name in FIELD_ORDER:
            self._scan(state, name, _BIT[name])
        candidates: set[int] = set(self._always)
        for kid in state.hits:
            rules = self._by_keyword.get(kid)
            if rules:
                candidates.update(rules)
        if not candidates:
            return []
        seen_in = set(feeds)
        seen_in.add(item.feed_id)
        out: list[RuleMatch] = []
        for index in sorted(candidates):
            rule = self._rules[index]
            if rule.feeds and not rule.feeds & seen_in:
                continue
            if rule.evaluate(state):
                out.append(self._report(rule, state))
        return out

    def _report(self, rule: _Rule, state: _ItemState) -> RuleMatch:
        labels: list[str] = []
        best: tuple[int, int, int, str, str] | None = None  # field rank, start, end, field, hit
        for lit in rule.literals:
            for rank, name in enumerate(FIELD_ORDER):
                if not lit.mask & _BIT[name]:
                    continue
                if lit.keyword is not None:
                    start = state.first.get((lit.keyword, name))
                    if start is None:
                        continue
                    length = len(self._keywords[lit.keyword].folded)
                    span = (start, start + length)
                else:
                    assert lit.regex is not None
                    found = state.regex_span(lit.regex, name)
                    if found is None:
                        continue
                    span = found
                if lit.label not in labels:
                    labels.append(lit.label)
                folded = state.fields[name].folded[span[0]:span[1]]
                cand = (rank, span[0], span[1], name, folded)
                if best is None or cand[:2] < best[:2]:
                    best = cand
        snippet = ""
        if best is not None:
            _, start, end, name, folded = best
            snippet = make_snippet(state.fields[name], start, end, folded)
        return RuleMatch(rule.spec.name, tuple(labels), snippet)


def item_fields(item: Item) -> dict[str, FieldText]:
    """Each matchable field of ``item`` as original plain text plus its normalized form."""
    plain = {
        "title": plain_text(item.title),
        "summary": html_to_text(item.summary) if item.summary else "",
        "content": html_to_text(item.content) if item.content else "",
        "author": plain_text(item.author),
        # A separator that is neither a word character nor CJK keeps categories apart.
        "category": " | ".join(plain_text(c) for c in item.categories),
        "url": url_text(item.url),
    }
    return {name: FieldText(text, fold_text(text)) for name, text in plain.items()}


def _compile(specs: Iterable[RuleSpec]) -> RuleSet:
    builder = _Builder()
    rules: list[_Rule] = []
    triggers: list[frozenset[tuple[str, int]]] = []
    names: set[str] = set()
    for spec in specs:
        if spec.name in names:
            raise RuleError(spec.name, "duplicate rule name", spec.source, spec.line)
        names.add(spec.name)
        tree, _ = _spec_tree(spec)
        compiler = _RuleCompiler(builder, spec)
        evaluate = compiler.compile(tree)
        trigger = _trigger(tree, builder)
        if trigger is None:
            raise RuleError(
                spec.name,
                "rule could match an article in which none of its terms occur "
                "(e.g. 'NOT x' alone); add a positive term",
                spec.source, spec.line)
        rules.append(_Rule(len(rules), spec, evaluate, compiler.literals, frozenset(spec.feeds)))
        triggers.append(trigger)
    ruleset = RuleSet(rules, builder)
    for i, trigger in enumerate(triggers):
        ruleset._index(i, trigger)
    return ruleset


def compile_rules(specs: Sequence[RuleSpec]) -> RuleSet:
    """Compile configured rules; raises ``RuleError`` (rule, file, line, column) on a bad one."""
    return _compile(specs)


def compile_query(query: str, name: str = "--query") -> RuleSet:
    """A one-rule set from a query string, for ``feed-monitor test-rule --query``."""
    return _compile([RuleSpec(name=name, query=query)])
