"""Everything that changes Apprise's process-wide state, done by one explicit ``install()``.

- the ``console://`` URL, which prints alerts to standard output, so a first run shows
  alerts without any account and every channel, this one included, goes through Apprise;
- the Message-ID of Apprise's email plugin, derived from the alert instead of random;
- one handler on Apprise's logger that files each warning under the send that logged it.

Importing this module changes nothing; ``install()`` is idempotent.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from email.utils import make_msgid

import apprise.plugins.email.base as apprise_email
from apprise.decorators import notify

# Several messages go out at once: each send's Message-ID and its log lines live in a
# context variable, which Apprise copies into the worker threads it sends from.
_sending: ContextVar[tuple[list[str], str | None] | None] = ContextVar("_sending",
                                                                       default=None)
_apprise_log = logging.getLogger("apprise")
_install_lock = threading.Lock()
_installed = False
_console_lock = threading.Lock()


def _print_to_console(body: str, title: str, notify_type: str, *args: object,
                      **kwargs: object) -> bool:
    with _console_lock:
        sys.stdout.write(f"{title}\n{body}\n\n")
        sys.stdout.flush()
    return True


def _alert_msgid(idstring: str | None = None, domain: str | None = None) -> str:
    """Apprise's email plugin asks for a random Message-ID; ours is derived from the
    alert, so a resend after a crash carries the same id and mail clients can tell."""
    sending = _sending.get()
    return (sending and sending[1]) or make_msgid(idstring, domain)


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
            sending[0].append(self.format(record))


def install() -> None:
    """Register console://, set the email Message-ID and capture send errors; once per
    process, whoever calls it first."""
    global _installed
    with _install_lock:
        if _installed:
            return
        notify(on="console", name="Console (standard output)")(_print_to_console)
        apprise_email.make_msgid = _alert_msgid
        _apprise_log.addHandler(_SendCapture())
        _installed = True


@contextmanager
def captured(message_id: str | None = None) -> Iterator[list[str]]:
    """Apprise's warnings logged for the send inside the block (and the Message-ID its
    email plugin is to use)."""
    if _apprise_log.getEffectiveLevel() > logging.WARNING:
        _apprise_log.setLevel(logging.WARNING)
    lines: list[str] = []
    token = _sending.set((lines, message_id))
    try:
        yield lines
    finally:
        _sending.reset(token)
