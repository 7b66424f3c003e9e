"""What `digest stats` reports: the health of the daily run at a glance."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select

from digest.config import Settings
from digest.core.clock import utcnow
from digest.pipeline.upcoming import upcoming
from digest.store import db
from digest.store.models import (
    Bounce,
    Digest,
    DigestStatus,
    Feed,
    InboundMessage,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from digest.subscriptions.checks import TopicChecker


def suppression_cause(reason: str) -> str:
    """What put an address on the suppression list, from its recorded reason."""
    text = (reason or "").lower()
    if text.startswith("spam complaint"):
        return "complaint"
    if text.startswith("hard bounce"):
        return "hard bounce"
    if text.startswith("bounce score"):
        return "soft bounces"
    return "refused at sending"  # a 5xx from our own SMTP server (digest.pipeline.ledger)


def collect(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:

        def by_status(since: datetime) -> dict[str, int]:
            rows = session.execute(
                select(Digest.status, func.count())
                .where(Digest.planned_at >= since)
                .group_by(Digest.status)
            ).all()
            return {status.value: n for status, n in rows}

        failures = session.execute(
            select(Digest.id, Subscriber.email, Digest.status, Digest.finished_at, Digest.error)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(
                Digest.status.in_([DigestStatus.FAILED, DigestStatus.UNKNOWN, DigestStatus.RETRY]),
                Digest.planned_at >= now - timedelta(days=7),
            )
            .order_by(Digest.id.desc())
            .limit(20)
        ).all()
        feeds = list(session.scalars(select(Feed).order_by(Feed.id)))
        week = now - timedelta(days=7)
        bounce_kinds = dict(
            session.execute(
                select(Bounce.kind, func.count())
                .where(Bounce.received_at >= week)
                .group_by(Bounce.kind)
            ).all()
        )
        inbound = dict(
            session.execute(
                select(InboundMessage.action, func.count())
                .where(InboundMessage.received_at >= week)
                .group_by(InboundMessage.action)
            ).all()
        )
        causes: dict[str, int] = {}
        for (reason,) in session.execute(select(Suppression.reason)).yield_per(1000):
            cause = suppression_cause(reason)
            causes[cause] = causes.get(cause, 0) + 1
        readers = dict(
            session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            ).all()
        )
        bare = session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(
                Subscriber.status == SubscriberStatus.ACTIVE,
                ~exists().where(Topic.subscriber_id == Subscriber.id),
            )
        )
        warnings = []
        no_topics = TopicChecker(session).no_topics_warning(bare or 0)
        if no_topics:
            warnings.append(no_topics)
        after = upcoming(session, now)
        problem = settings.insecure_links()
        if problem:
            warnings.append(problem)
        return {
            "generated_at": now,
            "mail": settings.mail_destination(),
            "readers": {status.value: n for status, n in readers.items()},
            "next": after.as_dict() | {"line": after.describe()},
            "warnings": warnings,
            "digests": {"today": by_status(day_start), "week": by_status(now - timedelta(days=7))},
            "feeds": [
                {
                    "id": f.id,
                    "name": f.name,
                    "url": f.url,
                    "enabled": f.enabled,
                    "last_fetched_at": f.last_fetched_at,
                    "last_ok_at": f.last_ok_at,
                    "last_status": f.last_status,
                    "last_new": f.last_new,
                    "last_error": f.last_error,
                    "consecutive_errors": f.consecutive_errors,
                }
                for f in feeds
            ],
            "failures": [
                {"id": i, "email": e, "status": s.value, "finished_at": t, "error": err}
                for i, e, s, t, err in failures
            ],
            "suppressed": session.scalar(select(func.count()).select_from(Suppression)) or 0,
            "suppressed_by_cause": causes,
            "bounces_week": {k: n for k, n in bounce_kinds.items() if k != "complaint"},
            "complaints_week": bounce_kinds.get("complaint", 0),
            "inbound_week": {(k or "pending"): n for k, n in inbound.items()},
        }
