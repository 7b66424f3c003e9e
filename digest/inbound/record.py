"""The inbound_messages table: every message recorded before it is acted on.

The listener calls :func:`store` before it says 250, so a message the mail server
was told we have is in the database, whatever happens next. One row per message
and recipient; the row's ``dedupe_key`` (the Message-ID, or a hash of the content
when there is none, with the recipient) makes a second delivery of the same
message a no-op. Work on a row is claimed (:func:`claim`) for a few minutes, so
two listeners, or a listener and its own restart, never act on it twice; a row
left ``received`` or ``acted`` by a crash is picked up again by
:func:`pending_ids` at the next start (and by the periodic sweep).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.text import clean_text
from digest.inbound import mail as mailmod
from digest.inbound.addresses import Recipient
from digest.store import db
from digest.store.dialect import insert_ignore
from digest.store.models import InboundMessage, InboundStatus

#: How long one worker owns a row it is handling before another may take it over.
CLAIM = timedelta(minutes=5)
#: After this many attempts a row that keeps failing is given up (status failed).
MAX_ATTEMPTS = 5
OPEN = (InboundStatus.RECEIVED, InboundStatus.ACTED)


@dataclass(frozen=True)
class Stored:
    recipient: str
    id: int
    new: bool  # False: the same message was delivered before


def dedupe_key(kind: str, recipient: str, message_id: str | None, raw: bytes) -> str:
    basis = f"id:{message_id}" if message_id else f"content:{mailmod.content_key(raw)}"
    return hashlib.sha256(f"{kind}|{recipient.lower()}|{basis}".encode()).hexdigest()


def _summary(raw: bytes) -> tuple[str | None, str, str | None]:
    """(From address, subject, Message-ID) from the headers alone: cheap, before the 250."""
    try:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw[: 256 * 1024])
        from_value = mailmod.header_value(head.get("from", ""))
        subject = mailmod.header_value(head.get("subject", ""))
        message_id = mailmod.message_id(mailmod.header_value(head.get("message-id", "")))
    except Exception:
        return None, "", None
    address, _problem = mailmod.sender(from_value, bool(from_value))
    return address, clean_text(subject, 300), message_id


def store(
    settings: Settings,
    envelope_from: str,
    recipients: Sequence[Recipient],
    raw: bytes,
    now: datetime | None = None,
) -> list[Stored]:
    """Record one message for each recipient (committed); duplicates are marked so."""
    now = now or utcnow()
    from_addr, subject, message_id = _summary(raw)
    out: list[Stored] = []
    with db.session_scope(settings) as session:
        for recipient in recipients:
            key = dedupe_key(recipient.kind, recipient.address, message_id, raw)
            result = session.execute(
                insert_ignore(session, InboundMessage.__table__, ["dedupe_key"]).values(
                    received_at=now,
                    dedupe_key=key,
                    envelope_from=clean_text(envelope_from or "", 320),
                    recipient=recipient.address[:320],
                    kind=recipient.kind,
                    from_addr=from_addr,
                    subject=subject,
                    message_id=message_id,
                    size=len(raw),
                    raw=raw,
                    status=InboundStatus.RECEIVED,
                    attempts=0,
                )
            )
            row_id = session.scalar(
                select(InboundMessage.id).where(InboundMessage.dedupe_key == key)
            )
            assert row_id is not None
            out.append(Stored(recipient.address, row_id, bool(getattr(result, "rowcount", 0))))
    return out


def claim(session: Session, row_id: int, now: datetime | None = None) -> InboundMessage | None:
    """Take the row for :data:`CLAIM` if it is open and nobody holds it; None otherwise."""
    now = now or utcnow()
    result = session.execute(
        update(InboundMessage)
        .where(
            InboundMessage.id == row_id,
            InboundMessage.status.in_(OPEN),
            or_(InboundMessage.claimed_until.is_(None), InboundMessage.claimed_until < now),
        )
        .values(claimed_until=now + CLAIM, attempts=InboundMessage.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if not getattr(result, "rowcount", 0):
        return None
    return session.get(InboundMessage, row_id, populate_existing=True)


def release(session: Session, row: InboundMessage) -> None:
    row.claimed_until = None


def pending_ids(settings: Settings, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Rows left open (a crash, a database error, a reply not sent yet), oldest first."""
    now = now or utcnow()
    with db.session_scope(settings) as session:
        return list(
            session.scalars(
                select(InboundMessage.id)
                .where(
                    InboundMessage.status.in_(OPEN),
                    or_(
                        InboundMessage.claimed_until.is_(None),
                        InboundMessage.claimed_until < now,
                    ),
                )
                .order_by(InboundMessage.id)
                .limit(limit)
            )
        )


def finish(
    row: InboundMessage,
    status: InboundStatus,
    action: str,
    result: str,
    now: datetime | None = None,
) -> None:
    """Mark the row handled: its outcome for people, and the raw bytes dropped."""
    row.status = status
    row.action = action[:30]
    row.result = result[:4000]
    row.claimed_until = None
    if status is not InboundStatus.ACTED:
        row.finished_at = now or utcnow()
    if status in (InboundStatus.DONE, InboundStatus.IGNORED):
        row.raw = None


__all__ = [
    "CLAIM",
    "MAX_ATTEMPTS",
    "OPEN",
    "Stored",
    "claim",
    "dedupe_key",
    "finish",
    "pending_ids",
    "release",
    "store",
]
