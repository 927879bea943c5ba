"""SMTP for Apprise's email plugin: one TLS context per verification setting for the
whole process, and one connection per mail server and login kept open while a delivery
run sends, instead of a new context and a new connection for every message.

Apprise's ``NotifyEmail.send`` opens its connection through ``AppriseSMTPController``
(connect, STARTTLS or SSL, login; ``sendmail``; quit). ``apprise_glue.install()`` puts
``KeptSMTPController`` in its place: the same steps and the same errors, but

- the ``ssl.SSLContext`` comes from ``tls_context()`` (``ssl.create_default_context()``
  reads the system's CA store, about a third of a send's CPU when done each time);
- inside ``keeping(kept)`` (a channel's notifier sending during a delivery run), the
  connection is taken from ``kept`` and handed back after the message: one per server,
  port, security mode and login, used by one message at a time; the run's end quits them;
- a kept connection found dropped (the server closed it, or answered 421) before the
  message's DATA is opened again and the message sent once more on it. After DATA the
  server may have the message: that send fails as any other would, and is retried later.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from apprise.exception import AppriseImproperlyConfigured
from apprise.logger import logger as apprise_logger
from apprise.plugins.email.smtp import (
    SMTP_EXCEPTIONS,
    SMTP_SECURE_MODES,
    AppriseSMTPController,
    SMTPSecureMode,
)

# Which server, port, security, certificate check and login a connection was made for.
ServerKey = tuple[str, int, str, bool, str | None, str | None]

_tls_lock = threading.Lock()
_tls_contexts: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}


def tls_context(verify: bool) -> ssl.SSLContext:
    """The client TLS context for SMTP, made once per process for each ``verify`` (and
    each SSL_CERT_FILE / SSL_CERT_DIR, which the default context reads)."""
    key = (verify, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _tls_lock:
        context = _tls_contexts.get(key)
        if context is None:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            _tls_contexts[key] = context
        return context


class _SMTP(smtplib.SMTP):
    """Notes whether the DATA command of the current message was sent: until then a
    dropped connection cannot have delivered it."""

    data_sent = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_sent = True
        return super().data(msg)


class _SMTPSSL(smtplib.SMTP_SSL, _SMTP):
    """``_SMTP`` over implicit TLS."""


@dataclass
class _Slot:
    """One server's turn: the lock that lets one message at a time use its connection."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    connection: _SMTP | None = None


class KeptConnections:
    """The SMTP connections one channel keeps open between its messages: one per server
    key, used by one message at a time (another message for that server waits for it).

    ``close()`` quits them all; a connection handed back after ``close()`` is kept again
    until the next one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[ServerKey, _Slot] = {}

    def take(self, key: ServerKey) -> _SMTP | None:
        """Wait for the server's turn; its open connection, or None (open one). The
        turn lasts until ``give_back``."""
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
        slot.lock.acquire()
        connection, slot.connection = slot.connection, None
        return connection

    def give_back(self, key: ServerKey, connection: _SMTP | None) -> None:
        """End the server's turn, keeping ``connection`` (None: nothing to keep)."""
        with self._lock:
            slot = self._slots[key]
        slot.connection = connection
        slot.lock.release()

    def close(self) -> int:
        """Quit every connection not in use; how many there were."""
        with self._lock:
            slots = list(self._slots.values())
        closed = 0
        for slot in slots:
            with slot.lock:
                connection, slot.connection = slot.connection, None
            if connection is not None:
                _quit(connection)
                closed += 1
        return closed


# The connections the send running in this context keeps (None: a connection per
# message, quit after it). Apprise copies the context into the threads it sends from.
_keeping: ContextVar[KeptConnections | None] = ContextVar("_keeping", default=None)


@contextmanager
def keeping(kept: KeptConnections | None) -> Iterator[None]:
    """Email sent inside the block uses (and leaves open) the connections of ``kept``."""
    token = _keeping.set(kept)
    try:
        yield
    finally:
        _keeping.reset(token)


def _quit(connection: smtplib.SMTP) -> None:
    with contextlib.suppress(*SMTP_EXCEPTIONS):
        connection.quit()
    connection.close()


def _dropped(e: BaseException) -> bool:
    """Whether ``e`` says the server is gone (closed, reset, or 421 "closing")."""
    if isinstance(e, smtplib.SMTPServerDisconnected | ConnectionError):
        return True
    return isinstance(e, smtplib.SMTPResponseException) and e.smtp_code == 421


class KeptSMTPController(AppriseSMTPController):
    """``AppriseSMTPController`` with a shared TLS context and, inside ``keeping()``, a
    kept connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept = _keeping.get()
        self._key: ServerKey = (
            str(self.host),
            int(self.port),
            str(self.secure_mode),
            bool(self.verify_certificate),
            self.user,
            self.password,
        )
        self._connection: _SMTP | None = None
        self._reused = False

    def __enter__(self) -> KeptSMTPController:
        if self.secure_mode not in SMTP_SECURE_MODES:
            raise AppriseImproperlyConfigured(f"Invalid SMTP secure mode: {self.secure_mode!r}")
        if self._kept is not None:
            self._connection = self._kept.take(self._key)
            self._reused = self._connection is not None
        try:
            if self._connection is None:
                self._connection = self._open()
        except BaseException:
            self._hand_back(None)
            raise
        return self

    def _open(self) -> _SMTP:
        """Connect, secure and log in as Apprise's controller does."""
        context = tls_context(bool(self.verify_certificate))
        timeout = self.socket_connect_timeout
        apprise_logger.debug("Connecting to remote SMTP server...")
        connection: _SMTP
        if self.secure_mode == SMTPSecureMode.SSL:
            connection = _SMTPSSL(self.host, self.port, None, timeout=timeout, context=context)
        else:
            connection = _SMTP(self.host, self.port, None, timeout=timeout)
        try:
            if self.secure_mode == SMTPSecureMode.STARTTLS:
                connection.starttls(context=context)
            if self.user and self.password:
                connection.login(self.user, self.password)
        except SMTP_EXCEPTIONS:
            _quit(connection)
            raise
        return connection

    def sendmail(self, from_addr: str, to_addrs: list[str], message: str) -> bool:
        """Send one message, as Apprise's controller does; on a kept connection found
        dropped before DATA, open a new one and send once more on it (a failure to
        reopen leaves the block as a failed connect does)."""
        while True:
            connection = self._connection
            assert connection is not None
            connection.data_sent = False
            try:
                refused = connection.sendmail(from_addr, to_addrs, message)
            except SMTP_EXCEPTIONS as e:
                if not (self._reused and _dropped(e) and not connection.data_sent):
                    apprise_logger.debug("Socket Exception: %s", str(e))
                    return False
                apprise_logger.debug("The kept SMTP connection was dropped; connecting again")
                self._connection = None
                self._reused = False
                _quit(connection)
                self._connection = self._open()
                continue
            break
        if refused:
            for addr, (code, resp) in refused.items():
                apprise_logger.warning("SMTP recipient %s was refused: %s %s", addr, code, resp)
            return False
        return True

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            self._hand_back(None)
            return
        keep = self._kept is not None and exc_type is None and connection.sock is not None
        if not keep:
            _quit(connection)
        self._hand_back(connection if keep else None)

    def _hand_back(self, connection: _SMTP | None) -> None:
        if self._kept is not None:
            self._kept.give_back(self._key, connection)
