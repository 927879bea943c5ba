"""An SMTP server on 127.0.0.1 that keeps each mail's subject and the time it arrived."""

from __future__ import annotations

import email
import email.policy
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


@dataclass(frozen=True)
class Mail:
    subject: str
    received_at: float  # time.time()


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        message = email.message_from_bytes(data, policy=email.policy.default)
        with self.sink.lock:
            self.sink.mails.append(Mail(str(message["Subject"]), time.time()))
        return "250 OK"


class _Controller(Controller):
    """Binds port 0 and reads back the port chosen, before aiosmtpd's readiness check
    (which connects to ``self.port``) runs."""

    def _create_server(self) -> Any:
        async def bind() -> Any:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


def _no_login_data_warning(record: logging.LogRecord) -> bool:
    # aiosmtpd 1.4 warns "Session.login_data is deprecated" on every successful AUTH,
    # from its own code: once per mail on the benchmark's output.
    return "login_data is deprecated" not in record.getMessage()


def _accept(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=True)


class SmtpSink:
    """Accepts every mail (and any login) in aiosmtpd's background thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[Mail] = []
        self._controller = _Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=0,
            ready_timeout=5.0,
            authenticator=_accept,
            auth_require_tls=False,
            server_hostname="bench",
        )

    def apprise_url(self) -> str:
        """An Apprise URL that delivers here: plain SMTP with a login."""
        return (
            f"mailto://user:pass@127.0.0.1:{self._controller.port}"
            "?from=monitor@example.org&to=alerts@example.org"
        )

    def clear(self) -> None:
        with self.lock:
            self.mails.clear()

    def __enter__(self) -> SmtpSink:
        log = logging.getLogger("mail.log")
        if _no_login_data_warning not in log.filters:
            log.addFilter(_no_login_data_warning)
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
