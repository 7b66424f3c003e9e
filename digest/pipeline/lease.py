"""Leases on ledger rows: claim a batch, renew it while sending, sweep what expired.

Workers claim rows under a lease; a dead worker's lease runs out and
:func:`sweep` hands the row to someone else. Broker messages are only wake-ups:
a lost one delays a digest until the next sweep, never drops it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.store import db
from digest.store.models import Digest, DigestStatus

#: States a digest never leaves on its own (a resend needs an admin).
SETTLED = (DigestStatus.SENT, DigestStatus.SKIPPED, DigestStatus.FAILED, DigestStatus.UNKNOWN)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep(settings: Settings, now: datetime, grace: bool = True) -> list[int]:
    """Ids of digests that need a (new) worker: expired leases, due retries, lost wake-ups.

    The rows returned are stamped ``queued_at`` in the same statement, and a row
    queued less than a lease ago is left alone: its wake-up is probably still in
    the broker, and queueing it again on every sweep would only pile up messages
    behind a backlog. ``grace=False`` (an in-process run) takes every claimable row.
    """
    db.ensure_schema(settings)
    claimable = _claimable(now)
    if grace:
        recently = now - timedelta(seconds=settings.lease_seconds)
        claimable = and_(claimable, or_(Digest.queued_at.is_(None), Digest.queued_at <= recently))
    with db.session_scope(settings) as session:
        due = select(Digest.id).where(claimable)
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        statement = (
            update(Digest)
            .where(Digest.id.in_(due.scalar_subquery()))
            .values(queued_at=now)
            .returning(Digest.id)
            .execution_options(synchronize_session=False)
        )
        return sorted(session.scalars(statement))


def _claimable(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        Digest.status == DigestStatus.PLANNED,
        and_(Digest.status == DigestStatus.RETRY, Digest.retry_at <= now),
        and_(Digest.status == DigestStatus.SENDING, Digest.lease_until < now),
    )


def claim(
    session: Session, ids: Iterable[int], now: datetime, lease: timedelta, owner: str
) -> list[int]:
    """Atomically take the rows among ``ids`` that are free; returns those we got.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent workers split a batch
    without waiting on each other. SQLite has one writer at a time, so the
    conditional UPDATE alone is atomic.
    """
    ids = list(ids)
    if not ids:
        return []
    candidates = select(Digest.id).where(Digest.id.in_(ids), _claimable(now))
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(Digest)
        .where(Digest.id.in_(candidates.scalar_subquery()))
        .values(
            status=DigestStatus.SENDING,
            lease_owner=owner,
            lease_until=now + lease,
            attempts=Digest.attempts + 1,
        )
        .returning(Digest.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(statement))


def renew_lease(
    session: Session, digests: Sequence[Digest], owner: str, until: datetime
) -> list[int]:
    """Extend our lease on the rows we still hold; returns their ids."""
    statement = (
        update(Digest)
        .where(
            Digest.id.in_([d.id for d in digests]),
            Digest.lease_owner == owner,
            Digest.status == DigestStatus.SENDING,
        )
        .values(lease_until=until)
        .returning(Digest.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(statement))
