"""Deliver over SMTP: one reused connection for many messages, reconnecting when it drops.

``DIGEST_SMTP_URL`` forms are parsed by :func:`digest.config.parse_smtp_url`::

    smtp://host[:port]                 plain SMTP, port 25 by default
    smtp://host:587                    port 587 means STARTTLS (submission)
    smtp://user:pass@host?starttls=1   STARTTLS on any port (starttls=0 turns it off)
    smtps://user:pass@host[:port]      implicit TLS, port 465 by default
    …?timeout=30                       socket timeout in seconds (default 30)
    …?verify=0                         accept any TLS certificate (a local relay only)
    …?helo=name                        the name we give in EHLO

A connection lost after the whole message was sent, before the server answered,
is ``unknown``: the server may have stored it (RFC 1047), so it is never retried.

When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one
write and their answers are read after, each classified as it would be alone;
:meth:`SmtpTransport.send_many` also writes the next message's commands before
reading the last message's answer. Our messages come with CRLF line ends, so
dot-stuffing is one ``bytes.replace``.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from digest.config import SmtpConfig, parse_smtp_url
from digest.core.clock import utcnow
from digest.deliver.transport import (
    Envelope,
    K,
    Outcome,
    RateLimiter,
    Transport,
    from_code,
    reply_text,
    transient,
)


class _Dropped(Exception):
    """The connection went away before any message content was sent."""


_DISCONNECTS = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError)


_LINE_END = re.compile(rb"(?:\r\n|\n|\r)")


def _dot_stuff(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, a dot doubled at the start of a line, the final dot.

    Our messages come with CRLF line ends already (``deliver.message``): counting is a
    memchr, so the regex pass over the ~80 KB (~0.5 ms) runs only for other input.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = _LINE_END.sub(b"\r\n", data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpTransport(Transport):
    """One reused SMTP connection for many messages, reconnecting when it drops."""

    name = "smtp"

    def __init__(
        self,
        url: str | SmtpConfig,
        rate: float = 0.0,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(rate, limiter)
        self.config = url if isinstance(url, SmtpConfig) else parse_smtp_url(url)
        self.clock = clock
        self._conn: smtplib.SMTP | None = None
        self._sent_on_conn = 0
        self.connections = 0  # opened so far, for tests and stats
        self.pipelined = 0  # transactions sent as one MAIL+RCPT+DATA write (RFC 2920)

    # -- connection ---------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        conn: smtplib.SMTP
        if c.security == "ssl":
            conn = smtplib.SMTP_SSL(
                c.host, c.port, local_hostname=c.helo, timeout=c.timeout, context=self._context()
            )
        else:
            conn = smtplib.SMTP(c.host, c.port, local_hostname=c.helo, timeout=c.timeout)
        try:
            # Commands and message go out as several small writes before we read: without
            # this, Nagle holds each one back for the peer's delayed ACK (bench/README).
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if c.security == "starttls":
                conn.starttls(context=self._context())
                conn.ehlo()
            if c.username:
                conn.login(c.username, c.password)
        except BaseException:
            self._quietly_close(conn)
            raise
        self.connections += 1
        self._sent_on_conn = 0
        return conn

    @staticmethod
    def _quietly_close(conn: smtplib.SMTP) -> None:
        with contextlib.suppress(Exception):
            conn.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._quietly_close(self._conn)
        self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.quit()
            self._drop()

    # -- sending ------------------------------------------------------------------------

    def _send(
        self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int
    ) -> Outcome:
        outcome = self._begin(envelope_from, to, data, attempt)
        return outcome if outcome is not None else self._answer(attempt)

    def send_many(self, messages: Iterable[tuple[K, Envelope]]) -> Iterator[tuple[K, Outcome]]:
        """:meth:`Transport.send_many` over one connection, the answers read late.

        With PIPELINING, once a message's content is written the next message is
        taken from ``messages`` (the caller builds it then, while the server stores
        this one) and its MAIL, RCPT and DATA written too; only then is this message's
        answer read. Each outcome is the one :meth:`send` would give: a connection lost
        before the answer is ``unknown``; commands written ahead on a connection that
        then closed are sent again on a new one (none of that message had gone out).
        """
        pending: tuple[K, int] | None = None  # content written, answer not read yet
        source = iter(messages)
        while True:
            try:
                key, envelope = next(source)
            except StopIteration:
                break
            except BaseException:
                # The caller failed building the next message: its outcome for the last
                # one still comes first, so that one is recorded, not left to a resend.
                if pending is not None:
                    yield pending[0], self._answer(pending[1])
                raise
            self.limiter.wait()
            ahead = None
            conn = self._conn
            commands = _commands(envelope.envelope_from, envelope.to)
            if pending and conn and commands and conn.has_extn("pipelining"):
                with contextlib.suppress(*_DISCONNECTS):
                    conn.send(commands)
                    ahead = conn
            if pending is not None:
                yield pending[0], self._answer(pending[1])
                pending = None
            if ahead is not None and ahead is not self._conn:
                ahead = None  # that connection closed after the last answer
            outcome = self._begin(
                envelope.envelope_from, envelope.to, envelope.data, envelope.attempt, ahead
            )
            if outcome is None:
                pending = (key, envelope.attempt)
            else:
                yield key, outcome
        if pending is not None:
            yield pending[0], self._answer(pending[1])

    def _begin(
        self,
        envelope_from: str,
        to: str,
        data: bytes,
        attempt: int,
        ahead: smtplib.SMTP | None = None,
    ) -> Outcome | None:
        """Everything up to the message's content written; an Outcome if it ended sooner.

        ``ahead``: the connection this message's MAIL, RCPT and DATA were already
        written on (:meth:`send_many`).
        """
        for _ in range(2):
            reused = self._conn is not None and self._sent_on_conn > 0
            if self._conn is None:
                ahead = None
                failed = self._open(attempt)
                if failed is not None:
                    return failed
            assert self._conn is not None
            try:
                if ahead is not None:
                    return self._pipelined(self._conn, None, data, attempt)
                return self._transaction(self._conn, envelope_from, to, data, attempt)
            except _Dropped as exc:
                self._drop()
                if reused:
                    # An idle connection the server closed: open a new one and go again;
                    # nothing of this message reached the server.
                    continue
                return transient(str(exc), attempt, None, "mail", self.clock())
        return transient("connection lost twice before the message", attempt, None, "mail")

    def _open(self, attempt: int) -> Outcome | None:
        """Connect (EHLO, STARTTLS, AUTH); the Outcome of a failure, else None."""
        try:
            self._conn = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            # Our configuration, not the recipient: retry later, never suppress.
            return transient(
                f"authentication failed at {self.config.describe()}: {reply_text(exc.smtp_error)}",
                attempt,
                exc.smtp_code,
                "connect",
                self.clock(),
            )
        except smtplib.SMTPResponseException as exc:
            return transient(
                f"{self.config.describe()} refused the session: {reply_text(exc.smtp_error)}",
                attempt,
                exc.smtp_code,
                "connect",
                self.clock(),
            )
        except (smtplib.SMTPException, *_DISCONNECTS) as exc:
            return transient(
                f"cannot connect to {self.config.describe()}: {exc or type(exc).__name__}",
                attempt,
                None,
                "connect",
                self.clock(),
            )
        return None

    def _command(self, fn: Callable[[], tuple[int, bytes]], stage: str) -> tuple[int, bytes]:
        try:
            code, reply = fn()
        except _DISCONNECTS as exc:
            raise _Dropped(f"connection lost at {stage}: {exc or type(exc).__name__}") from exc
        if code == 421 and stage == "mail":
            raise _Dropped(f"server closing the connection: {reply_text(reply)}")
        return code, reply

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except Exception:
            self._drop()

    def _transaction(
        self, conn: smtplib.SMTP, envelope_from: str, to: str, data: bytes, attempt: int
    ) -> Outcome | None:
        if conn.has_extn("pipelining"):
            commands = _commands(envelope_from, to)
            if commands is not None:
                return self._pipelined(conn, commands, data, attempt)
        code, reply = self._command(lambda: conn.mail(envelope_from), "mail")
        if code != 250:
            self._reset(conn)
            return from_code(code, reply, attempt, "mail", self.clock())
        code, reply = self._command(lambda: conn.rcpt(to), "rcpt")
        if code not in (250, 251):
            # A refused recipient inside the transaction is this message's outcome.
            if code == 421:
                self._drop()
            else:
                self._reset(conn)
            return from_code(code, reply, attempt, "rcpt", self.clock())

        def data_command() -> tuple[int, bytes]:
            conn.putcmd("data")
            return conn.getreply()

        code, reply = self._command(data_command, "data")
        return self._content(conn, code, reply, data, attempt)

    def _pipelined(
        self, conn: smtplib.SMTP, commands: bytes | None, data: bytes, attempt: int
    ) -> Outcome | None:
        """MAIL, RCPT and DATA in one write and their three answers read after (RFC 2920):
        one round trip instead of three, each answer classified as it would be alone.
        ``commands`` None: they were written already (:meth:`send_many`)."""

        def send_commands() -> tuple[int, bytes]:
            if commands is not None:
                conn.send(commands)
            self.pipelined += 1
            return conn.getreply()

        code, reply = self._command(send_commands, "mail")
        if code != 250:
            self._answers_after_refusal(conn, 2)
            return from_code(code, reply, attempt, "mail", self.clock())
        code, reply = self._command(conn.getreply, "rcpt")
        if code not in (250, 251):
            if code == 421:
                self._drop()
            else:
                self._answers_after_refusal(conn, 1)
            return from_code(code, reply, attempt, "rcpt", self.clock())
        code, reply = self._command(conn.getreply, "data")
        return self._content(conn, code, reply, data, attempt)

    def _answers_after_refusal(self, conn: smtplib.SMTP, pending: int) -> None:
        """Read the answers still due for a refused pipelined transaction, then RSET.

        A server may accept DATA even though it refused the recipient: it then gets
        an empty message (the lone dot), which it refuses for want of a recipient
        (RFC 2920, 3.1). The refusal already read is the outcome whatever happens here.
        """
        try:
            code = 0
            for _ in range(pending):
                code, _reply = conn.getreply()
            if code == 354:
                conn.send(b".\r\n")
                conn.getreply()
        except _DISCONNECTS:
            self._drop()
            return
        self._reset(conn)

    def _content(
        self, conn: smtplib.SMTP, code: int, reply: bytes, data: bytes, attempt: int
    ) -> Outcome | None:
        """After DATA's answer: the message itself (None once it is written)."""
        if code != 354:
            if code == 421:
                self._drop()
            else:
                self._reset(conn)
            return from_code(code, reply, attempt, "data", self.clock())
        try:
            conn.send(_dot_stuff(data))
        except _DISCONNECTS as exc:
            # The final dot never arrived, so the server cannot have taken the message.
            self._drop()
            return transient(
                f"connection lost while sending the message: {exc or type(exc).__name__}",
                attempt,
                None,
                "data",
                self.clock(),
            )
        return None

    def _answer(self, attempt: int) -> Outcome:
        """The server's verdict on the message whose content was written last."""
        conn = self._conn
        try:
            if conn is None or conn.sock is None:  # closed by a failed write ahead
                raise smtplib.SMTPServerDisconnected("connection closed")
            code, reply = conn.getreply()
        except _DISCONNECTS as exc:
            self._drop()
            return Outcome(
                "unknown",
                None,
                "connection lost after the message was sent, before the server answered; "
                f"it may have been delivered, so it is not retried ({exc or type(exc).__name__})",
                None,
                "message",
            )
        self._sent_on_conn += 1
        if code == 421:
            self._drop()
        return from_code(code, reply, attempt, "message", self.clock())


def _commands(envelope_from: str, to: str) -> bytes | None:
    """MAIL, RCPT and DATA as one write; None for an address that is not ASCII (smtplib's
    own commands then say what is wrong with it)."""
    try:
        return (
            f"MAIL FROM:{smtplib.quoteaddr(envelope_from)}\r\n"
            f"RCPT TO:{smtplib.quoteaddr(to)}\r\nDATA\r\n"
        ).encode("ascii")
    except UnicodeEncodeError:
        return None
