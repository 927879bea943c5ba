"""The ``<!--ms-->`` markdown archive format: text to entry and back, byte for byte.

Pure: strings in, strings and records out; reading and writing files is in
:mod:`monitor.archive.files`. One file is one item::

    ---                                 optional YAML front matter (Jekyll posts)
    ...
    ---
    <!--1679494503000-->                publish time, epoch milliseconds (negative
                                        before 1970)
    [title as written](url)             title keeps its HTML entities (&quot;)
    ------
                                        blank line
    <div>...</div>                      HTML body, one line or many

An :class:`ArchiveEntry` keeps every field as written, so ``format_archive``
of a parsed file gives back the exact text; ``entry_to_item`` and
``item_to_entry`` convert to and from the decoded :class:`~monitor.types.Item`.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from typing import NoReturn

import yaml

from monitor.config.loader import load_yaml
from monitor.errors import FileError
from monitor.items import item_key
from monitor.types import Item

SEPARATOR = "------"
_STAMP = re.compile(r"<!--(-?\d+)-->")
# The stamp is stored as a signed 64-bit integer (a BigInteger column).
_MAX_STAMP_DIGITS = 19
_STAMP_LIMIT = 2**63
# The same pattern html.unescape uses to find character references; an "&" that
# starts one must be written as "&amp;", any other "&" can stay as written.
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
# What makes a file an archive file (well-formed or not): its first line after any front
# matter is a timestamp comment, however malformed its number, or an HTML comment over a
# [link line. A notes file (a README, a page opening with <!-- lint: off -->) is neither.
_STAMPISH = re.compile(r"<!--\s*-?[0-9]+\s*-->")
_COMMENT = re.compile(r"<!--.*-->")


class ArchiveError(FileError):
    """A file or entry that is not in the archive format, located by file and line."""

    default_source = "<string>"


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One archive item with every field exactly as written in the file.

    ``title`` is raw (entities such as ``&quot;`` not decoded). ``front_matter``
    is the whole block before the timestamp comment, both ``---`` lines and
    any blank lines after it included, or None. ``body`` excludes the file's
    final line break; ``final_newline`` says whether there was one, and
    ``newline`` is the line break of the header lines ("\\n" or "\\r\\n").
    """

    published_ms: int
    title: str
    url: str
    body: str
    front_matter: str | None = None
    final_newline: bool = True
    newline: str = "\n"

    def __post_init__(self) -> None:
        # Refuse entries that format_archive could write but parse_archive would
        # read back differently: the format has no escapes for these.
        problem = _entry_problem(self)
        if problem:
            raise ArchiveError(problem, "<entry>")


def _entry_problem(entry: ArchiveEntry) -> str | None:
    if entry.newline not in ("\n", "\r\n"):
        return f"newline must be '\\n' or '\\r\\n', got {entry.newline!r}"
    if not -_STAMP_LIMIT <= entry.published_ms < _STAMP_LIMIT:
        return f"published_ms must fit in 64 bits, got {entry.published_ms}"
    if entry.newline in entry.title:
        return "the title must be one line"
    if not entry.url:
        return "the URL must not be empty"
    if entry.newline in entry.url or "](" in entry.url:
        return f"the URL must be one line without '](': {entry.url!r}"
    fm = entry.front_matter
    if fm is not None and (
        not fm.startswith("---" + entry.newline)
        or not fm.endswith(entry.newline)
        or "---" not in fm.split(entry.newline)[1:]
    ):
        return "front matter must open and close with '---' lines and end with a line break"
    return None


def parse_archive(text: str, source: str = "<string>") -> ArchiveEntry:
    """Parse one archive item; ``source`` names the file in errors."""
    if text.startswith("\ufeff"):
        raise ArchiveError(
            "the file starts with a byte-order mark; expected the "
            "timestamp comment <!--epoch ms--> (save as UTF-8 without BOM)",
            source,
            1,
        )
    first_end = text.find("\n")
    newline = "\r\n" if first_end > 0 and text[first_end - 1] == "\r" else "\n"
    lines = _Lines(text, newline, source)

    front_matter: str | None = None
    if lines.peek() == "---":
        front_matter = _read_front_matter(lines, source)

    stamp_line = lines.take("the timestamp comment <!--epoch ms-->")
    m = _STAMP.fullmatch(stamp_line)
    if not m:
        lines.fail(f"expected the timestamp comment <!--epoch ms-->, found {_show(stamp_line)}")
    digits = m.group(1)
    magnitude = digits.removeprefix("-")
    if magnitude.startswith("0") and (len(magnitude) > 1 or digits.startswith("-")):
        lines.fail(f"the timestamp {digits} has leading zeros; expected epoch milliseconds")
    if len(magnitude) > _MAX_STAMP_DIGITS or not -_STAMP_LIMIT <= int(digits) < _STAMP_LIMIT:
        lines.fail(
            f"the timestamp {_show(digits)} is out of range; expected epoch "
            "milliseconds (a signed 64-bit number)"
        )

    link = lines.take("the link line [title](url)")
    split = link.rfind("](")
    if not (link.startswith("[") and link.endswith(")")) or split < 0:
        lines.fail(f"expected the link line [title](url), found {_show(link)}")
    # The title may hold "[", "]", "(", ")" and even "]("; the URL never holds
    # "](" (item_to_entry guarantees it), so the last "](" is the split.
    title, url = link[1:split], link[split + 2 : -1]
    if not url:
        lines.fail("the link line [title](url) has an empty URL")

    sep = lines.take(f"the separator line {SEPARATOR}")
    if sep != SEPARATOR:
        lines.fail(f"expected the separator line {SEPARATOR}, found {_show(sep)}")
    blank = lines.take("a blank line before the body")
    if blank != "":
        lines.fail(f"expected a blank line before the body, found {_show(blank)}")

    body = text[lines.pos :]
    final_newline = body.endswith(newline)
    if final_newline:
        body = body[: -len(newline)]
    return ArchiveEntry(int(digits), title, url, body, front_matter, final_newline, newline)


def looks_like_archive(text: str) -> bool:
    """Whether ``text`` means to be an archive item, well-formed or not: ``import`` skips
    other files (notes in the same folder) and reports malformed ones."""
    rows = text.removeprefix("\ufeff").splitlines()
    i = 0
    if rows and rows[0].rstrip() == "---":
        close = next((n for n in range(1, len(rows)) if rows[n].rstrip() == "---"), None)
        if close is None:  # never closed: is there a timestamp comment under it at all?
            return any(_STAMPISH.fullmatch(r.strip()) for r in rows[1:])
        i = close + 1
    while i < len(rows) and not rows[i].strip():
        i += 1
    if i >= len(rows):
        return False
    first = rows[i].strip()
    if _STAMPISH.fullmatch(first):
        return True
    return bool(_COMMENT.fullmatch(first)) and i + 1 < len(rows) and rows[i + 1].startswith("[")


def format_archive(entry: ArchiveEntry) -> str:
    """The text of one archive file; the inverse of :func:`parse_archive`."""
    nl = entry.newline
    return "".join(
        (
            entry.front_matter or "",
            f"<!--{entry.published_ms}-->{nl}",
            f"[{entry.title}]({entry.url}){nl}",
            f"{SEPARATOR}{nl}{nl}",
            entry.body,
            nl if entry.final_newline else "",
        )
    )


def entry_to_item(entry: ArchiveEntry, feed_id: str) -> Item:
    """The decoded item: entities in the title unescaped, key from the URL.

    A non-HTTP URL (the format allows any) becomes an ``id:`` key, as an entry
    id would. Front matter, when present, gives ``author`` and ``categories``
    (Jekyll ``tags`` and ``categories``), which rules can scope.
    """
    key = item_key(entry.url, entry.url)
    if key is None:
        raise ArchiveError(f"no usable URL for a key: {entry.url!r}", "<entry>")
    author, categories = _front_matter_fields(entry.front_matter, entry.newline)
    return Item(
        key=key,
        url=entry.url,
        title=html.unescape(entry.title),
        published_ms=entry.published_ms,
        feed_id=feed_id,
        content=entry.body,
        author=author,
        categories=categories,
    )


def item_to_entry(item: Item, front_matter: str | None = None) -> ArchiveEntry:
    """The archive entry for an item (the body is ``content``, else ``summary``).

    The title is escaped as little as round-tripping needs, following the
    archives we read: ``"`` as ``&quot;`` (RFI writes it so), an ``&`` only
    where it would otherwise start a character reference (``柳向阳&王家新``
    stays as is), line breaks as ``&#10;``/``&#13;``; ``'``, brackets and
    parentheses are written raw. Without ``front_matter``, an item with an
    author or categories gets a small one holding them. The URL gets percent-escapes only for what
    would break the link line: whitespace, control characters and ``](``.
    """
    if not item.url:
        raise ArchiveError(f"item {item.key!r} has no URL; the archive format needs one", "<item>")
    if front_matter is None and (item.author or item.categories):
        front_matter = _item_front_matter(item)
    return ArchiveEntry(
        published_ms=item.published_ms,
        title=escape_title(item.title),
        url=_link_safe_url(item.url),
        body=item.content or item.summary,
        front_matter=front_matter,
    )


def _item_front_matter(item: Item) -> str:
    # The Jekyll keys entry_to_item reads, so author and categories survive a round trip.
    rows = ["---"]
    if item.author:
        rows.append(f"author: {_yaml_quoted(item.author)}")
    if item.categories:
        rows.append(f"categories: [{', '.join(_yaml_quoted(c) for c in item.categories)}]")
    rows.append("---\n")
    return "\n".join(rows)


def _yaml_quoted(text: str) -> str:
    """A YAML double-quoted scalar that keeps CJK text readable.

    JSON strings are YAML; on top of JSON's escapes, every non-printable
    character is escaped too, because YAML reads some (U+0085, U+2028) as line
    breaks and refuses others.
    """
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(
        c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
        for c in quoted
    )


def escape_title(title: str) -> str:
    """Raw title text such that ``html.unescape`` gives ``title`` back."""

    def amp(m: re.Match[str]) -> str:
        ref = m.group(0)
        return ref if html.unescape(ref) == ref else "&amp;" + ref[1:]

    escaped = _CHARREF.sub(amp, title)
    return escaped.replace('"', "&quot;").replace("\r", "&#13;").replace("\n", "&#10;")


def archive_filename(item: Item) -> str:
    """``{published_ms:013d}-{hash of key}.md``: sorts by time, one name per version.

    An item dated before 1970 (a negative stamp) is named ``0-{10**19 + published_ms}``
    in 19 digits: ``0-`` sorts before every other name (``-`` before the digits) and
    never starts a name with ``-`` (which commands would read as an option), and the
    offset keeps older items first; 19 digits hold any 64-bit stamp.
    """
    digest = hashlib.sha1(item.key.encode("utf-8")).hexdigest()[:10]
    ms = item.published_ms
    if ms < 0:
        return f"0-{10**19 + ms:019d}-{digest}.md"
    return f"{ms:013d}-{digest}.md"


class _Lines:
    """A cursor over the header lines that knows its line number for errors."""

    def __init__(self, text: str, newline: str, source: str) -> None:
        self.text, self.newline, self.source = text, newline, source
        self.pos = 0
        self.lineno = 0  # number of the line last taken

    def peek(self) -> str | None:
        if self.pos >= len(self.text):
            return None
        end = self.text.find(self.newline, self.pos)
        return self.text[self.pos :] if end < 0 else self.text[self.pos : end]

    def take(self, expected: str) -> str:
        line = self.peek()
        self.lineno += 1
        if line is None:
            self.fail(f"expected {expected}, found the end of the file")
        end = self.text.find(self.newline, self.pos)
        self.pos = len(self.text) if end < 0 else end + len(self.newline)
        return line

    def fail(self, message: str) -> NoReturn:
        raise ArchiveError(message, self.source, max(self.lineno, 1))


def _read_front_matter(lines: _Lines, source: str) -> str:
    lines.take("---")
    opened_at = lines.lineno
    while True:
        line = lines.peek()
        if line is None:
            raise ArchiveError(
                "front matter opened with --- is never closed by a --- line", source, opened_at
            )
        lines.take("---")
        if line == "---":
            break
    while lines.peek() == "":
        lines.take("a blank line")
    block = lines.text[: lines.pos]
    try:
        data = load_yaml(_front_matter_yaml(block, lines.newline), source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line_no = opened_at + 1 + mark.line if mark is not None else opened_at
        raise ArchiveError(
            f"front matter is not valid YAML: {getattr(e, 'problem', e)}", source, line_no
        ) from e
    if data is not None and not isinstance(data, dict):
        raise ArchiveError(
            "front matter must be a YAML mapping (key: value lines)", source, opened_at
        )
    return block


def _front_matter_yaml(block: str, newline: str) -> str:
    """The YAML between the opening and the closing ``---`` line."""
    rows = block.split(newline)
    close = rows.index("---", 1)
    return newline.join(rows[1:close])


def _front_matter_fields(front_matter: str | None, newline: str) -> tuple[str, tuple[str, ...]]:
    if not front_matter:
        return "", ()
    try:
        data = load_yaml(_front_matter_yaml(front_matter, newline)) or {}
    except yaml.YAMLError as e:
        raise ArchiveError(f"front matter is not valid YAML: {e}", "<entry>") from e
    if not isinstance(data, dict):
        raise ArchiveError("front matter must be a YAML mapping", "<entry>")
    author = data.get("author")
    categories = [str(v) for v in _as_list(data.get("categories"))]
    # Jekyll posts repeat their categories as tags; only new tags add anything.
    categories += [str(v) for v in _as_list(data.get("tags")) if str(v) not in categories]
    return (str(author) if author else ""), tuple(categories)


def _as_list(value: object) -> list[object]:
    if isinstance(value, list):
        return [v for v in value if v is not None]
    return [] if value is None or value == "" else [value]


def _link_safe_url(url: str) -> str:
    url = _URL_UNSAFE.sub(lambda m: f"%{ord(m.group(0)):02X}", url)
    return url.replace("](", "%5D(")


def _show(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")
