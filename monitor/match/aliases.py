"""Equivalent names (普京 / 普丁 / Putin): the built-in table and the config's own groups,
and the expansion of a rule's keywords into every form of their group (pure).

The built-in table is package data, ``data/aliases.yaml`` (its sources and date are noted
there). Forms are compared after folding, so a group need not list a Traditional form that
folds to its Simplified one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache, lru_cache
from importlib import resources

import yaml

from monitor.match.normalize import fold_text, plain_text
from monitor.match.query import And, Near, Node, Not, Or, Pattern, Term

# folded form -> every form of its group, as written (the folded form's own first)
Table = dict[str, tuple[str, ...]]


def _add(table: Table, group: Iterable[str]) -> None:
    forms: list[str] = []
    seen: set[str] = set()
    for form in group:
        folded = fold_text(plain_text(form))
        if folded and folded not in seen:
            seen.add(folded)
            forms.append(form)
    if len(forms) < 2:
        return
    # A form already in a group joins the groups (the config may extend a built-in one).
    merged = list(forms)
    for form in forms:
        for other in table.get(fold_text(plain_text(form)), ()):
            if fold_text(plain_text(other)) not in {fold_text(plain_text(f)) for f in merged}:
                merged.append(other)
    for form in merged:
        table[fold_text(plain_text(form))] = tuple(merged)


@lru_cache(maxsize=1 << 16)
def folded_keyword(text: str) -> str:
    """A keyword as it is matched (folded); cached: compiling folds each term twice."""
    return fold_text(plain_text(text))


@cache
def builtin_groups() -> tuple[tuple[str, ...], ...]:
    """The groups of ``data/aliases.yaml``."""
    text = resources.files("monitor.match").joinpath("data/aliases.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return tuple(tuple(str(f) for f in g) for g in data["groups"])


@cache
def _builtin() -> Table:
    table: Table = {}
    for group in builtin_groups():
        _add(table, group)
    return table


def table(extra: Sequence[Sequence[str]] = (), builtin: bool = True) -> Table:
    """The alias table: the built-in groups (unless ``builtin`` is False) and ``extra``."""
    if not extra:
        return _builtin() if builtin else {}
    out: Table = dict(_builtin()) if builtin else {}
    for group in extra:
        _add(out, group)
    return out


def expand(node: Node, aliases: Table, exact: bool) -> Node:
    """``node`` with each keyword that has other forms replaced by an OR of every form
    (each remembering the keyword as configured), and ``exact`` set on every keyword."""
    if isinstance(node, Term):
        term = replace(node, exact=True) if exact and not node.exact else node
        if not aliases:
            return term
        own = folded_keyword(node.text)
        forms = aliases.get(own)
        if not forms:
            return term
        forms_: list[Node] = [term]
        forms_ += [
            replace(term, text=f, alias_of=node.text) for f in forms if folded_keyword(f) != own
        ]
        return Or(tuple(forms_))
    if isinstance(node, Pattern):
        return node
    if isinstance(node, Not):
        return Not(expand(node.child, aliases, exact))
    if isinstance(node, Near):
        return replace(
            node, left=expand(node.left, aliases, exact), right=expand(node.right, aliases, exact)
        )
    kids = tuple(expand(c, aliases, exact) for c in node.children)
    return And(kids) if isinstance(node, And) else Or(kids)
