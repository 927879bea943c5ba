"""An SMTP server on 127.0.0.1 that keeps each mail's subject and the time it arrived.

``SmtpSink(tls=context)`` also offers STARTTLS; ``connections`` counts the connections
clients made. ``SmtpProcess`` runs one in a process of its own, so that a benchmark
measuring its own CPU time does not count the server's; ``tls_files()`` makes a
certificate for 127.0.0.1 with the openssl command.
"""

from __future__ import annotations

import email
import email.policy
import logging
import shutil
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
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
    (which connects to ``self.port``) runs; counts the connections it serves."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        with self.sink.lock:
            self.sink.connections += 1
        return super().factory()

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

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.mails: list[Mail] = []
        self.connections = 0
        self._controller = _Controller(
            self,
            _Handler(self),
            hostname="127.0.0.1",
            port=0,
            ready_timeout=5.0,
            authenticator=_accept,
            auth_require_tls=False,
            server_hostname="bench",
            tls_context=tls,
        )

    def apprise_url(self) -> str:
        """An Apprise URL that delivers here: plain SMTP with a login."""
        return (
            f"mailto://user:pass@127.0.0.1:{self._controller.port}"
            "?from=monitor@example.org&to=alerts@example.org"
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def clear(self) -> None:
        with self.lock:
            self.mails.clear()
            self.connections = 0

    def __enter__(self) -> SmtpSink:
        log = logging.getLogger("mail.log")
        if _no_login_data_warning not in log.filters:
            log.addFilter(_no_login_data_warning)
        self._controller.start()
        with self.lock:
            self.connections = 0  # aiosmtpd's readiness check connects once
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()


def tls_files(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, self-signed, made in ``folder`` with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("the openssl command is needed for the STARTTLS server")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


class SmtpProcess:
    """An SmtpSink in a process of its own (STARTTLS with ``cert``/``key`` if given).

    ``counts()`` asks it for (mails received, connections made) and clears them;
    stopped by closing its stdin."""

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        argv = [sys.executable, str(Path(__file__))]
        if cert and key:
            argv += [str(cert), str(key)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"the SMTP server did not start: {line!r}")
        self.port = int(line.split()[1])

    def counts(self) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("counts\n")
        self.proc.stdin.flush()
        mails, connections = self.proc.stdout.readline().split()
        return int(mails), int(connections)

    def __enter__(self) -> SmtpProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _serve(argv: list[str]) -> None:
    tls = None
    if len(argv) == 2:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(argv[0], argv[1])
    with SmtpSink(tls) as sink:
        print(f"PORT {sink.port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "counts":
                with sink.lock:
                    print(len(sink.mails), sink.connections, flush=True)
                    sink.mails.clear()
                    sink.connections = 0


if __name__ == "__main__":
    _serve(sys.argv[1:])
