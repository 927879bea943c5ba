"""feedparser's well-formed suite (../shared/corpus/feedparser/tests/wellformed, 824 files)
through parse_feed, each file's ``Expect:`` evaluated against what the project keeps.

For every file: parse_feed raises nothing, reads as many entries as feedparser, and the
file's Expect expression (written over feedparser's result) is evaluated against a
feedparser-shaped view of the project's reading (``project_view``). An expression that
names a field the project does not keep is not applicable, with the reason from
``NOT_KEPT``; one the project reads differently on purpose is an intended difference, with
the reason from ``INTENDED``. Nothing else may fail. ``test_counts_are_documented`` keeps
the totals in docs/parsing.md true. Skipped when the corpus is absent, failed under CI.
tests/test_parse.py guards the cases that failed here with small fixtures of their own.
"""

from __future__ import annotations

import ast
import datetime
import io
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import feedparser
import pytest
from conftest import REPO, shared_dir

from monitor.items import plain_title
from monitor.parse import parse_feed
from monitor.parse.build import RawFeed, entry_item
from monitor.parse.feed import read_feed
from monitor.parse.links import document_base
from monitor.types import Item, ParsedFeed
from tests.support.corpus import CORPUS, entries_read, meta

WELLFORMED = CORPUS / "wellformed"
NOW = 4_102_444_800_000  # 2100-01-01: no corpus date; an entry stamped with it has none
# feedparser's own suite serves the files whose path names "http" from here, so their
# relative links resolve against this URL (tests/helpers.py in feedparser).
DOC_URI = "http://127.0.0.1:8097/tests/wellformed/"
DOCS = REPO / "docs" / "parsing.md"

# Fields of feedparser's result the project does not keep, and why: one table, matched
# (fnmatch) against the dotted path an Expect names, after ``X_detail.value`` -> ``X``.
_DETAIL = (
    "the project keeps a text field's value; its declared type, xml:base and language are not kept"
)
_SUBTITLE = "a feed's subtitle (tagline, description, info) is not kept"
_RIGHTS = "rights (copyright) are not kept"
_PEOPLE = "people other than the entry author (and their URLs and e-mail) are not kept"
_DATE_TEXT = "dates are kept as times (epoch ms), not as the text the feed wrote"
NOT_KEPT: dict[str, str] = {
    "version": "the feed format (rss20, atom10, ...) is not kept",
    "*_detail.*": _DETAIL,
    "*.content.type": _DETAIL,
    "*.content.base": _DETAIL,
    "*.content.language": _DETAIL,
    "feed.subtitle*": _SUBTITLE,
    "feed.tagline*": _SUBTITLE,
    "feed.description*": _SUBTITLE,
    "feed.info*": _SUBTITLE,
    "*.rights*": _RIGHTS,
    "*.copyright*": _RIGHTS,
    "feed.author*": "the feed's own author is not kept (each entry's author is)",
    "*.publisher*": _PEOPLE,
    "*.contributors*": _PEOPLE,
    "entries.author_detail*": "an entry's author is kept as one text, 'name (email)'",
    "entries.authors*": "an entry's author is kept as one text, 'name (email)'",
    "feed.generator*": "the generator of a feed is not kept",
    "feed.id": "the feed's own id is not kept (entries' ids are)",
    "feed.guid": "the feed's own id is not kept (entries' ids are)",
    "*.links*": "one link per entry is kept, the alternate one, as 'link'",
    "*.enclosures*": "enclosures are not kept",
    "entries.source*": "an entry's source feed is not kept",
    "*.tags.scheme": "a category's term is kept, not its scheme or label",
    "*.tags.label": "a category's term is kept, not its scheme or label",
    "feed.tags*": "the feed's own categories are not kept (entries' are)",
    "feed.category*": "the feed's own categories are not kept (entries' are)",
    "*.published": _DATE_TEXT,
    "*.updated": _DATE_TEXT,
    "*.created*": "creation dates (Atom 0.3 created) are not read",
    "*.expired*": "expiry dates are not kept",
    "feed.updated_parsed": "the feed's own dates are not kept (entries' are)",
    "feed.published_parsed": "the feed's own dates are not kept (entries' are)",
    "feed.validity*": "the feed's own dates are not kept (entries' are)",
    "entries.comments": "comment links are not kept",
    "entries.wfw_*": "comment links are not kept",
    "feed.docs": "the documentation URL of RSS is not kept",
    "feed.newlocation": "a feed's announced new location is not kept",
    "entries.guidislink": "whether a guid is a permalink is used (a permalink guid is the link) "
    "but not kept",
    "feed.image*": "images and icons are not kept",
    "feed.icon": "images and icons are not kept",
    "feed.logo": "images and icons are not kept",
    "feed.textinput*": "RSS text inputs are not kept",
    "feed.cloud*": "RSS cloud is not kept",
    "feed.language": "languages are not kept",
    "feed.ttl": "RSS ttl is kept, in seconds, as the poll interval's floor",
    "feed.errorreportsto": "not kept",
    "feed.license": "licences are not kept",
    "entries.license": "licences are not kept",
    "*.content.src": "content published elsewhere (src) is neither fetched nor kept",
    "*.thr_in-reply-to*": "elements of other namespaces (threading, unknown ones) are not kept",
    "entries.madeup_element": "elements of other namespaces (threading, unknown ones) are not kept",
}

# Paths the view holds (after ``X_detail.value`` -> ``X``).
KEPT = frozenset(
    {
        "bozo",
        "entries",
        "feed",
        "entries.title",
        "entries.link",
        "entries.id",
        "entries.guid",
        "entries.summary",
        "entries.description",
        "entries.content",
        "entries.content.value",
        "entries.author",
        "entries.tags",
        "entries.tags.term",
        "entries.category",
        "entries.published_parsed",
        "entries.updated_parsed",
        "feed.title",
        "feed.link",
    }
)

# What the project reads differently from feedparser on purpose, and why. An Expect that
# fails on the project's view but holds once one of these differences is allowed for is an
# intended difference: titles compared as plain text, HTML compared after feedparser's own
# post-processing. Files that need more are listed by name below.
PLAIN_TITLES = (
    "titles are plain text: tags are dropped, escaped markup too (mirrors "
    "double-escape titles), entities decoded; feedparser keeps sanitized HTML"
)
HTML_AS_PUBLISHED = (
    "summary and content are stored as published; feedparser resolves "
    "relative URIs inside the HTML and re-serializes it while sanitizing "
    "(templates and the matcher read the text)"
)
_ID_AS_WRITTEN = (
    "an entry id is kept as written, not resolved against the feed's URL: it "
    "is an identity, and a key must not change when a feed moves"
)
INTENDED: dict[str, str] = {
    "atom10/tag_in_attr.xml": "a title that is only an image has no plain text: no title",
    "base/http_entry_id_base_content_location.xml": _ID_AS_WRITTEN,
    "base/http_entry_id_base_docuri.xml": _ID_AS_WRITTEN,
    "base/rel_uri_with_unicode_character.xml": HTML_AS_PUBLISHED + "; here against the "
    "channel's xml:base",
}


@dataclass(frozen=True)
class Verdict:
    """How one file's Expect fared: passed, not applicable, intended or failed."""

    kind: str
    reason: str = ""


class PlainTitle(str):
    """A title that equals any markup whose plain text (``plain_title``) it is."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and plain_title(other) == str(self)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__


def _post_processed(html: str, base: str) -> str:
    """``html`` as feedparser would hand it out: relative URIs resolved, sanitized."""
    resolved = feedparser.urls.resolve_relative_uris(html, base, "utf-8", "text/html")
    return str(feedparser.sanitizer._sanitize_html(resolved, "utf-8", "text/html"))


class View(dict[str, Any]):
    """A dict read like feedparser's FeedParserDict: keys as attributes, ``has_key``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def has_key(self, key: str) -> bool:
        return key in self


def wellformed_files() -> list[Path | None]:
    if not WELLFORMED.is_dir():
        return [None]
    return sorted(WELLFORMED.rglob("*.xml"))


def label(path: Path | None) -> str:
    return "absent" if path is None else str(path.relative_to(WELLFORMED))


def _doc_uri(path: Path) -> str:
    """The URL feedparser's suite serves ``path`` from; "" for files it parses as text."""
    name = label(path)
    return DOC_URI + name if "http" in name else ""


def _time(ms: int) -> time.struct_time:
    return time.gmtime(ms // 1000)


def _title(title: str, plain: bool) -> dict[str, Any]:
    value = PlainTitle(title) if plain else title
    return {"title": value, "title_detail": View(value=value)}


def _entry_view(item: Item, rule: str, base: str) -> View:
    view = View()
    if item.title:
        view.update(_title(item.title, rule == PLAIN_TITLES))
    if item.url:
        view["link"] = item.url
    if item.entry_id:
        view.update(id=item.entry_id, guid=item.entry_id)
    summary = item.summary or item.content  # build drops a summary equal to the content
    content = item.content
    if rule == HTML_AS_PUBLISHED:
        summary, content = _post_processed(summary, base), _post_processed(content, base)
    if summary:
        view.update(summary=summary, description=summary, summary_detail=View(value=summary))
    if content:
        view["content"] = [View(value=content)]
    if item.author:
        view["author"] = item.author
    if item.categories:
        view.update(tags=[View(term=c) for c in item.categories], category=item.categories[0])
    if item.published_ms != NOW:
        # One time per item: the publish time, else the update time.
        view.update(
            published_parsed=_time(item.published_ms), updated_parsed=_time(item.published_ms)
        )
    return view


@dataclass
class Reading:
    """The project's reading of one file: parse_feed's result and every entry's Item."""

    parsed: ParsedFeed
    items: list[Item]  # one per entry the reader found, kept or not (key "" when skipped)
    base: str  # the document's base

    def view(self, rule: str = "") -> View:
        """The feedparser-shaped view; with ``rule``, one intended difference allowed for."""
        feed = View()
        if self.parsed.title:
            feed.update(_title(self.parsed.title, rule == PLAIN_TITLES))
        if self.parsed.link:
            feed["link"] = self.parsed.link
        bozo = any(w.startswith("not well-formed") for w in self.parsed.warnings)
        return View(
            bozo=bozo, feed=feed, entries=[_entry_view(i, rule, self.base) for i in self.items]
        )


def read(path: Path) -> Reading:
    body = path.read_bytes()
    headers, _, _ = meta(body)
    base_url = _doc_uri(path)
    parsed = parse_feed(body, headers, "corpus", NOW, base_url)
    raw = read_feed(body, headers)
    assert isinstance(raw, RawFeed), parsed.warnings
    base = document_base(base_url, headers)
    items = [entry_item(e, "corpus", NOW, base, []) for e in raw.entries]
    # The view is parse_feed's result: its items are the entries with a key, first of each.
    firsts = {i.key: i for i in reversed(items) if i.key}
    assert parsed.items == tuple(i for i in items if i.key and firsts[i.key] is i)
    return Reading(parsed, items, base)


def _paths(tree: ast.AST) -> Iterator[tuple[str, ...]]:
    """The field paths an expression reads: ``entries[0]['title_detail']['value']`` ->
    (entries, title). Indices are dropped; ``x.has_key('k')`` reads ``x.k``."""

    def chain(node: ast.AST) -> tuple[str, ...] | None:
        if isinstance(node, ast.Name):
            return (node.id,)
        if isinstance(node, ast.Subscript):
            head = chain(node.value)
            if head is None:
                return None
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                return (*head, key.value)
            return head
        if isinstance(node, ast.Attribute):
            head = chain(node.value)
            return None if head is None or node.attr == "has_key" else (*head, node.attr)
        return None

    def visit(node: ast.AST) -> Iterator[tuple[str, ...]]:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "has_key"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            head = chain(node.func.value)
            if head is not None:
                yield (*head, str(node.args[0].value))
                return
        found = chain(node) if isinstance(node, (ast.Subscript, ast.Attribute)) else None
        if found is not None:
            yield found
            return
        if isinstance(node, ast.Name) and node.id not in _FUNCTIONS:
            yield (node.id,)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def _normal(path: tuple[str, ...]) -> str:
    """Dotted path with ``X_detail.value`` read as ``X`` (the view's ``X_detail`` holds only
    the value)."""
    out: list[str] = []
    for part in path:
        if part == "value" and out and out[-1].endswith("_detail"):
            out[-1] = out[-1].removesuffix("_detail")
        else:
            out.append(part)
    return ".".join(out)


def not_kept(path: str) -> str | None:
    """Why a field is not kept; None when the view holds it. A field neither kept nor
    listed fails the test: nothing is skipped without a reason."""
    if path in KEPT:
        return None
    for pattern, reason in NOT_KEPT.items():
        if fnmatchcase(path, pattern):
            return reason
    raise AssertionError(f"{path}: neither kept (KEPT) nor listed with a reason (NOT_KEPT)")


_FUNCTIONS = {"len", "datetime"}
_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.Lt,
    ast.Gt,
    ast.LtE,
    ast.GtE,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Subscript,
    ast.Attribute,
    ast.Call,
    ast.Tuple,
    ast.List,
)


def evaluate(expr: str, view: View) -> bool:
    """``expr`` over ``view``, with no builtins but ``len`` and no dunder attributes: the
    corpus is trusted test data, but nothing more than reading the view is needed."""
    tree = ast.parse(expr, mode="eval")
    for node in ast.walk(tree):
        assert isinstance(node, _NODES), f"{type(node).__name__} in {expr!r}"
        assert not (isinstance(node, ast.Attribute) and node.attr.startswith("_")), expr
    code = compile(tree, "<expect>", "eval")
    scope = {"__builtins__": {"len": len}, "datetime": datetime}
    return bool(eval(code, scope, view))  # noqa: S307 - checked above, trusted corpus


def _feedparser_result(path: Path) -> Any:
    """feedparser's result, as its own suite gets it (served from DOC_URI where it is)."""
    body = path.read_bytes()
    headers, _, _ = meta(body)
    response = {k.lower(): v for k, v in headers.items()}
    base = _doc_uri(path)
    if base:  # as if fetched from there: feedparser joins its URL with Content-Location
        response["content-location"] = feedparser.urls.make_safe_absolute_uri(
            base, response.get("content-location", "")
        )
    return feedparser.parse(io.BytesIO(body), response_headers=response)


def check_links(reading: Reading, theirs: Any) -> None:
    """Every link feedparser resolves, the project resolves alike (entries and feed)."""
    for entry, item in zip(theirs.entries, reading.items, strict=True):
        # feedparser takes an Atom id for the link when there is none; the project does not
        # (an id is not meant to be fetched): compare the links the feed wrote.
        if entry.get("link") and not entry.get("guidislink"):
            assert item.url == entry["link"]
    if theirs.feed.get("links"):
        assert reading.parsed.link == theirs.feed.get("link")


def judge(path: Path) -> Verdict:
    """Parse one file and say how its Expect fares (raises on what must never happen)."""
    _, expects, _ = meta(path.read_bytes())
    assert len(expects) == 1, f"{label(path)}: {expects}"
    reading = read(path)
    theirs = _feedparser_result(path)
    assert entries_read(reading.parsed) == len(theirs.entries), reading.parsed.warnings
    expr = expects[0]
    if "link" not in expr:  # else the Expect says which link is right (see INTENDED too)
        check_links(reading, theirs)
    for field in sorted({_normal(p) for p in _paths(ast.parse(expr, mode="eval"))}):
        reason = not_kept(field)
        if reason is not None:
            return Verdict("not applicable", f"{field}: {reason}")
    ok, detail = _holds(expr, reading.view())
    if ok:
        return Verdict("passed")
    for rule in (PLAIN_TITLES, HTML_AS_PUBLISHED):
        if _holds(expr, reading.view(rule))[0]:
            return Verdict("intended", rule)
    if label(path) in INTENDED:
        return Verdict("intended", INTENDED[label(path)])
    return Verdict("failed", f"{expr}  {detail}  view: {reading.view()!r}")


def _holds(expr: str, view: View) -> tuple[bool, str]:
    try:
        return evaluate(expr, view), ""
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _corpus_path(path: Path | None) -> Path:
    shared_dir("corpus", "feedparser", "tests", "wellformed")  # skips, or fails under CI
    assert path is not None
    return path


@pytest.mark.corpus
@pytest.mark.parametrize("path", wellformed_files(), ids=label)
def test_wellformed_feed_reads_as_feedparser_expects(path: Path | None) -> None:
    verdict = judge(_corpus_path(path))
    assert verdict.kind != "failed", verdict.reason


def counts() -> Counter[str]:
    return Counter(judge(p).kind for p in wellformed_files() if p is not None)


@pytest.mark.corpus
def test_counts_are_documented() -> None:
    shared_dir("corpus", "feedparser", "tests", "wellformed")
    total = counts()
    assert total["failed"] == 0
    text = DOCS.read_text(encoding="utf-8")
    for kind in ("passed", "not applicable", "intended"):
        assert re.search(rf"\| {kind} \|[^|\n]*\| {total[kind]} \|", text), (kind, total)
    unused = set(INTENDED) - {label(p) for p in wellformed_files() if p is not None}
    assert not unused, unused


if __name__ == "__main__":  # python tests/test_parse_wellformed.py: the counts and reasons
    reasons: Counter[str] = Counter()
    for p in wellformed_files():
        if p is not None:
            try:
                v = judge(p)
            except AssertionError as exc:
                v = Verdict("failed", f"{label(p)}: {exc}")
            why = v.reason.split(": ", 1)[-1] if v.kind == "not applicable" else v.reason
            reasons[f"{v.kind}: {why[:300]}"] += 1
    for line, n in sorted(reasons.items()):
        print(f"{n:4}  {line}")
