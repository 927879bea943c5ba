"""Keeping secrets out of logs, errors, status output and the database.

One policy for every output. What is secret:

- every ``${ENV}`` value of the config file;
- the password of any URL (``user:password@``), the database URL's included;
- the value of every query parameter whose name says credential (``token``, ``key``,
  ``auth``, ``access_code``, ``sig``, ``password``, ... see ``_SECRET_PARAM``);
- URL path segments that look like a token (``/feeds/3f9a...c21/rss``: 16 or more
  characters mixing letters and digits, see ``looks_like_token``);
- what Apprise itself hides in a channel URL (its private form minus its shown one).

``masker_for(loaded)`` builds the masker of a loaded config; every command, the daemon,
the log handler and the status output use it, so nothing is masked one way here and
another way there. Besides the values it knows, the masker hides the password of any
URL and the value of any credential-like query parameter in the text it masks (a
redirect may name a token the config never did).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import apprise

if TYPE_CHECKING:  # the config imports this module
    from monitor.config import LoadedConfig

_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I
)


# Query parameters whose values are credentials, whatever the plugin: Apprise masks
# the ones it knows, but shows custom headers (``+Authorization=``) and GET
# parameters (``-apikey=``) of json://, form:// and xml:// as they are.
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|key|sig|cookie|session|credential|"
    r"auth(?!ors?(?:[^a-z]|$))|access|hmac|jwt|otp",
    re.I,
)
# The same parameters in any text: ``?token=abc`` -> ``?token=****``.
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;][^=&#\s\"'<>]*(?:" + _SECRET_PARAM.pattern + r")[^=&#\s\"'<>]*=)"
    r"(?P<value>[^&#\s\"'<>]+)",
    re.I,
)
# A path segment that is a token: 16+ characters, one piece of it (between - _ .)
# mixing letters and digits, or 32+ hex digits. Article slugs ("2023-03-22-ukraine")
# have pieces of letters or of digits, not both.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_~.=+-]{16,}")
_PIECE = re.compile(r"[A-Za-z0-9]+")
_HEX = re.compile(r"[0-9a-fA-F-]{32,}")
_FEED_SUFFIX = re.compile(r"\.(?:xml|rss|atom|json|rdf)$", re.I)


def looks_like_token(segment: str) -> bool:
    """Whether a URL path segment looks like a credential rather than a name."""
    segment = _FEED_SUFFIX.sub("", unquote(segment))
    if not _TOKEN_CHARS.fullmatch(segment):
        return False
    if _HEX.fullmatch(segment):
        return True
    return any(len(p) >= 8 and not p.isalpha() and not p.isdigit() for p in _PIECE.findall(segment))


def _path_secrets(url: str) -> Iterator[str]:
    """The token-like segments of a URL's path (``/feeds/<token>/rss``)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return
    for segment in path.split("/"):
        if segment and looks_like_token(segment):
            yield segment


def mask_url(url: str) -> str:
    """An Apprise URL as it may be shown: passwords and tokens replaced."""
    masker = Masker()
    masker.add_url(url)
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # a URL apprise cannot read is shown with its userinfo masked
        plugin = None
    if plugin:
        return masker(str(plugin.url(privacy=True)))
    return masker(url)


def _forms(secret: str) -> Iterator[str]:
    """A secret as it may be written: raw, percent-decoded and percent-encoded."""
    yield secret
    plain = unquote(secret)
    yield plain
    yield quote(plain, safe="")


def _query_secrets(url: str) -> Iterator[str]:
    """Values of credential-like query parameters, and the token of ``Bearer <token>``."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if not sep or not value or not _SECRET_PARAM.search(unquote(name)):
            continue
        yield value
        words = unquote(value.replace("+", " ")).split()
        if len(words) == 2:  # "Bearer abc", "Basic abc": the scheme word is no secret
            yield words[1]


class Masker:
    """Replaces known secret values (from ``${ENV}`` and channel URLs) in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for s in secrets:
            if s and len(s) >= 3:
                self._secrets.add(s)
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    def add_userinfo(self, url: str) -> None:
        """Remember the secret parts of any URL (feeds too): its password, its
        credential-like query values and its token-like path segments."""
        m = _USERINFO.search(url)
        if m:
            self.add(_forms(m["pw"]))
        for value in _query_secrets(url):
            self.add(_forms(value))
        for segment in _path_secrets(url):
            self.add(_forms(segment))

    def add_url(self, url: str) -> None:
        """Remember the secret parts of an Apprise URL (password, path tokens, query keys)."""
        self.add_userinfo(url)
        try:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        except Exception:
            plugin = None
        if plugin is None:
            return
        shown = str(plugin.url(privacy=True))
        full = str(plugin.url(privacy=False))
        # Whatever the private form has that the masked one hides is secret.
        for part in re.split(r"[/:@?&=]+", full):
            if part and part not in shown and len(part) >= 4:
                self.add(_forms(part))

    def add_config(
        self,
        secrets: Iterable[str],
        feed_urls: Iterable[str],
        channel_urls: Iterable[str],
        database: str | None = None,
    ) -> None:
        """Remember everything a config makes secret (see the module docstring)."""
        self.add(secrets)
        for url in feed_urls:
            self.add_userinfo(url)
        for url in channel_urls:
            self.add_url(url)
        m = _USERINFO.search(database or "")
        if m:  # the database URL's password; its path is a file name, not a token
            self.add(_forms(m["pw"]))

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        for s in self._ordered:
            text = text.replace(s, "****")
        text = _SECRET_QUERY.sub(
            lambda m: f"{m['name']}****" if m["value"] != "****" else m[0], text
        )
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@", text)


def masker_for(loaded: LoadedConfig, into: Masker | None = None) -> Masker:
    """The masker of a loaded config: its ``${ENV}`` values and the secrets of its feed,
    channel and database URLs, added to ``into`` (the process's log masker) if given."""
    masker = into if into is not None else Masker()
    cfg = loaded.config
    masker.add_config(
        loaded.secrets,
        (f.url for f in cfg.feeds),
        (u for ch in cfg.channels.values() for u in ch.urls),
        cfg.database,
    )
    return masker


class MaskingFilter(logging.Filter):
    """Masks known secrets in every record before a handler formats it.

    The last line of defence: messages, their arguments and tracebacks (an exception's
    text may quote a URL with its token) all pass through the masker, so a log line
    that forgot to mask cannot leak a secret, in text or JSON format alike.
    """

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.masker(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker(record.exc_text)
        if record.stack_info:
            record.stack_info = self.masker(record.stack_info)
        return True
