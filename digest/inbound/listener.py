"""`digest inbound`: the SMTP (or LMTP) server a mail server hands our mail to.

Postfix (or any MTA) delivers the mail for our addresses to it
(``transport_maps`` → ``lmtp:inet:host:port``, README "Mail in"). The
conversation refuses what we will never take, as early as possible:

- RCPT TO: an address that is not ours (``550 5.1.1``), a signed address that does
  not verify, forged or for a deleted row (``550 5.1.1``), more than
  :data:`MAX_RECIPIENTS` recipients (``452``);
- DATA: more than ``DIGEST_INBOUND_MAX_BYTES`` (``552``, also refused at MAIL FROM
  when the client announces SIZE), a line over 1,000 characters (``500``, RFC 5321).

A message accepted is recorded in the database *before* the ``250``: if recording
fails, the answer is ``451`` and the MTA tries again later. Acting on it happens
after, on one worker thread (so two messages about one reader never race); rows
left open by a crash are handled at the next start and by a sweep every
:data:`SWEEP_SECONDS`. SIGTERM or SIGINT stop accepting, let the message being
handled finish, and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.config import Settings
from digest.inbound import addresses, record
from digest.inbound.addresses import Recipient
from digest.inbound.process import handle
from digest.store import db

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50
SWEEP_SECONDS = 60.0
#: Seconds a client may stay silent before the connection is closed.
IDLE_TIMEOUT = 120.0


@dataclass
class Worker:
    """Acts on recorded messages one at a time, each row at most once in flight."""

    settings: Settings
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="inbound-work")
    )
    in_flight: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def submit(self, row_id: int) -> None:
        with self.lock:
            if self.closed or row_id in self.in_flight:
                return
            self.in_flight.add(row_id)
        self.pool.submit(self._run, row_id)

    def _run(self, row_id: int) -> None:
        try:
            handle(self.settings, row_id)
        except Exception:  # handle() logs its own; never let one row stop the worker
            log.exception("inbound message %s: unexpected error", row_id)
        finally:
            with self.lock:
                self.in_flight.discard(row_id)

    def sweep(self) -> int:
        """Submit every open row (a crash, a database outage, an answer to retry)."""
        try:
            ids = record.pending_ids(self.settings)
        except Exception as exc:
            log.warning("inbound sweep: %s", exc)
            return 0
        for row_id in ids:
            self.submit(row_id)
        return len(ids)

    def close(self, wait: bool = True) -> None:
        with self.lock:
            self.closed = True
        self.pool.shutdown(wait=wait, cancel_futures=True)


class InboundHandler:
    """aiosmtpd handler: RCPT checks, record at DATA, hand over to the worker."""

    def __init__(self, settings: Settings, worker: Worker, lmtp: bool) -> None:
        self.settings = settings
        self.worker = worker
        self.lmtp = lmtp
        # Database work off the event loop: a slow query must not stall other clients.
        self.io = ThreadPoolExecutor(2, thread_name_prefix="inbound-db")

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        recipient = addresses.classify(self.settings, address)
        if recipient is None:
            return f"550 5.1.1 <{_shown(address)}>: no such mailbox here"
        if len(_recipients(envelope)) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if recipient.parsed is not None:
            loop = asyncio.get_running_loop()
            try:
                ok = await loop.run_in_executor(self.io, self._verifies, recipient)
            except Exception as exc:
                log.warning("RCPT %s: database unavailable: %s", address, exc)
                return "451 4.3.0 Temporary failure, try again later"
            if not ok:
                return f"550 5.1.1 <{_shown(address)}>: no such mailbox here"
        _recipients(envelope).append(recipient)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    def _verifies(self, recipient: Recipient) -> bool:
        with db.session_scope(self.settings) as session:
            try:
                addresses.verify(self.settings, session, recipient)
            except addresses.AddressError:
                return False
        return True

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = _recipients(envelope)
        raw = bytes(envelope.original_content or b"")
        sender = envelope.mail_from or ""
        sender = "" if sender.strip() in ("<>", "") else sender
        loop = asyncio.get_running_loop()
        try:
            stored = await loop.run_in_executor(
                self.io, record.store, self.settings, sender, recipients, raw
            )
        except Exception as exc:
            log.error("cannot record a message from %s: %s", sender or "<>", exc)
            return self._each(recipients, "451 4.3.0 Temporary failure, try again later")
        for item in stored:
            if item.new:
                self.worker.submit(item.id)
            else:
                log.info("message %s to %s: delivered again, ignored", item.id, item.recipient)
        return self._each(recipients, "250 2.0.0 Message accepted")

    def _each(self, recipients: list[Recipient], reply: str) -> str:
        # LMTP answers DATA once per recipient (RFC 2033), SMTP once.
        return "\r\n".join([reply] * len(recipients)) if self.lmtp else reply

    def close(self) -> None:
        self.io.shutdown(wait=True)


def _recipients(envelope: Envelope) -> list[Recipient]:
    found = getattr(envelope, "digest_recipients", None)
    if found is None:
        found = []
        envelope.digest_recipients = found  # type: ignore[attr-defined]
    return found


def _shown(address: str) -> str:
    return "".join(c for c in address[:100] if 32 < ord(c) < 127 and c not in "<>")


def server_factory(settings: Settings, handler: InboundHandler, lmtp: bool) -> Callable[[], SMTP]:
    cls = LMTP if lmtp else SMTP

    def make() -> SMTP:
        return cls(
            handler,
            data_size_limit=settings.inbound_max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.mail_domain,
            ident="digest inbound",
            timeout=IDLE_TIMEOUT,
        )

    return make


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    lmtp: bool = False,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run the listener until SIGTERM/SIGINT; ``ready(host, port)`` once it listens."""
    db.ensure_schema(settings)
    worker = Worker(settings)
    handler = InboundHandler(settings, worker, lmtp)
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    async def main() -> None:
        server = await loop.create_server(
            server_factory(settings, handler, lmtp), host=host, port=port
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        bound = server.sockets[0].getsockname()
        recovered = await loop.run_in_executor(None, worker.sweep)
        if recovered:
            log.info(
                "inbound: %s message(s) left open by the last run are being handled", recovered
            )
        if ready is not None:
            ready(str(bound[0]), int(bound[1]))
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=SWEEP_SECONDS)
            except TimeoutError:
                await loop.run_in_executor(None, worker.sweep)
        server.close()
        # Newer Pythons wait here for open connections: never hang on an idle one.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=5)

    try:
        loop.run_until_complete(main())
    finally:
        worker.close(wait=True)
        handler.close()
        loop.close()


__all__ = ["MAX_RECIPIENTS", "InboundHandler", "Worker", "serve", "server_factory"]
