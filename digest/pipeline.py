"""plan, build-and-send one batch, sweep: the daily run as idempotent functions.

The database is the source of truth and the ``digests`` table is the ledger: one
row per subscriber and period (a unique key makes planning idempotent). Workers
claim rows under a lease; a dead worker's lease runs out and :func:`sweep` hands
the row to someone else. Each outcome is committed right after the SMTP server
answers, so a duplicate is possible only between its 250 and our commit, and
then carries the same Message-ID (it is derived from the digest row).

Nothing here knows about Celery: ``workers/`` calls these functions, and so does
``digest run`` in-process.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from digest import db, ingest
from digest.config import Settings
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.schedule import current_period

log = logging.getLogger(__name__)

#: Consecutive transient failures after which a batch stops hammering the server.
BREAKER_THRESHOLD = 5

#: States a digest never leaves on its own (a resend needs an admin).
SETTLED = (DigestStatus.SENT, DigestStatus.SKIPPED, DigestStatus.FAILED, DigestStatus.UNKNOWN)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- ingest --------------------------------------------------------------------------


def ingest_feeds(settings: Settings, now: datetime | None = None) -> list[ingest.FeedOutcome]:
    return ingest.ingest_all(settings, now=now)


# --- plan ----------------------------------------------------------------------------


def plan(settings: Settings, now: datetime) -> list[int]:
    """Insert the digest rows that are due and missing; return the new rows' ids.

    Subscribers are grouped by schedule (time zone, frequency, weekday, hour): each
    group has one current period, and its rows go in with one INSERT … SELECT that
    skips rows that already exist, so running this twice, or from two beat processes
    at once, inserts nothing the second time.
    """
    db.ensure_schema(settings)
    new_ids: list[int] = []
    with db.session_scope(settings) as session:
        schedules = session.execute(
            select(
                Subscriber.timezone, Subscriber.frequency, Subscriber.weekday, Subscriber.send_hour
            )
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
            .distinct()
        ).all()
        for tz, frequency, weekday, hour in schedules:
            try:
                period = current_period(now, tz, frequency, hour, weekday)
            except ValueError:
                log.error("skipping subscribers with unknown time zone %r", tz)
                continue
            new_ids += _insert_planned(
                session, now, period.label, period.due_at, tz, frequency, weekday, hour
            )
    return new_ids


def _insert_planned(
    session: Session,
    now: datetime,
    period: str,
    due_at: datetime,
    tz: str,
    frequency: object,
    weekday: int,
    hour: int,
) -> list[int]:
    subscribers = select(
        Subscriber.id,
        literal(period),
        literal(DigestStatus.PLANNED.value),
        literal(now, Digest.planned_at.type),
        literal(now, Digest.queued_at.type),
        literal(due_at, Digest.due_at.type),
        literal(0),
        literal([], Digest.paper_ids.type),
    ).where(
        Subscriber.status == SubscriberStatus.ACTIVE,
        Subscriber.timezone == tz,
        Subscriber.frequency == frequency,
        Subscriber.weekday == weekday,
        Subscriber.send_hour == hour,
        # A period that came before the reader confirmed is not theirs: the first
        # digest is the next one, not an immediate catch-up.
        or_(Subscriber.confirmed_at.is_(None), Subscriber.confirmed_at <= due_at),
        ~exists().where(Digest.subscriber_id == Subscriber.id, Digest.period == period),
    )
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(Digest)
    statement = (
        insert.from_select(
            [
                "subscriber_id",
                "period",
                "status",
                "planned_at",
                "queued_at",
                "due_at",
                "attempts",
                "paper_ids",
            ],
            subscribers,
        )
        .on_conflict_do_nothing(index_elements=["subscriber_id", "period"])
        .returning(Digest.id)
    )
    return list(session.scalars(statement))


# --- sweep ---------------------------------------------------------------------------


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


def batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


# --- claim ---------------------------------------------------------------------------


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


# --- send ----------------------------------------------------------------------------


@dataclass
class BatchResult:
    claimed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: DigestStatus) -> None:
        self.by_status[status.value] = self.by_status.get(status.value, 0) + 1


def send_batch(settings: Settings, ids: Sequence[int], now: datetime | None = None) -> BatchResult:
    """Claim, build, send and record a batch of digests. Safe to run twice or concurrently.

    The lease is renewed at half-time while the batch runs (a slow server can make
    100 messages outlast one lease); a row whose lease we lost is left to its new
    owner instead of being sent twice.
    """
    from digest.compose import DigestBuilder
    from digest.delivery import transport_from_settings

    now = now or utcnow()
    db.ensure_schema(settings)
    owner = f"{worker_id()}:{uuid.uuid4().hex[:8]}"
    lease = timedelta(seconds=settings.lease_seconds)
    result = BatchResult()
    factory = db.session_factory(settings)
    with factory() as session:
        claimed = claim(session, ids, now, lease, owner)
        session.commit()
    result.claimed = len(claimed)
    if not claimed:
        return result
    started = time.monotonic()
    renewed = started
    with factory() as session:
        digests = _load(session, claimed)
        builder = DigestBuilder(settings, session, digests, now)
        session.commit()  # windows fixed before anything is sent
        builder.match()
        transient_in_a_row = 0
        with transport_from_settings(settings) as transport:
            for position, digest in enumerate(digests):
                if time.monotonic() - renewed > lease.total_seconds() / 2:
                    renewed = time.monotonic()
                    until = now + timedelta(seconds=renewed - started) + lease
                    renew_lease(session, digests[position:], owner, until)
                    session.commit()
                    session.expire_all()  # re-read who holds each row
                if digest.status is not DigestStatus.SENDING or digest.lease_owner != owner:
                    continue  # the lease ran out under us and someone else has it now
                if transient_in_a_row >= BREAKER_THRESHOLD:
                    # The server is failing: give the rest back instead of burning attempts.
                    builder.defer(digest, now, "not attempted: mail server failing")
                    session.commit()
                    result.count(DigestStatus.RETRY)
                    continue
                status = builder.send_one(digest, transport)
                session.commit()  # the outcome is durable before the next message
                result.count(status)
                transient_in_a_row = transient_in_a_row + 1 if status is DigestStatus.RETRY else 0
    return result


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


def _load(session: Session, ids: Sequence[int]) -> list[Digest]:
    return list(
        session.scalars(
            select(Digest)
            .where(Digest.id.in_(ids))
            .options(selectinload(Digest.subscriber).selectinload(Subscriber.topics))
            .order_by(Digest.id)
        )
    )


# --- run in-process ------------------------------------------------------------------


@dataclass
class RunSummary:
    feeds: list[ingest.FeedOutcome]
    planned: int
    by_status: dict[str, int]


def run_once(settings: Settings, now: datetime | None = None, fetch: bool = True) -> RunSummary:
    """The whole day in this process: ingest, plan, send everything due, once."""
    # Papers are stamped by the ingest clock unless a moment is being replayed.
    outcomes = ingest.ingest_all(settings, now=now) if fetch else []
    now = now or utcnow()
    planned = plan(settings, now)
    due = sorted(set(planned) | set(sweep(settings, now, grace=False)))
    totals: dict[str, int] = {}
    for batch in batches(due, settings.batch_size):
        for status, n in send_batch(settings, batch, now).by_status.items():
            totals[status] = totals.get(status, 0) + n
    return RunSummary(outcomes, len(planned), totals)


def period_progress(settings: Settings, digest_ids: Sequence[int]) -> dict[str, int]:
    """How many of these digests are in each status (for `digest run --wait`)."""
    with db.session_scope(settings) as session:
        rows = session.execute(
            select(Digest.status, func.count())
            .where(Digest.id.in_(digest_ids))
            .group_by(Digest.status)
        ).all()
    return {status.value: n for status, n in rows}


__all__ = [
    "SETTLED",
    "BatchResult",
    "RunSummary",
    "batches",
    "claim",
    "ingest_feeds",
    "period_progress",
    "plan",
    "run_once",
    "send_batch",
    "sweep",
]
