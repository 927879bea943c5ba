"""Relative links made absolute as feedparser makes them: against xml:base in the readers,
then against the document's base here, which is the feed's URL after redirects joined with
the response's Content-Location. Pure; a malformed URL is a ValueError the caller turns
into a warning, never an exception out of the parser."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from monitor.parse.decode import header

_SCHEMES = ("http", "https")


def join_url(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (either may be empty or relative).

    Raises ValueError when either is malformed (``http://example.c[o.test/``).
    """
    if not base or not ref:
        return ref or base
    return urljoin(base, ref)


def document_base(base_url: str, headers: Mapping[str, str]) -> str:
    """The base of a feed document: ``base_url`` (the URL it was fetched from, after
    redirects) joined with the Content-Location header, as feedparser resolves them.

    A Content-Location that is malformed or does not resolve to an http(s) URL is
    ignored, like feedparser's ``make_safe_absolute_uri``; so is a base URL of any other
    scheme (a local file, say).
    """
    location = header(headers, "content-location").strip()
    for candidate in (_joined(base_url, location), base_url.strip()):
        if candidate and _is_http(candidate):
            return candidate
    return ""


def _joined(base: str, location: str) -> str:
    if not location:
        return ""
    try:
        return join_url(base.strip(), location)
    except ValueError:
        return ""


def _is_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in _SCHEMES and bool(parts.netloc)
