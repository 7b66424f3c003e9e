"""A real SMTP server (aiosmtpd over TCP) with programmable answers, as a pytest plugin.

Use it with ``pytest_plugins = ("support.smtpserver",)`` or import the fixture::

    def test_x(smtp_server):
        smtp_server.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user"
        smtp_server.data_replies["busy@example.org"] = "451 4.3.0 Try later"
        smtp_server.drop_after_data.add("flaky@example.org")
        ... send to smtp_server.url ...
        assert smtp_server.messages[0].rcpt_tos == ["ok@example.org"]

``pipelining = True`` offers ESMTP PIPELINING. Answers are keyed by recipient (lower-cased); ``mail_reply`` answers every MAIL
FROM; ``close_after`` makes the server drop a connection when a client starts
its next transaction after that many messages, the way a server closes an idle
or over-used connection.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: dict[str, str] = field(default_factory=dict)
    drop_after_data: set[str] = field(default_factory=set)
    mail_reply: str | None = None
    close_after: int | None = None
    #: Offer ESMTP PIPELINING (RFC 2920) in the EHLO answer; aiosmtpd itself reads
    #: pipelined commands in order either way.
    pipelining: bool = False
    connections: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)  # required logins, if any
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.rcpt_replies.clear()
            self.data_replies.clear()
            self.drop_after_data.clear()
            self.mail_reply = None
            self.close_after = None
            self.pipelining = False
            self.connections = 0

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        session.host_name = hostname  # what aiosmtpd does itself without this hook
        if self.sink.pipelining:
            return [responses[0], "250-PIPELINING", *responses[1:]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        count = getattr(session, "digest_messages", 0)
        if self.sink.close_after is not None and count >= self.sink.close_after:
            server.transport.abort()  # type: ignore[union-attr]
            return "421 4.3.2 closing"
        if self.sink.mail_reply:
            return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        reply = self.sink.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        for r in rcpts:
            if r in self.sink.data_replies:
                return self.sink.data_replies[r]
        session.digest_messages = getattr(session, "digest_messages", 0) + 1  # type: ignore[attr-defined]
        with self.sink.lock:
            self.sink.messages.append(
                Received(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content or b""),
                    getattr(session, "digest_connection", 0),
                )
            )
        if any(r in self.sink.drop_after_data for r in rcpts):
            # Stored, then gone before the 250: the RFC 1047 case.
            server.transport.abort()  # type: ignore[union-attr]
        return "250 2.0.0 Queued"


def _authenticator(sink: SmtpSink):  # type: ignore[no-untyped-def]
    def check(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        password = auth_data.password.decode()
        sink.logins.append((user, password))
        ok = not sink.users or sink.users.get(user) == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


class _CountingSMTP(SMTP):
    def __init__(self, *args: object, sink: SmtpSink, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._sink = sink

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        # Called again on the same connection after STARTTLS: count TCP connections once.
        if not hasattr(self, "_digest_number"):
            with self._sink.lock:
                self._sink.connections += 1
                self._digest_number = self._sink.connections
        super().connection_made(transport)
        self.session.digest_connection = self._digest_number  # type: ignore[union-attr]


class _Controller(Controller):
    def __init__(self, sink: SmtpSink, **kwargs: object) -> None:
        self.sink = sink
        super().__init__(_Handler(sink), **kwargs)  # type: ignore[arg-type]

    def factory(self) -> SMTP:
        return _CountingSMTP(
            self.handler,
            sink=self.sink,
            authenticator=_authenticator(self.sink),
            auth_require_tls=False,
            # smtplib falls back from PLAIN to LOGIN after a 535, and aiosmtpd's LOGIN
            # exchange then stalls until the client times out: offer PLAIN only.
            auth_exclude_mechanism=["LOGIN"],
            **self.SMTP_kwargs,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(**controller_kwargs: object) -> tuple[SmtpSink, Controller]:
    """Start a server; ``controller_kwargs`` go to aiosmtpd (e.g. ``ssl_context`` for
    implicit TLS, ``tls_context`` and ``require_starttls`` for STARTTLS)."""
    sink = SmtpSink(port=_free_port())
    controller = _Controller(
        sink, hostname=sink.host, port=sink.port, ready_timeout=10, **controller_kwargs
    )
    controller.start()
    # The trigger connection aiosmtpd makes at start-up is not a client of ours.
    sink.connections = 0
    return sink, controller


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """A fresh aiosmtpd server on a free localhost port, stopped after the test."""
    sink, controller = start_sink()
    try:
        yield sink
    finally:
        controller.stop()
