"""What reaches people: item text made safe and small enough for each channel (pure).

An item's fields come from whoever writes the feed. Before a template sees them they
lose control characters (NUL, ESC, BEL, ...) and bidi overrides, and are shortened;
on a ``markdown`` channel they are escaped as ``html`` escapes them, so an item cannot
add markup. After rendering, only ``http`` and ``https`` URLs stay links (a
``javascript:`` link becomes its text), the title is shortened to what a subject may
be, and an email's lines to what SMTP carries (RFC 5321: 998 octets).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from urllib.parse import urlsplit

TITLE_MAX = 200  # characters of a rendered title (a mail subject, a chat headline)
EMAIL_LINE_MAX = 998  # octets of one line of a mail (RFC 5321 4.5.3.1.6)
# The Subject line of a mail is not folded by Apprise: "Subject: =?utf-8?q?...?="
# must fit in one line, with a margin for the encoder's word boundaries.
_SUBJECT_BUDGET = EMAIL_LINE_MAX - len("Subject: =?utf-8?q??=") - 10

# Limits of the item fields a template sees (characters).
FIELD_MAX = {
    "title": 300,
    "author": 200,
    "category": 100,
    "url": 2048,
    "feed": 200,
    "keyword": 200,
    "snippet": 400,
}
CATEGORIES_MAX = 20

# C0 and C1 controls (tab and newline are handled apart), DEL, and the bidi embeddings,
# overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder displayed text.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")

_EMAIL_SCHEMES = ("mailto", "mailtos")


def strip_controls(text: str) -> str:
    """``text`` without control characters and bidi overrides; line breaks kept (as \\n)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROLS.sub("", text)


def one_line(text: str) -> str:
    """A single-line field: controls removed, every run of white space one space."""
    return _SPACES.sub(" ", _CONTROLS.sub("", text)).strip()


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def field(text: str | None, kind: str) -> str:
    """An item field as templates see it: one line, no controls, shortened."""
    return shorten(one_line(text or ""), FIELD_MAX[kind])


def fields(values: Iterable[str], kind: str, limit: int | None = None) -> list[str]:
    out = [v for v in (field(x, kind) for x in values) if v]
    return out if limit is None else out[:limit]


def is_web_url(url: str) -> bool:
    """Whether ``url`` is an absolute http or https URL: the only kind made a link.

    White space and controls are dropped first, as browsers drop them."""
    cleaned = _SPACES.sub("", _CONTROLS.sub("", url))
    try:
        scheme = urlsplit(cleaned).scheme.lower()
    except ValueError:
        return False
    return scheme in ("http", "https") and cleaned[len(scheme) :].startswith("://")


def is_email_channel(urls: Iterable[str]) -> bool:
    """Whether any URL of a channel sends mail (its subject and lines have limits)."""
    return any(u.split(":", 1)[0].strip().lower() in _EMAIL_SCHEMES for u in urls)


# -- markdown ------------------------------------------------------------------------


class WebUrl(str):
    """A URL in a template context: on a markdown channel it is percent-encoded where
    markdown would read it (parentheses, brackets, spaces), not backslash-escaped."""

    __slots__ = ()


# Escapes CommonMark and Python-Markdown (Apprise's converter for mail) both read.
_MD_INLINE = re.compile(r"[\\`*_{}\[\]()]")
_MD_LINE_START = re.compile(r"^(\s*)([#+~-]|\d+(?=\.))", re.M)
_URL_UNSAFE = {c: f"%{ord(c):02X}" for c in ' ()<>[]\\"`*{}|^'}


def escape_markdown(value: object) -> object:
    """A value as a markdown template writes it: text escaped, URLs encoded, the rest
    (numbers, dates) as is. Used as the markdown environment's ``finalize``."""
    if isinstance(value, WebUrl):
        return "".join(_URL_UNSAFE.get(c, c) for c in value)
    if not isinstance(value, str):
        return value
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_INLINE.sub(lambda m: "\\" + m[0], text)
    # Block markup counts only at a line's start: a heading, a quote, a list item.
    return _MD_LINE_START.sub(
        lambda m: m[1] + "\\" + m[2] if not m[2][0].isdigit() else m[1] + m[2] + "\\", text
    )


_MD_LINK = re.compile(
    r"(?P<bang>!?)\[(?P<text>(?:\\.|[^\\\[\]])*)\]\(\s*"
    r"(?P<dest><(?:\\.|[^\\<>\n])*>|(?:\\.|[^\\\s()]|\((?:\\.|[^\\\s()])*\))*)"
    r"(?:\s+(?:\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|\((?:\\.|[^()\\])*\)))?\s*\)"
)
_MD_AUTOLINK = re.compile(r"<(?P<dest>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*)>")
_MD_REFERENCE = re.compile(r"^ {0,3}\[(?:\\.|[^\\\[\]])+\]:[ \t]*(?P<dest>\S+).*$\n?", re.M)
_MD_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _md_dest(dest: str) -> str:
    if dest.startswith("<") and dest.endswith(">"):
        dest = dest[1:-1]
    return html.unescape(_MD_UNESCAPE.sub(r"\1", dest))


def unlink_markdown(body: str) -> str:
    """Markdown links, images, autolinks and link definitions to anything but http(s)
    become plain text."""

    def link(m: re.Match[str]) -> str:
        return m[0] if is_web_url(_md_dest(m["dest"])) else m["text"]

    def autolink(m: re.Match[str]) -> str:
        return m[0] if is_web_url(m["dest"]) else f"&lt;{m['dest']}&gt;"

    def reference(m: re.Match[str]) -> str:
        return m[0] if is_web_url(_md_dest(m["dest"])) else ""

    body = _MD_LINK.sub(link, body)
    body = _MD_AUTOLINK.sub(autolink, body)
    return _MD_REFERENCE.sub(reference, body)


# -- html ----------------------------------------------------------------------------

_URL_ATTRS = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "background",
        "poster",
        "cite",
        "srcset",
        "xlink:href",
        "data",
        "longdesc",
        "usemap",
    }
)


class _LinkGuard(HTMLParser):
    """Copies HTML, unwrapping ``<a>`` whose href is not http(s) and dropping other URL
    attributes that are not; everything else passes as written."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self._anchors: list[bool] = []  # per open <a>: whether it was dropped

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> None:
        bad = {
            n
            for n, v in attrs
            if n in _URL_ATTRS
            and v is not None
            and not all(is_web_url(u.split()[0]) for u in v.split(",") if u.strip())
        }
        if tag == "a" and not closed:
            self._anchors.append("href" in bad)
        if not bad:
            self.out.append(self.get_starttag_text() or "")
        elif tag == "a" and "href" in bad:
            return  # the link's text stays, as text
        else:
            kept = "".join(
                f' {n}="{html.escape(v, quote=True)}"' if v is not None else f" {n}"
                for n, v in attrs
                if n not in bad
            )
            self.out.append(f"<{tag}{kept}{' /' if closed else ''}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, closed=True)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchors and self._anchors.pop():
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.out.append(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


def unlink_html(body: str) -> str:
    """HTML in which only http(s) URLs are links (and image or other sources)."""
    guard = _LinkGuard()
    guard.feed(body)
    guard.close()
    return "".join(guard.out)


# -- the rendered message ------------------------------------------------------------


def _qp_cost(c: str) -> int:
    """Characters ``c`` takes in an encoded header word: the larger of Q and B."""
    if c.isascii() and (c.isalnum() or c in " -!*+/"):
        return 1
    return 3 * len(c.encode("utf-8"))


def clean_title(title: str, *, email: bool = False) -> str:
    """A rendered title: one line, no controls, at most TITLE_MAX characters; for mail,
    short enough that its encoded Subject line fits in 998 octets."""
    title = shorten(one_line(title), TITLE_MAX)
    if not email:
        return title
    cost, cut = 0, len(title)
    for i, c in enumerate(title):
        cost += _qp_cost(c)
        if cost > _SUBJECT_BUDGET - 3:  # room for the ellipsis
            cut = i
            break
    return title if cut == len(title) else title[:cut].rstrip() + "…"


def wrap_lines(body: str, limit: int = EMAIL_LINE_MAX) -> str:
    """Lines of at most ``limit`` UTF-8 octets: a longer one is broken at its last
    space (or ``>``) before the limit, or at the limit."""
    out: list[str] = []
    for line in body.split("\n"):
        while len(line.encode("utf-8")) > limit:
            cut = len(line.encode("utf-8")[:limit].decode("utf-8", "ignore"))
            space = max(line.rfind(" ", 0, cut), line.rfind(">", 0, cut) + 1)
            if space > cut // 2:
                cut = space
            out.append(line[:cut].rstrip(" "))
            line = line[cut:].lstrip(" ")
        out.append(line)
    return "\n".join(out)


def clean_body(body: str, fmt: str, *, email: bool = False) -> str:
    """A rendered body: no controls, only http(s) links, mail lines within RFC 5321."""
    body = strip_controls(body)
    if fmt == "html":
        body = unlink_html(body)
    elif fmt == "markdown":
        body = unlink_markdown(body)
    return wrap_lines(body) if email else body
