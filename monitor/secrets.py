"""Keeping secrets out of logs, errors, status output and the database."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

import apprise

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@",
                       re.I)


# Query parameters whose values are credentials, whatever the plugin: Apprise masks
# the ones it knows, but shows custom headers (``+Authorization=``) and GET
# parameters (``-apikey=``) of json://, form:// and xml:// as they are.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|sig|cookie|session|credential|"
                           r"authorization", re.I)


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
        """Remember the password and credential-like query values of any URL (feeds too)."""
        m = _USERINFO.search(url)
        if m:
            self.add(_forms(m["pw"]))
        for value in _query_secrets(url):
            self.add(_forms(value))

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

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        for s in self._ordered:
            text = text.replace(s, "****")
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@", text)


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
