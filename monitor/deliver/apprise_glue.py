"""Everything that changes Apprise's process-wide state, done by one explicit ``install()``.

- the ``console://`` URL, which prints alerts to standard output, so a first run shows
  alerts without any account and every channel, this one included, goes through Apprise;
- the Message-ID of Apprise's email plugin, derived from the alert instead of random;
- the SMTP connection of that plugin (``smtp.KeptSMTPController``): one TLS context per
  process, and connections kept open between the messages of a delivery run;
- one handler on Apprise's logger that files each warning under the send that logged it;
- one response hook on every ``requests`` session, which notes the ``Retry-After`` of a
  429 or 503 answer under the send that got it (Apprise's plugins log the status but
  not the header, and return only True or False).

Importing this module changes nothing; ``install()`` is idempotent.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import make_msgid
from typing import Any

import apprise.plugins.email.base as apprise_email
import requests.hooks
import requests.sessions
from apprise.decorators import notify

from monitor.deliver.smtp import KeptSMTPController

# Answers whose Retry-After a send keeps (rate limited; unavailable for a while).
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass
class Sending:
    """What one send (or one check of a URL) heard: Apprise's warnings, the receiver's
    Retry-After values; and the Message-ID its email plugin is to use."""

    message_id: str | None = None
    lines: list[str] = field(default_factory=list)
    retry_after: list[str] = field(default_factory=list)


# Several messages go out at once: each send's record lives in a context variable, which
# Apprise copies into the worker threads it sends from.
_sending: ContextVar[Sending | None] = ContextVar("_sending", default=None)
_apprise_log = logging.getLogger("apprise")
_install_lock = threading.Lock()
_installed = False
_console_lock = threading.Lock()


def _print_to_console(
    body: str, title: str, notify_type: str, *args: object, **kwargs: object
) -> bool:
    with _console_lock:
        sys.stdout.write(f"{title}\n{body}\n\n")
        sys.stdout.flush()
    return True


def _alert_msgid(idstring: str | None = None, domain: str | None = None) -> str:
    """Apprise's email plugin asks for a random Message-ID; ours is derived from the
    alert, so a resend after a crash carries the same id and mail clients can tell."""
    sending = _sending.get()
    return (sending and sending.message_id) or make_msgid(idstring, domain)


class _SendCapture(logging.Handler):
    """Apprise's warnings, kept per send: what a failed send says about itself.

    apprise.LogCapture adds a handler to the shared logger for the length of a call, so
    two sends at once would each read the other's lines; this one handler, installed
    once, files each line under the send whose context logged it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        sending = _sending.get()
        if sending is not None:
            sending.lines.append(self.format(record))


def _note_retry_after(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A ``requests`` response hook: the Retry-After of a 429 or 503, for the send whose
    context made the request (nothing outside a send)."""
    sending = _sending.get()
    if sending is not None and response.status_code in RETRY_AFTER_STATUSES:
        value = response.headers.get("Retry-After")
        if value:
            sending.retry_after.append(value.strip())


_requests_default_hooks = requests.hooks.default_hooks


def _default_hooks() -> dict[str, list[Any]]:
    hooks = _requests_default_hooks()
    hooks["response"].append(_note_retry_after)
    return hooks


def install() -> None:
    """Register console://, set the email Message-ID and SMTP connection, capture send
    errors; once per process, whoever calls it first."""
    global _installed
    with _install_lock:
        if _installed:
            return
        notify(on="console", name="Console (standard output)")(_print_to_console)
        apprise_email.make_msgid = _alert_msgid
        apprise_email.AppriseSMTPController = KeptSMTPController  # type: ignore[misc]
        _apprise_log.addHandler(_SendCapture())
        # Apprise's plugins call requests.request(), which makes a Session per call.
        requests.sessions.default_hooks = _default_hooks
        _installed = True


@contextmanager
def captured(message_id: str | None = None) -> Iterator[Sending]:
    """What the send inside the block heard: Apprise's warnings and any Retry-After
    (``message_id``: the Message-ID its email plugin is to use)."""
    if _apprise_log.getEffectiveLevel() > logging.WARNING:
        _apprise_log.setLevel(logging.WARNING)
    sending = Sending(message_id)
    token = _sending.set(sending)
    try:
        yield sending
    finally:
        _sending.reset(token)
