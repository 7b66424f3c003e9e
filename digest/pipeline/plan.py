"""Plan: one ledger row per reader whose send time for the current period has passed.

The database is the source of truth and the ``digests`` table is the ledger: one
row per subscriber and period (a unique key makes planning idempotent), so
running the plan twice, or from two beat processes at once, inserts nothing the
second time.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, column, literal, or_, select, values
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.schedule import current_period
from digest.store import db
from digest.store.dialect import ANALYZE_AFTER_ROWS, analyze, dialect_insert
from digest.store.models import Digest, DigestStatus, Subscriber, SubscriberStatus

log = logging.getLogger(__name__)


#: Schedule groups per statement (six parameters each, well under every driver's limit).
GROUPS_PER_STATEMENT = 1000


def plan(settings: Settings, now: datetime) -> list[int]:
    """Insert the digest rows that are due and missing; return the new rows' ids.

    Subscribers are grouped by schedule (time zone, frequency, weekday, hour): each
    group has one current period. All groups go in with one INSERT … SELECT joining
    the subscribers to a VALUES list of (schedule, period, due time), whose ON
    CONFLICT DO NOTHING on (reader, period) skips rows that already exist, so running
    this twice, or from two beat processes at once, inserts nothing the second time.

    Measured on PostgreSQL: a ``NOT EXISTS`` as well ran, on a fresh ledger, as a
    nested loop over the rows being inserted (quadratic: 50 s for 30,000 readers);
    and one statement per group scanned the subscribers once per group (900 groups
    × 100,000 readers: 19 s). The join reads them once.
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
        groups: list[tuple[object, ...]] = []
        for tz, frequency, weekday, hour in schedules:
            try:
                period = current_period(now, tz, frequency, hour, weekday)
            except ValueError:
                log.error("skipping subscribers with unknown time zone %r", tz)
                continue
            groups.append((tz, frequency, weekday, hour, period.label, period.due_at))
        for start in range(0, len(groups), GROUPS_PER_STATEMENT):
            new_ids += _insert_planned(session, now, groups[start : start + GROUPS_PER_STATEMENT])
        if len(new_ids) >= ANALYZE_AFTER_ROWS:
            # The claims, sweeps and progress counts that follow are planned on fresh numbers.
            analyze(session, "digests")
    return new_ids


def _insert_planned(session: Session, now: datetime, groups: list[tuple[object, ...]]) -> list[int]:
    due = (
        values(
            column("timezone", Subscriber.timezone.type),
            column("frequency", Subscriber.frequency.type),
            column("weekday", Subscriber.weekday.type),
            column("send_hour", Subscriber.send_hour.type),
            column("period", Digest.period.type),
            column("due_at", Digest.due_at.type),
            name="due",
        )
        .data(groups)
        .cte("due")
    )
    subscribers = (
        select(
            Subscriber.id,
            due.c.period,
            literal(DigestStatus.PLANNED.value),
            literal(now, Digest.planned_at.type),
            literal(now, Digest.queued_at.type),
            due.c.due_at,
            literal(0),
            literal([], Digest.paper_ids.type),
        )
        .join_from(
            Subscriber,
            due,
            and_(
                Subscriber.timezone == due.c.timezone,
                Subscriber.frequency == due.c.frequency,
                Subscriber.weekday == due.c.weekday,
                Subscriber.send_hour == due.c.send_hour,
            ),
        )
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            # A period that came before the reader confirmed is not theirs: the first
            # digest is the next one, not an immediate catch-up.
            or_(Subscriber.confirmed_at.is_(None), Subscriber.confirmed_at <= due.c.due_at),
        )
    )
    statement = (
        dialect_insert(session, Digest)
        .from_select(
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
