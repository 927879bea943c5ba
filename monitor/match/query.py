"""The rule query language: a lark grammar and the syntax tree it produces (pure).

    中俄 OR (习近平 AND 普京)      terms, AND / OR / NOT, parentheses
    乌克兰 -体育                    implicit AND between terms; -term is NOT term
    title:"特殊关系"                 quoted phrase, scoped to one field
    title:re:/G\\d+/                 regular expression, explicit opt-in only
    普京 NEAR/5 会谈                 both within 5 units (a CJK character or a Latin word),
                                    either order; binds tighter than NOT, AND and OR

Operators are upper-case words; lower-case ``and``/``or``/``not`` are terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from lark.exceptions import VisitError

from monitor.errors import QuerySyntaxError

# Field names usable as scopes, and the item fields they read.
FIELDS: dict[str, str] = {
    "title": "title",
    "summary": "summary",
    "content": "content",
    "author": "author",
    "category": "category",
    "categories": "category",
    "url": "url",
}
# Unscoped terms search the article text, not its metadata.
DEFAULT_FIELDS: frozenset[str] = frozenset({"title", "summary", "content"})

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: unary (_AND? unary)*
?unary: _NOT unary          -> not_
      | _MINUS near         -> not_
      | near
?near: primary NEAR primary -> near
     | primary
?primary: "(" or_expr ")"
        | FIELD primary     -> scoped
        | WORD              -> word
        | PHRASE            -> phrase
        | REGEX             -> regex

FIELD.4: /(?i:title|summary|content|author|categories|category|url):/
REGEX.3: /re:\/(?:\\.|[^\\\/\n])+\//
_AND.2: /AND(?![^\s()])/
_OR.2: /OR(?![^\s()])/
_NOT.2: /NOT(?![^\s()])/
NEAR.3: /NEAR\/[0-9]+(?![^\s()])/
_MINUS: "-"
PHRASE: /"(?:\\.|[^"\\])*"/
// A word never starts with "-" (that is NOT) nor "re:/" (an unclosed regex is an error).
WORD: /(?!re:\/)[^\s()"\-][^\s()"]*/

%import common.WS
%ignore WS
"""


@dataclass(frozen=True, slots=True)
class Term:
    """A keyword or quoted phrase, matched literally after normalization."""

    text: str  # as written, unquoted
    fields: frozenset[str]
    column: int
    line: int = 1
    alias_of: str | None = None  # the keyword as configured, when this is another form of it
    exact: bool = False  # plain substring matching: no word-boundary check for Chinese


@dataclass(frozen=True, slots=True)
class Pattern:
    """An opted-in regular expression (``re:/.../``)."""

    source: str  # the pattern between the slashes, "\\/" unescaped
    fields: frozenset[str]
    column: int  # column of the first character of the pattern
    line: int = 1


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Near:
    """Both sides within ``distance`` units of each other, in either order, in one field."""

    left: Node
    right: Node
    distance: int
    column: int = 0
    line: int = 1


NEAR_MAX = 1000  # the largest distance NEAR accepts

Node = Term | Pattern | And | Or | Not | Near


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # LALR with the basic lexer: fast (thousands of rules load in well under a second)
    # and strict, so "AND" is always the operator, never a term.
    return Lark(_GRAMMAR, parser="lalr", lexer="basic", propagate_positions=False)


def _unscoped(node: Node, fields: frozenset[str]) -> Node:
    """Apply a scope to every leaf that has none yet (inner scopes win)."""
    if isinstance(node, Term | Pattern):
        return replace(node, fields=fields) if node.fields is DEFAULT_FIELDS else node
    if isinstance(node, Not):
        return Not(_unscoped(node.child, fields))
    if isinstance(node, Near):
        return replace(node, left=_unscoped(node.left, fields), right=_unscoped(node.right, fields))
    kids = tuple(_unscoped(c, fields) for c in node.children)
    return And(kids) if isinstance(node, And) else Or(kids)


class _ToTree(Transformer):  # type: ignore[type-arg]
    def word(self, items: list[Token]) -> Node:
        tok = items[0]
        if str(tok) == "NEAR" or str(tok).startswith("NEAR/"):
            raise QuerySyntaxError(
                "NEAR needs a distance and two sides: A NEAR/5 B", tok.line or 1, tok.column or 1
            )
        return Term(str(tok), DEFAULT_FIELDS, tok.column or 0, tok.line or 1)

    def phrase(self, items: list[Token]) -> Node:
        tok = items[0]
        text = str(tok)[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return Term(text, DEFAULT_FIELDS, tok.column or 0, tok.line or 1)

    def regex(self, items: list[Token]) -> Node:
        tok = items[0]
        source = str(tok)[4:-1].replace("\\/", "/")
        return Pattern(source, DEFAULT_FIELDS, (tok.column or 0) + 4, tok.line or 1)

    def scoped(self, items: list[object]) -> Node:
        field_tok, node = items
        assert isinstance(field_tok, Token)
        return _unscoped(node, frozenset({FIELDS[str(field_tok)[:-1].lower()]}))  # type: ignore[arg-type]

    def near(self, items: list[object]) -> Node:
        left, tok, right = items
        assert isinstance(tok, Token)
        distance = int(str(tok)[5:])
        if not 1 <= distance <= NEAR_MAX:
            raise QuerySyntaxError(
                f"NEAR distance must be 1 to {NEAR_MAX}, not {distance}",
                tok.line or 1,
                tok.column or 1,
            )
        return Near(left, right, distance, tok.column or 0, tok.line or 1)  # type: ignore[arg-type]

    def not_(self, items: list[Node]) -> Node:
        return Not(items[0])

    def and_expr(self, items: list[Node]) -> Node:
        return And(tuple(items))

    def or_expr(self, items: list[Node]) -> Node:
        return Or(tuple(items))


def _describe(err: UnexpectedInput, query: str) -> tuple[str, int, int]:
    token = getattr(err, "token", None)
    if isinstance(err, UnexpectedEOF) or getattr(token, "type", "") == "$END":
        lines = query.split("\n")
        return (
            "query ends too early (an operator or '(' is missing its right-hand side)",
            len(lines),
            len(lines[-1]) + 1,
        )
    line, column = err.line, err.column
    if isinstance(err, UnexpectedCharacters):
        pos: int = err.pos_in_stream or 0
        ch = query[pos] if pos < len(query) else ""
        if query.startswith("re:/", pos) or ch == "/":
            return "unterminated regular expression (write re:/pattern/)", line, column
        if ch == '"':
            return "unterminated quoted phrase", line, column
        return f"unexpected character {ch!r}", line, column
    tok = getattr(err, "token", None)
    if tok is not None and getattr(tok, "type", "") == "NEAR":
        return (
            (
                "NEAR joins two terms, phrases or groups; write (A NEAR/5 B) AND "
                "(B NEAR/5 C) for three"
            ),
            line,
            column,
        )
    return f"unexpected {str(tok)!r}" if tok is not None else "syntax error", line, column


# A query that is one plain word (the commonest rule) needs no parser: no
# whitespace, parentheses, quotes, leading "-" or ":" (so no scope and no regex).
_ONE_WORD = re.compile(r'[^\s()"\-:][^\s()":]*')
_OPERATORS = frozenset({"AND", "OR", "NOT"})


def simple_term(query: str) -> Term | None:
    """The Term that ``parse_query`` returns for a one-word query, else None."""
    if _ONE_WORD.fullmatch(query) and query not in _OPERATORS:
        return Term(query, DEFAULT_FIELDS, 1, 1)
    return None


def _word_list(query: str) -> Node | None:
    """What ``parse_query`` returns for words joined by single spaces, OR and AND, each
    word perhaps with a leading "-" ("乌克兰 -体育", "中俄 OR 中美"), else None (then
    the parser decides, errors included): most rules, at a fraction of lark's cost."""
    groups: list[list[Node]] = [[]]
    column, operator = 1, True  # True: an operator (or the start) came last
    for token in query.split(" "):
        if token == "OR" or token == "AND":
            if operator:
                return None
            if token == "OR":
                groups.append([])
            operator = True
        else:
            negated = token.startswith("-")
            word = token[1:] if negated else token
            if not _ONE_WORD.fullmatch(word) or word in _OPERATORS or word.startswith("NEAR"):
                return None
            term = Term(word, DEFAULT_FIELDS, column + negated, 1)
            groups[-1].append(Not(term) if negated else term)
            operator = False
        column += len(token) + 1
    if operator:
        return None
    ands = [g[0] if len(g) == 1 else And(tuple(g)) for g in groups]
    return ands[0] if len(ands) == 1 else Or(tuple(ands))


def parse_query(query: str) -> Node:
    """Parse a query into a syntax tree; raises ``QuerySyntaxError`` with line and column."""
    term = simple_term(query)
    if term is not None:
        return term  # lark costs ~50 us a query; thousands of rules are mostly one word
    simple = _word_list(query)
    if simple is not None:
        return simple
    if not query.strip():
        raise QuerySyntaxError("empty query", 1, 1)
    try:
        tree = _parser().parse(query)
    except UnexpectedInput as e:
        message, line, column = _describe(e, query)
        raise QuerySyntaxError(message, line, column) from e
    try:
        node = _ToTree().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, QuerySyntaxError):
            raise e.orig_exc from None
        raise
    if isinstance(node, Token):  # a lone terminal is not transformed by lark's inlining
        raise QuerySyntaxError("syntax error", 1, 1)
    return node  # type: ignore[no-any-return]
