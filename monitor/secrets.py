"""Keeping secrets out of logs, errors, status output and the database."""

from __future__ import annotations

import re
from collections.abc import Iterable

import apprise

from monitor import console  # noqa: F401  (registers console:// with Apprise)

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@",
                       re.I)


def mask_url(url: str) -> str:
    """An Apprise URL as it may be shown: passwords and tokens replaced by Apprise itself."""
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # a URL apprise cannot read is shown with its userinfo masked
        plugin = None
    if plugin:
        return str(plugin.url(privacy=True))
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@", url)


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

    def add_url(self, url: str) -> None:
        """Remember the secret parts of an Apprise URL (password, path tokens)."""
        m = _USERINFO.search(url)
        if m:
            self.add([m["pw"]])
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
                self.add([part])
                from urllib.parse import unquote
                self.add([unquote(part)])

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        for s in self._ordered:
            text = text.replace(s, "****")
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@", text)
