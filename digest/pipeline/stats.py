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
    Digest,
    DigestStatus,
    Feed,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from digest.subscriptions.checks import TopicChecker


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
        }
