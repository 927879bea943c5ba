"""Compiled rules: one Aho-Corasick automaton for every keyword, one formula per rule (pure).

A rule is evaluated only when one of its *trigger* keywords hit (``_trigger``); how the
cost per item follows the hits: docs/architecture.md, 'Matching cost'. Keywords of two or
three Chinese characters count only where they are words of the text (``words``), checked
lazily for the rules that are evaluated; keywords in the alias table match every form of
their name (``aliases``); ``A NEAR/n B`` looks at every occurrence of both sides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import ahocorasick_rs

from monitor.errors import QuerySyntaxError, RuleError
from monitor.match import words
from monitor.match.aliases import Table, expand, folded_keyword
from monitor.match.aliases import table as alias_table
from monitor.match.normalize import (
    fold_fields,
    html_to_text,
    is_cjk,
    is_word_char,
    plain_text,
    to_simplified,
    url_text,
)
from monitor.match.query import (
    DEFAULT_FIELDS,
    And,
    Near,
    Node,
    Not,
    Or,
    Pattern,
    Term,
    parse_query,
)
from monitor.match.snippet import FieldText, make_snippet, make_snippet_spans
from monitor.types import Item, RuleMatch, RuleSpec

# Field order decides which hit a snippet shows first: the title, then the body.
FIELD_ORDER: tuple[str, ...] = ("title", "summary", "content", "author", "category", "url")
_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(FIELD_ORDER)}

Eval = Callable[["_ItemState"], bool]
# A NEAR's pair: field rank, field, left span, right span, left label, right label.
NearPair = tuple[int, str, tuple[int, int], tuple[int, int], str, str]
_DFA_MAX_KEYWORDS = 500
# What one scan of one field found: keyword id -> start of its first valid occurrence.
Found = dict[int, int]


@dataclass(slots=True)
class _Keyword:
    """A distinct normalized keyword; several rules may share it."""

    id: int
    folded: str
    left_boundary: bool  # Latin-script start: the hit must not continue a word
    right_boundary: bool
    words: bool = False  # 2-3 Chinese characters: hits must be words (module words)


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
    fields: tuple[tuple[int, str], ...]  # (rank in FIELD_ORDER, field) it may hit in
    words: bool = False  # only hits that are words of the text count
    near: _NearEval | None = None  # a NEAR: reported with both hits


@dataclass(slots=True)
class _TermUse:
    """A keyword as one rule uses it, for ``RuleSet.explain``."""

    label: str
    keyword: int
    mask: int
    negated: bool
    words: bool


@dataclass(slots=True)
class _Rule:
    index: int
    spec: RuleSpec
    evaluate: Eval
    literals: list[_Literal]
    feeds: frozenset[str]
    terms: list[_TermUse] = field(default_factory=list)


@cache
def _mask_fields(mask: int) -> tuple[str, ...]:
    return tuple(name for name in FIELD_ORDER if mask & _BIT[name])


@dataclass(slots=True)
class _ItemState:
    """Everything computed about one item while matching it."""

    fields: dict[str, FieldText]  # the fields some rule reads
    found: dict[str, Found]  # per field: the keywords that hit there
    regexes: list[_Regex]
    matches: dict[str, list[tuple[int, int, int]]]  # per field: every (keyword, start, end)
    ruleset: RuleSet
    words: dict[tuple[int, str], int | None] = field(default_factory=dict)
    positions: dict[tuple[int, str, bool], list[int]] = field(default_factory=dict)
    nears: dict[int, NearPair | None] = field(default_factory=dict)  # id(_NearEval) -> pair
    verdicts: dict[tuple[str, int, int], bool] = field(default_factory=dict)
    by_keyword: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    unions: dict[int, Container[int]] = field(default_factory=dict)  # mask -> keyword ids
    regex_results: dict[tuple[int, str], tuple[int, int] | None] = field(default_factory=dict)
    snippets: dict[tuple[str, int, int], str] = field(default_factory=dict)
    firsts: dict[tuple[int, tuple[tuple[int, str], ...]], tuple[int, int, str] | None] = field(
        default_factory=dict
    )

    def hit(self, mask: int) -> Container[int]:
        """The keyword ids that hit in any field of ``mask``."""
        got = self.unions.get(mask)
        if got is None:
            parts = [self.found[n] for n in _mask_fields(mask) if n in self.found]
            got = parts[0] if len(parts) == 1 else set().union(*parts)
            self.unions[mask] = got
        return got

    def first_hit(
        self, kid: int, fields: tuple[tuple[int, str], ...], words: bool = False
    ) -> tuple[int, int, str] | None:
        """(field rank, start, field) of a keyword's first hit in the first of ``fields``
        where it occurs; shared by every rule that reports the keyword."""
        key = (kid if not words else ~kid, fields)
        if key in self.firsts:
            return self.firsts[key]
        out = None
        for rank, name in fields:
            hits = self.found.get(name)
            if hits is not None and kid in hits:
                start = hits[kid] if not words else self.first_word(kid, name)
                if start is not None:
                    out = (rank, start, name)
                    break
        self.firsts[key] = out
        return out

    def first_word(self, kid: int, name: str) -> int | None:
        """Start of the keyword's first hit in field ``name`` that is a word of the text."""
        key = (kid, name)
        if key not in self.words:
            # Occurrences in order of their start, checked until one counts: a keyword
            # that occurs many times costs one check when its first occurrence is a word.
            first = None
            text = self.fields[name].folded
            size = self.ruleset._lengths[kid]
            start = self.found[name][kid]  # the first occurrence: most often a word
            if self.is_word(name, text, start, start + size):
                first = start
            else:
                for start in self.all_positions(kid, name, False):
                    if self.is_word(name, text, start, start + size):
                        first = start
                        break
            self.words[key] = first
        return self.words[key]

    def starts(self, name: str) -> dict[int, list[int]]:
        """Keyword id -> every start of it in field ``name``, in order (built once)."""
        got = self.by_keyword.get(name)
        if got is None:
            got = {}
            for kid, start, _ in self.matches.get(name, ()):
                got.setdefault(kid, []).append(start)
            for starts in got.values():
                starts.sort()
            self.by_keyword[name] = got
        return got

    def is_word(self, name: str, text: str, start: int, end: int) -> bool:
        key = (name, start, end)
        got = self.verdicts.get(key)
        if got is None:
            got = self.verdicts[key] = words_check(text, start, end).counted
        return got

    def word_hit(self, kid: int, mask: int) -> bool:
        for name in _mask_fields(mask):
            hits = self.found.get(name)
            if hits is not None and kid in hits and self.first_word(kid, name) is not None:
                return True
        return False

    def all_positions(self, kid: int, name: str, words: bool) -> list[int]:
        """Every start of a valid hit of the keyword in field ``name``, in order; with
        ``words``, only hits that are words of the text."""
        key = (kid, name, words)
        got = self.positions.get(key)
        if got is None:
            hits = self.found.get(name)
            got = []
            if hits is not None and kid in hits:
                text = self.fields[name].folded
                size = self.ruleset._lengths[kid]
                for start in self.starts(name).get(kid, ()):
                    end = start + size
                    if not self.ruleset._valid(kid, text, start, end):
                        continue
                    if words and not self.is_word(name, text, start, end):
                        continue
                    got.append(start)
            self.positions[key] = got
        return got

    def first_regex_hit(
        self, rid: int, fields: tuple[tuple[int, str], ...]
    ) -> tuple[int, int, int, str] | None:
        for rank, name in fields:
            span = self.regex_span(rid, name)
            if span is not None:
                return rank, span[0], span[1], name
        return None

    def regex_span(self, rid: int, name: str) -> tuple[int, int] | None:
        key = (rid, name)
        if key not in self.regex_results:
            text = self.fields[name].folded if name in self.fields else ""
            m = self.regexes[rid].compiled.search(text)
            self.regex_results[key] = m.span() if m else None
        return self.regex_results[key]

    def regex_hit(self, rid: int, mask: int) -> bool:
        return any(self.regex_span(rid, n) is not None for n in _mask_fields(mask))


@cache
def _mask(fields: frozenset[str]) -> int:
    out = 0
    for name in fields:
        out |= _BIT[name]
    return out


def words_check(text: str, start: int, end: int) -> words.Verdict:
    return words.check(text, start, end)


class _Builder:
    """Collects keywords and regexes across rules while formulas are compiled."""

    def __init__(self, aliases: Table | None = None) -> None:
        self.aliases: Table = aliases if aliases is not None else alias_table()
        self.keywords: dict[str, _Keyword] = {}
        self.by_id: list[_Keyword] = []
        self.regexes: list[_Regex] = []
        self._regex_ids: dict[str, int] = {}
        self._raw: dict[str, _Keyword | None] = {}  # as written -> keyword; rules repeat words
        self.field_mask = 0  # every field some term or pattern reads: only these are scanned
        self.uses: dict[int, int] = {}  # keyword id -> rules using it as a positive term

    def keyword(self, text: str) -> _Keyword | None:
        if text in self._raw:
            return self._raw[text]
        self._raw[text] = kw = self._new_keyword(text)
        return kw

    def _new_keyword(self, text: str) -> _Keyword | None:
        folded = folded_keyword(text)
        if not folded:
            return None
        kw = self.keywords.get(folded)
        if kw is None:
            kw = _Keyword(
                len(self.keywords),
                folded,
                is_word_char(folded[0]),
                is_word_char(folded[-1]),
                words.needs_check(folded),
            )
            self.keywords[folded] = kw
            self.by_id.append(kw)
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


@cache
def _ranked(mask: int) -> tuple[tuple[int, str], ...]:
    return tuple((rank, name) for rank, name in enumerate(FIELD_ORDER) if mask & _BIT[name])


class _RuleCompiler:
    """Turns one rule's syntax tree into a closure, its literals and its trigger set."""

    def __init__(self, builder: _Builder, spec: RuleSpec) -> None:
        self.builder = builder
        self.spec = spec
        self.literals: list[_Literal] = []
        self.positive: set[int] = set()  # keyword ids of positive terms
        self.terms: list[_TermUse] = []

    def fail(self, message: str, node: Term | Pattern | Near) -> RuleError:
        # Sugar keywords (any/all/none) carry column 0: no position inside a query.
        line = self.spec.line + node.line - 1 if self.spec.line is not None else None
        return RuleError(self.spec.name, message, self.spec.source, line, node.column or None)

    def term(self, node: Term, positive: bool) -> tuple[int, int, bool]:
        """A keyword's (id, field mask, whether its hits must be words), recorded."""
        kw = self.builder.keyword(node.text)
        if kw is None:
            raise self.fail(f"keyword {node.text!r} is empty after normalization", node)
        mask, kid = _mask(node.fields), kw.id
        self.builder.field_mask |= mask
        checked = kw.words and not node.exact
        label = node.text if node.alias_of is None else f"{node.alias_of} ← {node.text}"
        self.terms.append(_TermUse(label, kid, mask, not positive, checked))
        if positive:
            self.literals.append(_Literal(label, kid, None, _ranked(mask), checked))
            self.positive.add(kid)
        return kid, mask, checked

    def compile(self, node: Node, positive: bool = True) -> Eval:
        if isinstance(node, Term):
            kid, mask, checked = self.term(node, positive)
            if checked:
                return lambda st: kid in st.hit(mask) and st.word_hit(kid, mask)
            return lambda st: kid in st.hit(mask)
        if isinstance(node, Or) and all(isinstance(c, Term) for c in node.children):
            # Every form of a name (alias expansion), or an any: list: one closure.
            infos = [self.term(c, positive) for c in node.children]  # type: ignore[arg-type]
            if len({m for _, m, _ in infos}) == 1:
                mask = infos[0][1]
                plain = tuple(k for k, _, c in infos if not c)
                words_ = tuple(k for k, _, c in infos if c)

                def any_form(st: _ItemState) -> bool:
                    hit = st.hit(mask)
                    for k in plain:
                        if k in hit:
                            return True
                    return any(k in hit and st.word_hit(k, mask) for k in words_)

                return any_form
            parts_ = [_term_eval(k, m, c) for k, m, c in infos]
            return lambda st: any(p(st) for p in parts_)
        if isinstance(node, Pattern):
            try:
                rid = self.builder.regex(node.source)
            except re.error as e:
                at = Pattern(node.source, node.fields, node.column + (e.pos or 0), node.line)
                raise self.fail(f"bad regular expression /{node.source}/: {e.msg}", at) from e
            mask = _mask(node.fields)
            self.builder.field_mask |= mask
            if positive:
                self.literals.append(_Literal(f"re:/{node.source}/", None, rid, _ranked(mask)))
            return lambda st: st.regex_hit(rid, mask)
        if isinstance(node, Not):
            inner = self.compile(node.child, not positive)
            return lambda st: not inner(st)
        if isinstance(node, Near):
            near = _NearEval(
                self.side(node, node.left, positive),
                self.side(node, node.right, positive),
                node.distance,
            )
            if positive:
                self.literals.append(_Literal(near.label, None, None, (), near=near))
            return near.holds
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

    def side(self, near: Near, node: Node, positive: bool) -> list[tuple[str, int, int, bool]]:
        """One side of a NEAR: (label, keyword id, field mask, words) of each term in it."""
        if isinstance(node, Term):
            kw = self.builder.keyword(node.text)
            if kw is None:
                raise self.fail(f"keyword {node.text!r} is empty after normalization", node)
            mask = _mask(node.fields)
            self.builder.field_mask |= mask
            checked = kw.words and not node.exact
            label = node.text if node.alias_of is None else f"{node.alias_of} ← {node.text}"
            self.terms.append(_TermUse(label, kw.id, mask, not positive, checked))
            if positive:
                self.positive.add(kw.id)
            return [(label, kw.id, mask, checked)]
        if isinstance(node, Or):
            return [t for c in node.children for t in self.side(near, c, positive)]
        if isinstance(node, Pattern):
            raise self.fail("a regular expression cannot be a side of NEAR", near)
        raise self.fail(
            "each side of NEAR is a term, a phrase, or an OR of them "
            "(not AND, NOT or another NEAR)",
            near,
        )


def _term_eval(kid: int, mask: int, checked: bool) -> Eval:
    if checked:
        return lambda st: kid in st.hit(mask) and st.word_hit(kid, mask)
    return lambda st: kid in st.hit(mask)


def _gap_units(text: str, a: int, b: int) -> int:
    """Units between ``a`` and ``b``: each CJK character and each Latin-script word."""
    n, in_word = 0, False
    for ch in text[a:b]:
        if is_word_char(ch):
            if not in_word:
                n += 1
            in_word = True
        else:
            in_word = False
            if is_cjk(ch):
                n += 1
    return n


@dataclass(slots=True)
class _NearEval:
    """``A NEAR/n B``: the closest pair of hits in one field, cached per item."""

    left: list[tuple[str, int, int, bool]]
    right: list[tuple[str, int, int, bool]]
    distance: int

    @property
    def label(self) -> str:
        return (
            f"{'|'.join(t[0] for t in self.left)} NEAR/{self.distance} "
            f"{'|'.join(t[0] for t in self.right)}"
        )

    def holds(self, st: _ItemState) -> bool:
        return self.pair(st) is not None

    def pair(self, st: _ItemState) -> NearPair | None:
        """(field rank, field, left span, right span, left label, right label) of the
        first pair within the distance, in the first field that has one."""
        key = id(self)
        if key in st.nears:
            return st.nears[key]
        out: NearPair | None = None
        for rank, name in enumerate(FIELD_ORDER):
            if name not in st.found:
                continue
            lefts = self._spans(st, self.left, name)
            if not lefts:
                continue
            rights = self._spans(st, self.right, name)
            text = st.fields[name].folded
            for ls, le, ll in lefts:
                for rs, re_, rl in rights:
                    if (ls, le) == (rs, re_):
                        continue
                    a, b = (le, rs) if ls <= rs else (re_, ls)
                    if a > b or _gap_units(text, a, b) <= self.distance:
                        out = (rank, name, (ls, le), (rs, re_), ll, rl)
                        break
                if out:
                    break
            if out:
                break
        st.nears[key] = out
        return out

    @staticmethod
    def _spans(
        st: _ItemState, terms: list[tuple[str, int, int, bool]], name: str
    ) -> list[tuple[int, int, str]]:
        bit = _BIT[name]
        out: list[tuple[int, int, str]] = []
        for label, kid, mask, checked in terms:
            if mask & bit:
                size = st.ruleset._lengths[kid]
                out += [(s, s + size, label) for s in st.all_positions(kid, name, checked)]
        return out


# A trigger set is a set of atoms such that the formula is false whenever none of
# them hits; ("k", id, mask) for a keyword in the fields of mask, ("r", id, mask) for
# a regex. None: no such set.
Atom = tuple[str, int, int]
Trigger = frozenset[Atom] | None


def _trigger(node: Node, builder: _Builder, positive: bool = True) -> Trigger:
    if isinstance(node, Term):
        kw = builder.keyword(node.text)
        return (
            frozenset({("k", kw.id, _mask(node.fields))}) if positive and kw is not None else None
        )
    if isinstance(node, Pattern):
        rid = builder._regex_ids.get(node.source)
        return frozenset({("r", rid, _mask(node.fields))}) if positive and rid is not None else None
    if isinstance(node, Not):
        return _trigger(node.child, builder, not positive)
    if isinstance(node, Near):  # both sides must hit: an AND as far as triggers go
        return _trigger(And((node.left, node.right)), builder, positive)
    kids = [_trigger(c, builder, positive) for c in node.children]
    # De Morgan: under negation AND behaves as OR and vice versa.
    conjunctive = isinstance(node, And) == positive
    if conjunctive:
        usable = [k for k in kids if k is not None]
        if not usable:
            return None
        return min(usable, key=lambda k: _trigger_cost(k, builder))
    if any(k is None for k in kids):
        return None
    return frozenset().union(*kids)  # type: ignore[arg-type]


def _anchored(node: Node, positive: bool = True) -> bool:
    """Whether ``_trigger`` finds a trigger set: the formula is false when no term hits."""
    if isinstance(node, Term | Pattern):
        return positive
    if isinstance(node, Not):
        return _anchored(node.child, not positive)
    if isinstance(node, Near):
        return _anchored(And((node.left, node.right)), positive)
    kids = [_anchored(c, positive) for c in node.children]
    return any(kids) if isinstance(node, And) == positive else all(kids)


def _trigger_cost(trigger: frozenset[Atom], builder: _Builder) -> tuple[int, int, int, int]:
    """Which side of an AND to index a rule under: the one least likely to hit (see
    docs/architecture.md, 'Trigger keywords')."""
    keywords = [builder.by_id[kid] for kind, kid, _ in trigger if kind == "k"]
    return (
        len(keywords) < len(trigger),
        len(trigger),
        sum(builder.uses.get(kw.id, 0) for kw in keywords),
        -sum(len(kw.folded) for kw in keywords),
    )


def _spec_tree(spec: RuleSpec) -> tuple[Node, int | None]:
    """The rule's formula: its query AND the any/all/none sugar. Returns (tree, query line)."""
    parts: list[Node] = []
    if spec.query is not None and spec.query.strip():
        try:
            parts.append(parse_query(spec.query))
        except QuerySyntaxError as e:
            line = spec.line + e.line - 1 if spec.line is not None else None
            raise RuleError(
                spec.name, f"query syntax error: {e.message}", spec.source, line, e.column
            ) from e
    if spec.any:
        parts.append(Or(tuple(Term(k, DEFAULT_FIELDS, 0) for k in spec.any)))
    parts.extend(Term(k, DEFAULT_FIELDS, 0) for k in spec.all)
    parts.extend(Not(Term(k, DEFAULT_FIELDS, 0)) for k in spec.none)
    if not parts:
        raise RuleError(spec.name, "rule has no query and no keywords", spec.source, spec.line)
    return (parts[0] if len(parts) == 1 else And(tuple(parts))), spec.line


def _rule_tree(spec: RuleSpec, aliases: Table) -> Node:
    """The rule's formula with its keywords' other forms (unless ``aliases: false``) and
    its ``exact`` setting applied."""
    tree, _ = _spec_tree(spec)
    if spec.aliases or spec.exact:
        tree = expand(tree, aliases if spec.aliases else {}, spec.exact)
    return tree


class RuleSet:
    """Rules compiled for matching; build with ``compile_rules`` or ``compile_query``."""

    def __init__(self, rules: list[_Rule], builder: _Builder) -> None:
        self._rules = rules
        # The feeds that rules limited to some feeds name: the only ones ``match`` looks
        # for among the feeds an item was seen in.
        self.feeds_named: frozenset[str] = frozenset().union(*(r.feeds for r in rules))
        self._regexes = builder.regexes
        # field -> keyword id -> rules to evaluate when the keyword hits in that field
        self._by_field: dict[str, dict[int, list[int]]] = {}
        self._always: list[int] = []  # rules anchored on a regex: evaluated for every item
        self._keywords = list(builder.keywords.values())
        self._lengths = [len(kw.folded) for kw in self._keywords]
        # Latin-script keywords must sit on word boundaries; their hits are checked.
        self._bounded = frozenset(
            kw.id for kw in self._keywords if kw.left_boundary or kw.right_boundary
        )
        self._fields = _mask_fields(builder.field_mask)
        self._automaton: ahocorasick_rs.BytesAhoCorasick | None = None
        if self._keywords:
            # Patterns in keyword-id order, so a match's index is the id. UTF-16, and a
            # DFA for small rule sets: see docs/architecture.md, 'The automaton'.
            dfa = len(self._keywords) <= _DFA_MAX_KEYWORDS
            self._automaton = ahocorasick_rs.BytesAhoCorasick(
                [_utf16(kw.folded) for kw in self._keywords],
                implementation=ahocorasick_rs.Implementation.DFA if dfa else None,
            )

    def _index(self, rule: int, trigger: frozenset[Atom]) -> None:
        if any(kind == "r" for kind, _, _ in trigger):
            self._always.append(rule)
            return
        # Indexed per field: 'title:"x"' is no candidate when x occurs in the body only.
        for _, kid, mask in trigger:
            for name in _mask_fields(mask):
                self._by_field.setdefault(name, {}).setdefault(kid, []).append(rule)

    @property
    def checks_words(self) -> bool:
        """Whether some rule's hits are checked with jieba's dictionary (``words``)."""
        return any(t.words for r in self._rules for t in r.terms)

    @property
    def names(self) -> list[str]:
        return [r.spec.name for r in self._rules]

    def __len__(self) -> int:
        return len(self._rules)

    def _valid(self, kid: int, text: str, start: int, end: int) -> bool:
        """Whether a hit of a Latin-script keyword is a whole word (others: always)."""
        if kid not in self._bounded:
            return True
        kw = self._keywords[kid]
        if kw.left_boundary and start > 0 and is_word_char(text[start - 1]):
            return False
        return not (kw.right_boundary and end < len(text) and is_word_char(text[end]))

    def _scan(self, text: str) -> Found:
        """Keyword id -> start of its first valid occurrence in ``text`` (folded)."""
        return self._scan_all(text)[0]

    def _scan_all(self, text: str) -> tuple[Found, list[tuple[int, int, int]]]:
        """What ``_scan`` returns, and every (keyword, start, end) in order of their end."""
        if self._automaton is None:
            return {}, []
        data = _utf16(text)
        raw = self._automaton.find_matches_as_indexes(data, overlapping=True)
        if not raw:
            return {}, []
        # Byte offsets to character offsets. A match at an odd byte offset straddles
        # two characters: not a match. Astral characters take four bytes.
        if len(data) == 2 * len(text):
            matches = [(kid, s >> 1, e >> 1) for kid, s, e in raw if not s & 1]
        else:
            char_at = _unit_offsets(text)
            matches = [(kid, char_at[s >> 1], char_at[e >> 1]) for kid, s, e in raw if not s & 1]
        # Matches come in order of their end; for one keyword that is the order of
        # their start too, and walking them backwards leaves the first one in the dict.
        found = {kid: start for kid, start, _ in reversed(matches)}
        if not self._bounded.isdisjoint(found):
            self._check_boundaries(text, matches, found)
        return found, matches

    def _check_boundaries(
        self, text: str, matches: Sequence[tuple[int, int, int]], found: Found
    ) -> None:
        # Latin-script keywords match whole words only ("AI" is not in "PAIN"); CJK
        # ones anywhere. Only occurrences of such keywords are looked at again.
        pending = self._bounded.intersection(found)
        for kid in pending:
            del found[kid]
        keywords, n = self._keywords, len(text)
        for kid, start, end in matches:
            if kid not in pending or kid in found:
                continue
            kw = keywords[kid]
            if kw.left_boundary and start > 0 and is_word_char(text[start - 1]):
                continue
            if kw.right_boundary and end < n and is_word_char(text[end]):
                continue
            found[kid] = start

    def match(self, item: Item, feeds: Collection[str] = ()) -> list[RuleMatch]:
        """The rules ``item`` satisfies, in configuration order.

        ``feeds`` are the feed ids the item was seen in; a rule limited to some
        feeds applies only when they intersect (``item.feed_id`` counts too).
        """
        fields = item_fields(item, self._fields)
        found: dict[str, Found] = {}
        matches: dict[str, list[tuple[int, int, int]]] = {}
        for name, text in fields.items():
            if text.folded:
                found[name], matches[name] = self._scan_all(text.folded)
        candidates: set[int] = set(self._always)
        for name, hits in found.items():
            index = self._by_field.get(name)
            if index:
                for kid in index.keys() & hits.keys():
                    candidates.update(index[kid])
        if not candidates:
            return []
        state = _ItemState(fields, found, self._regexes, matches, self)
        seen_in = set(feeds)
        seen_in.add(item.feed_id)
        out: list[RuleMatch] = []
        for position in sorted(candidates):
            rule = self._rules[position]
            if rule.feeds and not rule.feeds & seen_in:
                continue
            if rule.evaluate(state):
                out.append(self._report(rule, state))
        return out

    def explain(self, item: Item, rule: int = 0) -> list[str]:
        """For ``test-rule --explain``: every place a keyword of the rule occurs in the item
        and why it counts or not (word boundary, alias, field, NOT); empty when none does."""
        spec = self._rules[rule]
        uses: dict[int, list[_TermUse]] = {}
        for use in spec.terms:
            uses.setdefault(use.keyword, []).append(use)
        lines: list[str] = []
        fields = item_fields(item, FIELD_ORDER)
        for name, text in fields.items():
            if not text.folded:
                continue
            _, matches = self._scan_all(text.folded)
            for kid, start, end in sorted(matches, key=lambda m: (m[1], m[0])):
                for use in uses.get(kid, ()):
                    lines.append(
                        f"{name} @{start}: {text.folded[start:end]} "
                        f"({use.label}): {self._why(use, name, text.folded, start, end)}"
                    )
        return lines

    def _why(self, use: _TermUse, name: str, text: str, start: int, end: int) -> str:
        if not self._valid(use.keyword, text, start, end):
            return "rejected: part of a longer Latin-script word"
        if not use.mask & _BIT[name]:
            return f"not counted: the rule does not look for it in the {name}"
        reason = ""
        if use.words:
            verdict = words_check(text, start, end)
            if not verdict.counted:
                return f"rejected: {verdict.reason}"
            reason = f" ({verdict.reason})"
        if use.negated:
            return f"counted, under NOT: it keeps the item out{reason}"
        alias = " as another form of the keyword" if " ← " in use.label else ""
        return f"counted{alias}{reason}"

    def _report(self, rule: _Rule, state: _ItemState) -> RuleMatch:
        labels: list[str] = []
        best: tuple[int, int, int, str] | None = None  # field rank, start, end, field
        pair = None
        for lit in rule.literals:
            if lit.near is not None:
                got = lit.near.pair(state)
                if got is None:
                    continue
                rank, name, left, right, l_label, r_label = got
                for label in (l_label, r_label):
                    if label not in labels:
                        labels.append(label)
                if best is None or (rank, min(left[0], right[0])) < best[:2]:
                    best = (rank, min(left[0], right[0]), max(left[1], right[1]), name)
                    pair = (left, right)
                continue
            if lit.keyword is not None:
                first = state.first_hit(lit.keyword, lit.fields, lit.words)
                if first is None:
                    continue
                rank, start, name = first
                hit: tuple[int, int, int, str] = (
                    rank,
                    start,
                    start + self._lengths[lit.keyword],
                    name,
                )
            else:
                regex_hit = state.first_regex_hit(lit.regex, lit.fields)  # type: ignore[arg-type]
                if regex_hit is None:
                    continue
                hit = regex_hit
            if lit.label not in labels:
                labels.append(lit.label)
            if best is None or hit[:2] < best[:2]:
                best = hit
                pair = None
        snippet = ""
        if best is not None and pair is not None:
            text = state.fields[best[3]]
            snippet = make_snippet_spans(text, sorted(pair))
            return RuleMatch(rule.spec.name, tuple(labels), snippet)
        if best is not None:
            _, start, end, name = best
            # Rules that share a keyword share its first hit: build that snippet once.
            key = (name, start, end)
            snippet = state.snippets.get(key, "")
            if not snippet:
                text = state.fields[name]
                snippet = make_snippet(text, start, end, text.folded[start:end])
                state.snippets[key] = snippet
        return RuleMatch(rule.spec.name, tuple(labels), snippet)


def _utf16(text: str) -> bytes:
    # surrogatepass: a lone surrogate stays one code unit, like any BMP character.
    return text.encode("utf-16-le", "surrogatepass")


def _unit_offsets(text: str) -> list[int]:
    """UTF-16 code unit index -> character index, for text with astral characters."""
    out: list[int] = []
    for i, ch in enumerate(text):
        out.append(i)
        if ord(ch) > 0xFFFF:
            out.append(i)  # the low surrogate of the pair
    out.append(len(text))
    return out


def _plain(item: Item, name: str) -> str:
    if name == "title":
        return plain_text(item.title)
    if name == "summary":
        return html_to_text(item.summary) if item.summary else ""
    if name == "content":
        return html_to_text(item.content) if item.content else ""
    if name == "author":
        return plain_text(item.author)
    if name == "category":
        # A separator that is neither a word character nor CJK keeps categories apart.
        return " | ".join(plain_text(c) for c in item.categories)
    return url_text(item.url)


def item_fields(item: Item, names: Sequence[str] = FIELD_ORDER) -> dict[str, FieldText]:
    """The fields ``names`` of ``item`` as original plain text plus their normalized form."""
    plain = [_plain(item, name) for name in names]
    # Title, summary, content and author come from plain_text: whitespace collapsed.
    collapsed = not {"category", "url"}.intersection(names)
    folded = fold_fields(plain, collapsed=collapsed) if plain else []
    return {
        name: FieldText(p, f, aligned, stepwise)
        for name, p, (f, aligned, stepwise) in zip(names, plain, folded, strict=True)
    }


def _compile(specs: Iterable[RuleSpec], aliases: Sequence[Sequence[str]] = ()) -> RuleSet:
    builder = _Builder(alias_table(aliases))
    rules: list[_Rule] = []
    trees: list[Node] = []
    names: set[str] = set()
    for spec in specs:
        if spec.name in names:
            raise RuleError(spec.name, "duplicate rule name", spec.source, spec.line)
        names.add(spec.name)
        tree = _rule_tree(spec, builder.aliases)
        compiler = _RuleCompiler(builder, spec)
        evaluate = compiler.compile(tree)
        if not _anchored(tree):
            raise RuleError(
                spec.name,
                "rule could match an article in which none of its terms occur "
                "(e.g. 'NOT x' alone); add a positive term",
                spec.source,
                spec.line,
            )
        for kid in compiler.positive:
            builder.uses[kid] = builder.uses.get(kid, 0) + 1
        rules.append(
            _Rule(
                len(rules), spec, evaluate, compiler.literals, frozenset(spec.feeds), compiler.terms
            )
        )
        trees.append(tree)
    ruleset = RuleSet(rules, builder)
    # Triggers are chosen once every rule is known: how many rules share a keyword
    # is part of the choice (see _trigger_cost).
    for i, tree in enumerate(trees):
        trigger = _trigger(tree, builder)
        assert trigger is not None
        ruleset._index(i, trigger)
    return ruleset


def compile_rules(specs: Sequence[RuleSpec], aliases: Sequence[Sequence[str]] = ()) -> RuleSet:
    """Compile configured rules; raises ``RuleError`` (rule, file, line, column) on a bad one.
    ``aliases``: groups of equivalent names added to the built-in table."""
    return _compile(specs, aliases)


def compile_query(
    query: str, name: str = "query", aliases: Sequence[Sequence[str]] = ()
) -> RuleSet:
    """A one-rule set from a query string, for ``feed-monitor test-rule --query``; the rule
    is called ``query`` in its output and rendered messages."""
    return _compile([RuleSpec(name=name, query=query)], aliases)
