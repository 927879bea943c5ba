"""How a failed fetch reads in a FeedError message: URLs without credentials, and the
innermost cause without the noise of urllib3's wrappers."""

from __future__ import annotations

from urllib.parse import urlsplit


def shown_url(url: str) -> str:
    """A URL for a message: without user:password, and not endless."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:200]
    if parts.username is not None or parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        url = parts._replace(netloc=host).geturl()
    return url[:200]


def cause(e: BaseException) -> str:
    """The innermost readable cause of ``e``."""
    inner: BaseException | None = e
    while inner is not None:
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
            continue
        if inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
            continue
        break
    text = str(inner or e)
    if "Failed to establish a new connection:" in text:
        text = text.split("Failed to establish a new connection:", 1)[1].strip()
        text = text.split("] ", 1)[-1] if text.startswith("[Errno") else text
    if (
        "Failed to resolve" in text
        or "Name or service not known" in text
        or "NameResolutionError" in text
        or "Temporary failure in name resolution" in text
    ):
        return "cannot resolve host name"
    return text[:300]
