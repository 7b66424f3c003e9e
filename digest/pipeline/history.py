"""A reader's digest history, and an admin's resend, over the ledger.

``digest digests list/show/resend`` are thin over these. A resend is a ledger
operation: the digest row goes back to ``planned`` with the same period, paper
window and papers, and a new Message-ID (fixed now, before anything is sent, so a
crash and retry repeats the same one); what the row said before — its Message-ID,
status, the server's answer, attempts — is kept in ``digest_resends``. The normal
send path then sends it: in this process, or on the workers when a broker is set.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver import make_message_id
from digest.errors import LedgerError
from digest.store.models import (
    Digest,
    DigestResend,
    DigestStatus,
    Paper,
    Subscriber,
    SubscriberStatus,
)
from digest.store.suppression import is_suppressed

#: Statuses a digest can be resent from: it went out, may have, or failed for good.
RESENDABLE = (DigestStatus.SENT, DigestStatus.UNKNOWN, DigestStatus.FAILED)
_CHUNK = 1000


@dataclass(frozen=True)
class DigestRow:
    """One line of `digest digests list`."""

    id: int
    email: str
    period: str
    status: str
    planned_at: datetime
    sent_at: datetime | None
    papers: int
    attempts: int
    resends: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_digests(
    session: Session,
    subscriber: Subscriber | None = None,
    statuses: Sequence[DigestStatus] = (),
    since: datetime | None = None,
    limit: int = 50,
) -> list[DigestRow]:
    """Digests newest first, optionally of one reader, in some statuses, planned since."""
    resends = (
        select(DigestResend.digest_id, func.count().label("n"))
        .group_by(DigestResend.digest_id)
        .subquery()
    )
    query = (
        select(Digest, Subscriber.email, func.coalesce(resends.c.n, 0))
        .join(Subscriber, Subscriber.id == Digest.subscriber_id)
        .outerjoin(resends, resends.c.digest_id == Digest.id)
        .order_by(Digest.planned_at.desc(), Digest.id.desc())
        .limit(limit)
    )
    if subscriber is not None:
        query = query.where(Digest.subscriber_id == subscriber.id)
    if statuses:
        query = query.where(Digest.status.in_(list(statuses)))
    if since is not None:
        query = query.where(Digest.planned_at >= since)
    return [
        DigestRow(
            id=d.id,
            email=email,
            period=d.period,
            status=d.status.value,
            planned_at=d.planned_at,
            sent_at=d.sent_at,
            papers=len(d.paper_ids or []),
            attempts=d.attempts,
            resends=n,
            error=d.error,
        )
        for d, email, n in session.execute(query).all()
    ]


def get_digest(session: Session, digest_id: int) -> Digest:
    digest = session.scalars(
        select(Digest)
        .where(Digest.id == digest_id)
        .options(selectinload(Digest.subscriber), selectinload(Digest.resends))
    ).first()
    if digest is None:
        raise LedgerError(f"no digest with id {digest_id} (see `digest digests list`)")
    return digest


def digest_record(session: Session, digest: Digest) -> dict[str, Any]:
    """Everything `digest digests show` prints: window, papers, outcome, answer, resends."""
    ids = list(digest.paper_ids or [])
    papers: dict[int, Paper] = {}
    for start in range(0, len(ids), _CHUNK):
        for paper in session.scalars(
            select(Paper).where(Paper.id.in_(ids[start : start + _CHUNK]))
        ):
            papers[paper.id] = paper
    return {
        "id": digest.id,
        "email": digest.subscriber.email,
        "period": digest.period,
        "status": digest.status.value,
        "planned_at": digest.planned_at,
        "due_at": digest.due_at,
        "window": {"start": digest.window_start, "end": digest.window_end},
        "papers": [
            {
                "id": pid,
                "key": papers[pid].key if pid in papers else None,
                "title": papers[pid].title if pid in papers else "(no longer stored)",
            }
            for pid in ids
        ],
        "message_id": digest.message_id,
        "attempts": digest.attempts,
        "retry_at": digest.retry_at,
        "sent_at": digest.sent_at,
        "finished_at": digest.finished_at,
        "smtp_code": digest.smtp_code,
        "reply": digest.reply,
        "error": digest.error,
        "resends": [
            {
                "requested_at": r.requested_at,
                "requested_by": r.requested_by,
                "previous_status": r.previous_status,
                "previous_message_id": r.previous_message_id,
                "previous_sent_at": r.previous_sent_at,
                "previous_attempts": r.previous_attempts,
                "previous_smtp_code": r.previous_smtp_code,
                "previous_reply": r.previous_reply,
                "previous_error": r.previous_error,
            }
            for r in digest.resends
        ],
    }


def request_resend(
    settings: Settings,
    session: Session,
    digest_id: int,
    requested_by: str,
    now: datetime | None = None,
) -> Digest:
    """Put a sent (or failed, or unknown) digest back to ``planned`` for the same window and
    papers, with a new Message-ID, keeping its earlier delivery in ``digest_resends``.

    Refused, with the reason, for a digest still on its way (planned, sending, retry:
    it goes out by itself), one that was skipped (nothing was sent: there is nothing
    to send again), a reader who is no longer active, or a suppressed address.
    Flushed, not committed; the caller sends it once committed.
    """
    now = now or utcnow()
    digest = get_digest(session, digest_id)
    subscriber = digest.subscriber
    if digest.status in (DigestStatus.PLANNED, DigestStatus.SENDING, DigestStatus.RETRY):
        raise LedgerError(
            f"digest {digest.id} is {digest.status.value}: it is still on its way and goes out "
            "by itself (see `digest digests show`)"
        )
    if digest.status is DigestStatus.SKIPPED:
        raise LedgerError(
            f"digest {digest.id} was skipped ({digest.error or 'nothing to send'}): no email "
            "went out, so there is nothing to send again"
        )
    if digest.window_end is None:
        raise LedgerError(f"digest {digest.id} never had its papers fixed: nothing to resend")
    if subscriber.status is not SubscriberStatus.ACTIVE:
        raise LedgerError(
            f"{subscriber.email} is {subscriber.status.value}: digests go to active readers only"
        )
    if is_suppressed(session, subscriber.email_key):
        raise LedgerError(
            f"{subscriber.email} is on the suppression list: lift it first with "
            f"`digest subscribers unsuppress {subscriber.email}`"
        )
    digest.resends.append(
        DigestResend(
            requested_at=now,
            requested_by=requested_by[:200],
            previous_status=digest.status.value,
            previous_message_id=digest.message_id,
            previous_sent_at=digest.sent_at,
            previous_finished_at=digest.finished_at,
            previous_attempts=digest.attempts,
            previous_smtp_code=digest.smtp_code,
            previous_reply=digest.reply,
            previous_error=digest.error,
        )
    )
    digest.status = DigestStatus.PLANNED
    digest.message_id = make_message_id(f"{digest.id}.{secrets.token_hex(5)}", settings.from_domain)
    digest.attempts = 0
    digest.sent_at = digest.finished_at = digest.retry_at = None
    digest.error = digest.reply = None
    digest.smtp_code = None
    digest.lease_owner = digest.lease_until = None
    digest.queued_at = now
    session.flush()
    return digest


__all__ = [
    "RESENDABLE",
    "DigestRow",
    "digest_record",
    "get_digest",
    "list_digests",
    "request_resend",
]
