"""Item identity and text: canonical URLs, dedupe keys, plain titles, title keys across
editions. Pure functions."""

from __future__ import annotations

import functools
import html
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

from monitor.match.normalize import normalize_text

# Query parameters that only track the reader; they never change the article.
TRACKING_PARAMS = re.compile(r"^(utm_.*|xtor|at_.*|fbclid|gclid|mc_cid|mc_eid|_ga)$", re.I)
_SLASHES = re.compile(r"/{2,}")
_NOT_ALNUM = re.compile(r"[\W_]+")  # Unicode-aware: what is not a letter or digit
# Shorter folded titles ("快讯", "Live") are too generic to call two articles one story.
_TITLE_KEY_MIN = 4
# Long enough to tell headlines apart, short enough for any B-tree index entry.
_TITLE_KEY_MAX = 200

# A URL that ``canonical_url`` returns as it is, but for the scheme (http becomes
# https) and the fragment (dropped): a lower-case host name without port or user,
# a path of characters that no step escapes or unescapes plus upper-case %XX escapes
# of non-ASCII bytes and %25 (which unescaping and escaping again give back), no
# empty or dot segment, and a query of sorted name=value pairs of unreserved
# characters. Most article links are like this (all of RFI's): checking one costs
# a regex match (~5 us), canonicalising it with w3lib ~40 us. tests/test_items.py
# compares the two on generated URLs.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_UNRESERVED = r"[A-Za-z0-9\-._~]"
_ALREADY_CANONICAL = re.compile(  # possessive: runs of plain characters in one step
    rf"https?(://(?:{_LABEL}\.)*{_LABEL}"
    r"(/(?:[A-Za-z0-9\-._~!$&'()*+,=:@/]++|%[89A-F][0-9A-F]|%25)*+))"
    rf"(?:\?({_UNRESERVED}++={_UNRESERVED}*+(?:&{_UNRESERVED}++={_UNRESERVED}*+)*+))?"
)


def _fast_canonical(url: str) -> str | None:
    """``canonical_url(url)`` for a stripped URL of the shape above; None otherwise."""
    if "#" in url:
        url = url.partition("#")[0]
    m = _ALREADY_CANONICAL.fullmatch(url)
    if m is None:
        return None
    rest, path, query = m.group(1, 2, 3)
    if "//" in path or "/." in path:  # an empty or a dot segment
        return None
    if query is not None:
        pairs = [tuple(p.split("=", 1)) for p in query.split("&")]
        if pairs != sorted(pairs) or any(TRACKING_PARAMS.match(k) for k, _ in pairs):
            return None  # canonical_url sorts them or drops some
    return url if url.startswith("https:") else "https" + rest + (f"?{query}" if query else "")


def canonical_url(url: str) -> str:
    """The identity of an article's URL.

    http and https are folded (to https), the host is lower-cased, runs of ``/``
    in the path collapse to one, the fragment and tracking parameters go, and
    the path and query take one percent-encoding form, so ``%E4%B8%AD`` and
    ``中`` give the same key. Query parameters are sorted.
    """
    url = url.strip()
    fast = _fast_canonical(url)
    return fast if fast is not None else _slow_canonical(url)


def _canonical(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https", ""):
        scheme = "https"
    netloc = parts.netloc.lower()
    if netloc.endswith(":80") or netloc.endswith(":443"):
        netloc = netloc.rsplit(":", 1)[0]
    path = _SLASHES.sub("/", parts.path) or "/"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not TRACKING_PARAMS.match(k)
        ]
    )
    rebuilt = urlunsplit((scheme, netloc, path, query, ""))
    return canonicalize_url(rebuilt, keep_fragments=False)


# The URLs the fast path does not take, remembered: a re-polled feed repeats most of
# its URLs, and a poll cycle of 5,000 feeds carries ~37,500 of them (a smaller cache
# would miss every one). An entry is the URL and its key, ~0.6 KB for 200-character
# URLs: ~40 MB when full, a few MB when most links take the fast path.
_slow_canonical = functools.lru_cache(maxsize=65536)(_canonical)


def link_key(link: str) -> str | None:
    """The canonical URL of an http(s) link; None for any other scheme.

    Raises ValueError for a link that is not a URL at all (``http://example.c[o.test/``);
    ``item_key`` then falls back to the entry id.
    """
    link = link.strip()
    fast = _fast_canonical(link)
    if fast is not None:
        return fast
    if urlsplit(link).scheme.lower() in ("http", "https"):
        return canonical_url(link)
    return None


def id_key(entry_id: str) -> str:
    """Dedupe key of an entry known by its id alone: the canonical URL when the id is an
    http(s) URL, else ``id:<entry id>``. Never raises."""
    ident = entry_id.strip()
    try:
        key = link_key(ident)
    except ValueError:  # looks like a URL but is none: an opaque id
        key = None
    return key if key is not None else f"id:{ident}"


def item_key(link: str | None, entry_id: str | None) -> str | None:
    """Dedupe key: the canonical link, else the entry id, else nothing. Never raises: a
    malformed link gives way to the entry id."""
    if link:
        try:
            key = link_key(link)
        except ValueError:
            key = None
        if key is not None:
            return key
    if entry_id and entry_id.strip():
        return id_key(entry_id)
    return None


_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
_SPACE = re.compile(r"\s+")


def plain_title(markup: str) -> str:
    """A title as plain text: tags dropped, entities decoded (also double-encoded ones
    such as ``&amp;quot;``, which mirrors produce), whitespace collapsed."""
    if "<" in markup:
        markup = _TAG.sub("", markup)
    for _ in range(3):  # bounded: each round removes one level of escaping
        if "&" not in markup:
            break
        unescaped = html.unescape(markup)
        if unescaped == markup:
            break
        markup = unescaped
    if "<" in markup:
        markup = _TAG.sub("", markup)
    return _SPACE.sub(" ", markup).strip()


def title_key(title: str) -> str | None:
    """The title as compared across editions, or None when it is too short to trust.

    ``fold_text`` of the plain title (NFKC, case folding, Traditional to Simplified),
    then only letters and digits: the /tw edition writes 「」 where /cn writes “”,
    and full-width punctuation is not part of the story.
    """
    key = _NOT_ALNUM.sub("", normalize_text(title, markup=False))[:_TITLE_KEY_MAX]
    return key if len(key) >= _TITLE_KEY_MIN else None
