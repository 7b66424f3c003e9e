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
``transport.send_many(pairs)`` takes lazy ``(key, Envelope)`` pairs and yields
``(key, Outcome)`` in order: SMTP then builds the next message (the caller's
generator runs) while the server stores the last one.

Every send returns an :class:`Outcome`; nothing raises for a refused message.

- ``sent``: the server said 250 after the data (or the file is in the outbox).
- ``transient``: 4xx, or the connection failed before the message data was
  complete; ``retry_at`` comes from capped exponential backoff with jitter.
- ``permanent``: 5xx, with the server's code and text.
- ``unknown``: the whole message was sent but the connection was lost before
  the server's reply. The server may have stored it (RFC 1047), so this is never
  retried automatically: a retry would be a duplicate.

The implementations are :class:`~digest.deliver.smtp.SmtpTransport` and
:class:`~digest.deliver.outbox.OutboxTransport`; :func:`transport_from_settings`
picks one by configuration.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from digest.core.clock import utcnow

Status = Literal["sent", "transient", "permanent", "unknown"]
#: Whatever the caller pairs with each message in :meth:`Transport.send_many`.
K = TypeVar("K")

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


def reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:1000]


def transient(
    message: str,
    attempt: int,
    code: int | None = None,
    stage: str = "",
    now: datetime | None = None,
) -> Outcome:
    when = (now or utcnow()) + timedelta(seconds=backoff_seconds(attempt))
    return Outcome("transient", code, message, when, stage)


def from_code(
    code: int, reply: bytes | str, attempt: int, stage: str, now: datetime | None = None
) -> Outcome:
    text = reply_text(reply)
    if 200 <= code < 300:
        return Outcome("sent", code, text, None, stage)
    if 500 <= code < 600:
        return Outcome("permanent", code, text, None, stage)
    return transient(text or f"server answered {code}", attempt, code, stage, now)


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


@dataclass(frozen=True)
class Envelope:
    """One message for :meth:`Transport.send_many`: what :meth:`Transport.send` takes."""

    envelope_from: str
    to: str
    data: bytes
    message_id: str
    attempt: int = 1


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

    def send_many(self, messages: Iterable[tuple[K, Envelope]]) -> Iterator[tuple[K, Outcome]]:
        """Deliver each ``(key, envelope)`` and yield ``(key, outcome)``, in order.

        ``messages`` is read lazily: a caller can build each message in a generator,
        and a transport that can (SMTP with PIPELINING) takes the next message while
        the server still works on the last one, so each outcome is yielded only after
        the next message was taken. Each outcome is what :meth:`send` would return.
        """
        for key, envelope in messages:
            yield (
                key,
                self.send(
                    envelope.envelope_from,
                    envelope.to,
                    envelope.data,
                    envelope.message_id,
                    attempt=envelope.attempt,
                ),
            )

    def _send(
        self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int
    ) -> Outcome:
        raise NotImplementedError
