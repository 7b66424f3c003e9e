"""Transports: hand a built message to an SMTP server or to the outbox folder.

The pipeline's sequence for one email is::

    rendered = render.render_digest(ctx)                       # subject, html, text
    message = message.build_message(settings, rendered, to=…, message_id=…,
                                    unsubscribe_url=…)         # bytes
    outcome = transport.send(message.envelope_from, message.to, message.data,
                             message.message_id, attempt=n)    # one Outcome
    if outcome.should_suppress: suppress(session, to, outcome.message, outcome.code)

with one transport (``with transport_from_settings(settings) as transport``)
serving a whole batch, so SMTP sends many messages over one connection.

Every send returns an :class:`Outcome`; nothing raises for a refused message.

- ``sent``: the server said 250 after the data (or the file is in the outbox).
- ``transient``: 4xx, or the connection failed before the message data was
  complete; ``retry_at`` comes from capped exponential backoff with jitter.
- ``permanent``: 5xx, with the server's code and text.
- ``unknown``: the whole message was sent but the connection was lost before
  the server's reply. The server may have stored it (RFC 1047), so this is never
  retried automatically: a retry would be a duplicate.

``DIGEST_SMTP_URL`` forms (user and password are percent-decoded)::

    smtp://host[:port]                 plain SMTP, port 25 by default
    smtp://host:587                    port 587 means STARTTLS (submission)
    smtp://user:pass@host?starttls=1   STARTTLS on any port (starttls=0 turns it off)
    smtps://user:pass@host[:port]      implicit TLS, port 465 by default
    …?timeout=30                       socket timeout in seconds (default 30)
    …?verify=0                         accept any TLS certificate (a local relay only)
    …?helo=name                        the name we give in EHLO
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import random
import re
import smtplib
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from digest.config import ConfigError, Settings
from digest.models import utcnow
from digest.suppression import is_suppressed, suppress, unsuppress

Status = Literal["sent", "transient", "permanent", "unknown"]

#: First retry after about a minute, doubling, never more than six hours apart.
BACKOFF_BASE = 60.0
BACKOFF_CAP = 6 * 3600.0

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


def backoff_seconds(
    attempt: int,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retry ``attempt`` (1 = after the first failure): "equal jitter".

    Half of the capped exponential delay is fixed and half random, so retries of
    a whole batch spread out but none comes back almost at once.
    """
    ceiling = min(cap, base * 2 ** max(0, min(attempt, 60) - 1))
    return ceiling / 2 + rng() * ceiling / 2


@dataclass(frozen=True)
class Outcome:
    status: Status
    code: int | None = None
    message: str = ""
    retry_at: datetime | None = None
    # Where it ended: connect, mail, rcpt, data (before the content), message (after).
    stage: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "sent"

    @property
    def should_suppress(self) -> bool:
        """A permanent failure that says the *address* is bad, not our sender or content.

        A 5xx to RCPT TO is about the recipient; 5xx after the data is too, unless
        its enhanced code is a policy, content or system problem (5.3, 5.6, 5.7)
        that would hit any address. A 5xx to MAIL FROM is about us.
        """
        if self.status != "permanent" or self.stage in ("connect", "mail"):
            return False
        if self.stage == "rcpt":
            return True
        enhanced = _ENHANCED.match(self.message)
        return not (enhanced and enhanced.group(2) in ("3", "6", "7"))

    def describe(self) -> str:
        code = f"{self.code} " if self.code else ""
        return f"{self.status}: {code}{self.message}".strip()


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:1000]


def _transient(
    message: str,
    attempt: int,
    code: int | None = None,
    stage: str = "",
    now: datetime | None = None,
) -> Outcome:
    when = (now or utcnow()) + timedelta(seconds=backoff_seconds(attempt))
    return Outcome("transient", code, message, when, stage)


def _from_code(
    code: int, reply: bytes | str, attempt: int, stage: str, now: datetime | None = None
) -> Outcome:
    text = _reply_text(reply)
    if 200 <= code < 300:
        return Outcome("sent", code, text, None, stage)
    if 500 <= code < 600:
        return Outcome("permanent", code, text, None, stage)
    return _transient(text or f"server answered {code}", attempt, code, stage, now)


# --- rate limit --------------------------------------------------------------------------


class RateLimiter:
    """At most ``rate`` sends per second (0 = unlimited), evenly spaced, no bursts."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None
        self.waited = 0.0

    def wait(self) -> float:
        """Block until the next send is allowed; returns the seconds slept."""
        if not self.interval:
            return 0.0
        now = self.clock()
        if self._next is None or now >= self._next:
            self._next = now + self.interval
            return 0.0
        delay = self._next - now
        self.sleep(delay)
        self.waited += delay
        self._next += self.interval
        return delay


# --- the interface -----------------------------------------------------------------------


class Transport:
    """Sends built messages; use as a context manager around a batch."""

    name = "transport"

    def __init__(self, rate: float = 0.0, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter or RateLimiter(rate)

    def open(self) -> None:
        """Get ready (connections are opened lazily by ``send`` anyway)."""

    def close(self) -> None:
        """Release connections; safe to call twice."""

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self, envelope_from: str, to: str, data: bytes, message_id: str, *, attempt: int = 1
    ) -> Outcome:
        """Deliver one message to one recipient; ``attempt`` (1, 2, …) sets the backoff."""
        self.limiter.wait()
        return self._send(envelope_from, to, data, message_id, attempt)

    def _send(
        self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int
    ) -> Outcome:
        raise NotImplementedError


# --- SMTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "ssl"]
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    verify: bool = True
    helo: str | None = None

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port} ({self.security})"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_smtp_url(url: str) -> SmtpConfig:
    """``DIGEST_SMTP_URL`` → :class:`SmtpConfig`, or :class:`ConfigError` naming the problem."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"DIGEST_SMTP_URL: {exc}: {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ConfigError(f"DIGEST_SMTP_URL: use smtp:// or smtps://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError("DIGEST_SMTP_URL: no host")
    query = {k.lower(): v[-1].strip().lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout", "verify", "helo"}
    if unknown:
        raise ConfigError(
            f"DIGEST_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}; "
            "use starttls, timeout, verify or helo"
        )

    def flag(name: str) -> bool | None:
        value = query.get(name)
        if value is None:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(f"DIGEST_SMTP_URL: {name}={value!r}, expected 1 or 0")

    starttls = flag("starttls")
    if scheme == "smtps":
        if starttls:
            raise ConfigError("DIGEST_SMTP_URL: smtps:// is already TLS; drop starttls=1")
        security: Literal["none", "starttls", "ssl"] = "ssl"
        port = port or 465
    else:
        port = port or 25
        security = "starttls" if (starttls or (starttls is None and port == 587)) else "none"
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            raise ConfigError(
                f"DIGEST_SMTP_URL: timeout={query['timeout']!r} is no number"
            ) from None
        if not 0 < timeout <= 3600:  # also refuses nan
            raise ConfigError(
                f"DIGEST_SMTP_URL: timeout={query['timeout']!r}, expected seconds in (0, 3600]"
            )
    verify = flag("verify")
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        timeout=timeout,
        verify=True if verify is None else verify,
        helo=query.get("helo") or None,
    )


class _Dropped(Exception):
    """The connection went away before any message content was sent."""


_DISCONNECTS = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError)


def _dot_stuff(data: bytes) -> bytes:
    data = re.sub(rb"(?:\r\n|\n|\r)", b"\r\n", data)
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
        for _ in range(2):
            reused = self._conn is not None and self._sent_on_conn > 0
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except smtplib.SMTPAuthenticationError as exc:
                    # Our configuration, not the recipient: retry later, never suppress.
                    return _transient(
                        f"authentication failed at {self.config.describe()}: "
                        f"{_reply_text(exc.smtp_error)}",
                        attempt,
                        exc.smtp_code,
                        "connect",
                        self.clock(),
                    )
                except smtplib.SMTPResponseException as exc:
                    return _transient(
                        f"{self.config.describe()} refused the session: "
                        f"{_reply_text(exc.smtp_error)}",
                        attempt,
                        exc.smtp_code,
                        "connect",
                        self.clock(),
                    )
                except (smtplib.SMTPException, *_DISCONNECTS) as exc:
                    return _transient(
                        f"cannot connect to {self.config.describe()}: {exc or type(exc).__name__}",
                        attempt,
                        None,
                        "connect",
                        self.clock(),
                    )
            try:
                return self._transaction(self._conn, envelope_from, to, data, attempt)
            except _Dropped as exc:
                self._drop()
                if reused:
                    # An idle connection the server closed: open a new one and go again;
                    # nothing of this message reached the server.
                    continue
                return _transient(str(exc), attempt, None, "mail", self.clock())
        return _transient("connection lost twice before the message", attempt, None, "mail")

    def _command(self, fn: Callable[[], tuple[int, bytes]], stage: str) -> tuple[int, bytes]:
        try:
            code, reply = fn()
        except _DISCONNECTS as exc:
            raise _Dropped(f"connection lost at {stage}: {exc or type(exc).__name__}") from exc
        if code == 421 and stage == "mail":
            raise _Dropped(f"server closing the connection: {_reply_text(reply)}")
        return code, reply

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except Exception:
            self._drop()

    def _transaction(
        self, conn: smtplib.SMTP, envelope_from: str, to: str, data: bytes, attempt: int
    ) -> Outcome:
        code, reply = self._command(lambda: conn.mail(envelope_from), "mail")
        if code != 250:
            self._reset(conn)
            return _from_code(code, reply, attempt, "mail", self.clock())
        code, reply = self._command(lambda: conn.rcpt(to), "rcpt")
        if code not in (250, 251):
            # A refused recipient inside the transaction is this message's outcome.
            if code == 421:
                self._drop()
            else:
                self._reset(conn)
            return _from_code(code, reply, attempt, "rcpt", self.clock())

        def data_command() -> tuple[int, bytes]:
            conn.putcmd("data")
            return conn.getreply()

        code, reply = self._command(data_command, "data")
        if code != 354:
            if code == 421:
                self._drop()
            else:
                self._reset(conn)
            return _from_code(code, reply, attempt, "data", self.clock())
        try:
            conn.send(_dot_stuff(data))
        except _DISCONNECTS as exc:
            # The final dot never arrived, so the server cannot have taken the message.
            self._drop()
            return _transient(
                f"connection lost while sending the message: {exc or type(exc).__name__}",
                attempt,
                None,
                "data",
                self.clock(),
            )
        try:
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
        return _from_code(code, reply, attempt, "message", self.clock())


# --- outbox ------------------------------------------------------------------------------


def outbox_paths(outbox: Path, message_id: str) -> tuple[Path, Path]:
    """The ``.eml`` and ``.html`` files a message id is written to in the outbox."""
    name = re.sub(r"[^A-Za-z0-9._@+-]+", "_", message_id.strip().strip("<>")).strip("._")
    name = name[:180] or "message"
    return outbox / f"{name}.eml", outbox / f"{name}.html"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def html_part(data: bytes) -> str | None:
    message = email.message_from_bytes(data, policy=email.policy.default)
    body = message.get_body(("html",))  # type: ignore[attr-defined]
    return None if body is None else body.get_content()


class OutboxTransport(Transport):
    """Writes each message as ``<id>.eml`` plus an ``<id>.html`` preview (the default)."""

    name = "outbox"

    def __init__(self, outbox: Path, rate: float = 0.0, limiter: RateLimiter | None = None):
        super().__init__(rate, limiter)
        self.outbox = Path(outbox)

    def open(self) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)

    def _send(
        self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int
    ) -> Outcome:
        eml, html = outbox_paths(self.outbox, message_id)
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            preview = html_part(data)
            if preview is not None:
                _atomic_write(html, preview.replace("\r\n", "\n").encode("utf-8"))
            # The .eml last: its presence means the message is complete.
            _atomic_write(eml, data)
        except OSError as exc:
            return _transient(f"cannot write to the outbox {self.outbox}: {exc}", attempt)
        return Outcome("sent", None, f"written to {eml}", None, "message")


def transport_from_settings(settings: Settings) -> Transport:
    """SMTP when ``DIGEST_SMTP_URL`` is set, else the outbox folder."""
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, rate=settings.send_rate)
    return OutboxTransport(settings.outbox, rate=settings.send_rate)


__all__ = [
    "OutboxTransport",
    "Outcome",
    "RateLimiter",
    "SmtpConfig",
    "SmtpTransport",
    "Transport",
    "backoff_seconds",
    "is_suppressed",
    "outbox_paths",
    "parse_smtp_url",
    "suppress",
    "transport_from_settings",
    "unsuppress",
]
