"""SmtpSink: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it gets.

    with SmtpSink() as sink:
        url = sink.apprise_url(to="x@y.z")   # mailto://user:pass@127.0.0.1:PORT?from=...&to=...
        apprise_notify(url, ...)
        [mail] = sink.wait_for(1)
        assert mail.subject == "..." and "中俄" in mail.text

Apprise's ``mailto://`` (not ``mailtos://``) speaks plain SMTP with no STARTTLS; a
user and password in the URL make it log in (AUTH PLAIN) without TLS, which aiosmtpd
allows only with ``auth_require_tls=False``. Any credentials pass unless ``credentials``
names the accepted ones. ``stop()`` and ``start()`` keep the port, so a test can take
the mail server away and bring it back where the daemon expects it.

``SmtpSink(tls=context)`` offers STARTTLS with that server context (``mailtos://`` with
``mode=starttls``); ``connections`` counts the connections clients opened; ``drop_after(n)``
makes the server close each connection after its n-th message (as a server closing an
idle or busy connection does); ``drop_after(n, with_421=True)`` answers "421" to the
next MAIL first.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .net import wait_until


class _DropLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4 warns "Session.login_data is deprecated" on every successful AUTH,
    from its own code; unfiltered, that lands on stderr once per test mail."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_aiosmtpd_log = logging.getLogger("mail.log")
if not any(isinstance(f, _DropLoginDataWarning) for f in _aiosmtpd_log.filters):
    _aiosmtpd_log.addFilter(_DropLoginDataWarning())


@dataclass(frozen=True)
class ReceivedMail:
    """One message as delivered: the envelope plus the parsed message."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None  # the AUTH user, None when the client did not log in
    received_at: float  # time.time()

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        """The plain-text body (the HTML part when there is no plain one), decoded."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return "" if part is None else str(part.get_content())

    @property
    def html(self) -> str | None:
        part = self.message.get_body(preferencelist=("html",))
        return None if part is None else str(part.get_content())


class _Handler:
    """aiosmtpd handler: parses and stores each message; may refuse on request."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self.sink._take_refusal()
        if refusal is not None:
            return refusal
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None
        self.sink._add(
            ReceivedMail(
                message=message,
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                login=login,
                received_at=time.time(),
            )
        )
        server_state = self.sink._server_state(server)
        server_state["messages"] += 1
        drop = self.sink._drop_after
        if drop and server_state["messages"] % drop == 0:
            server_state["drop"] = True
        if server_state.get("drop") and not self.sink._drop_with_421:
            # The reply goes out first, then the connection closes under the client.
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_soon(transport.close)
        return "250 OK"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        server_state = self.sink._server_state(server)
        if server_state.get("drop"):  # only with drop_with_421: "closing", then closed
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_soon(transport.close)
            return "421 4.3.2 Closing connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


class _Controller(Controller):
    """Controller that can bind port 0 and report the port the system chose, and counts
    the connections it serves.

    aiosmtpd's own Controller connects to ``self.port`` to check the server is up, so
    with port 0 it would connect to port 0; here the real port is read back from the
    listening socket before that check runs (that check is not counted).
    """

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        server = super().factory()
        self.sink._connected(server)
        return server

    def _create_server(self) -> Any:
        async def bind() -> Any:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


class SmtpSink:
    """SMTP server collecting messages; see the module docstring."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        credentials: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._credentials = dict(credentials) if credentials is not None else None
        self._lock = threading.Lock()
        self._mails: list[ReceivedMail] = []
        self._auth_attempts: list[tuple[str, str | None, bool]] = []
        self._refusals: list[tuple[int, str]] = []  # [(remaining, reply)]
        self._controller: _Controller | None = None
        self._tls = tls
        self._connections = 0  # made since start() or clear()
        self._drop_after = 0
        self._drop_with_421 = False

    # lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen (on the previous run's port, if any) in aiosmtpd's background thread."""
        if self._controller is not None:
            raise RuntimeError(f"SmtpSink already running on port {self._port}")
        # aiosmtpd closes its event loop on stop(), so every start needs a new controller.
        controller = _Controller(
            self,
            _Handler(self),
            hostname=self.host,
            port=self._port,
            ready_timeout=5.0,
            authenticator=self._authenticate,
            auth_require_tls=False,
            server_hostname="feed-monitor-test",
            tls_context=self._tls,
        )
        controller.start()
        with self._lock:
            self._connections = 0  # aiosmtpd's readiness check connects once
        self._port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening; messages received so far stay, the port is kept for start()."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> Self:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("SmtpSink has no port before start()")
        return self._port

    def apprise_url(
        self,
        to: str = "alerts@example.org",
        *,
        user: str | None = "user",
        password: str | None = "pass",
        from_addr: str = "monitor@example.org",
        **params: str,
    ) -> str:
        """An Apprise URL that delivers here: plain SMTP, AUTH if a user is given."""
        auth = ""
        if user is not None:
            auth = quote(user, safe="")
            if password is not None:
                auth += ":" + quote(password, safe="")
            auth += "@"
        query = {"from": from_addr, "to": to, **params}
        qs = "&".join(f"{k}={quote(v, safe='@')}" for k, v in query.items())
        return f"mailto://{auth}{self.host}:{self.port}?{qs}"

    # programmed failures -------------------------------------------------------------

    def drop_after(self, n: int, *, with_421: bool = False) -> None:
        """Close every connection after its ``n``-th message (0: never); ``with_421``:
        answer the next MAIL with "421 closing" before closing, instead of silently."""
        with self._lock:
            self._drop_after = n
            self._drop_with_421 = with_421

    def reject_next(
        self, n: int = 1, reply: str = "451 4.3.0 Try again later", *, after: int = 0
    ) -> None:
        """Refuse the next ``n`` messages at DATA with ``reply`` (4xx: retry, 5xx: fatal),
        once ``after`` more have been accepted."""
        with self._lock:
            if after:
                self._refusals.append((after, ""))  # "": accepted
            self._refusals.append((n, reply))

    def _take_refusal(self) -> str | None:
        with self._lock:
            if not self._refusals:
                return None
            remaining, reply = self._refusals[0]
            if remaining <= 1:
                self._refusals.pop(0)
            else:
                self._refusals[0] = (remaining - 1, reply)
            return reply or None

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        login = password = None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
        ok = self._credentials is None or (
            login is not None and self._credentials.get(login) == password
        )
        with self._lock:
            self._auth_attempts.append((mechanism, login, ok))
        # handled=False: aiosmtpd answers 535 itself on failure; auth_data feeds session.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    # what arrived --------------------------------------------------------------------

    def _connected(self, server: SMTP) -> None:
        with self._lock:
            self._connections += 1

    @staticmethod
    def _server_state(server: SMTP) -> dict[str, int]:
        """Counts kept on one connection's server object."""
        state: dict[str, int] = server.__dict__.setdefault("sink_state", {"messages": 0})
        return state

    @property
    def connections(self) -> int:
        """Connections clients made since start() or clear() (the server's own readiness
        check not counted)."""
        with self._lock:
            return self._connections

    def _add(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._mails.append(mail)

    @property
    def mails(self) -> list[ReceivedMail]:
        """Every message received, oldest first."""
        with self._lock:
            return list(self._mails)

    @property
    def messages(self) -> list[EmailMessage]:
        """The parsed messages alone."""
        return [m.message for m in self.mails]

    @property
    def auth_attempts(self) -> list[tuple[str, str | None, bool]]:
        """(mechanism, login, accepted) for every AUTH the sink saw."""
        with self._lock:
            return list(self._auth_attempts)

    def clear(self) -> None:
        with self._lock:
            self._mails.clear()
            self._auth_attempts.clear()
            self._connections = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Wait until ``count`` messages arrived and return all of them."""
        wait_until(
            lambda: len(self.mails) >= count,
            timeout=timeout,
            message=lambda: (
                f"expected {count} mail(s) within {timeout}s, got "
                f"{[(m.subject, m.rcpt_tos) for m in self.mails]}"
            ),
        )
        return self.mails

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SmtpSink {self.host}:{self._port} {state}>"
