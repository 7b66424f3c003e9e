"""Export subscribers as CSV (which :mod:`~digest.subscriptions.importer` reads back) or JSON.

Only active and paused subscribers are exported by default: exporting the
unsubscribed into a file that imports as confirmed would undo their choice.
The JSON export keeps the consent record, which CSV has no column for.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.store.models import Subscriber, SubscriberStatus, Topic
from digest.subscriptions.cells import (
    DEFAULT_EXPORT_STATUSES,
    EXPORT_COLUMNS,
    format_topics,
    neutralise,
)
from digest.subscriptions.lifecycle import subscriber_record
from digest.subscriptions.validate import weekday_name


def _statuses(statuses: Iterable[SubscriberStatus | str] | None) -> list[SubscriberStatus]:
    return [
        SubscriberStatus(s) for s in (DEFAULT_EXPORT_STATUSES if statuses is None else statuses)
    ]


def iter_subscribers(
    session: Session, statuses: Iterable[SubscriberStatus | str] | None = None
) -> Iterator[tuple[Subscriber, list[Topic]]]:
    """Subscribers of these statuses (default: active and paused) with their topics, by id.

    Two queries in all (subscribers, then topics), whatever the count.
    """
    wanted = _statuses(statuses)
    subscribers = list(
        session.scalars(
            select(Subscriber).where(Subscriber.status.in_(wanted)).order_by(Subscriber.id)
        )
    )
    topics: dict[int, list[Topic]] = {}
    for topic in session.scalars(
        select(Topic)
        .join(Subscriber, Subscriber.id == Topic.subscriber_id)
        .where(Subscriber.status.in_(wanted))
        .order_by(Topic.subscriber_id, Topic.id)
    ):
        topics.setdefault(topic.subscriber_id, []).append(topic)
    for subscriber in subscribers:
        yield subscriber, topics.get(subscriber.id, [])


def export_csv(
    session: Session,
    out: IO[str],
    *,
    statuses: Iterable[SubscriberStatus | str] | None = None,
) -> int:
    """Write subscribers as CSV that :func:`import_csv` reads back; returns the count.

    Only active and paused rows import back (see ``status`` in the module docstring).
    Every cell that a spreadsheet would run as a formula is neutralised
    (:func:`~digest.subscriptions.cells.neutralise`); import restores it.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for subscriber, topics in iter_subscribers(session, statuses):
        queries, labels = format_topics([(t.query, t.label) for t in topics])
        cells = [
            subscriber.email,
            queries,
            subscriber.timezone,
            subscriber.frequency.value,
            weekday_name(subscriber.weekday),
            str(subscriber.send_hour),
            str(subscriber.max_papers),
            subscriber.status.value,
            labels,
        ]
        writer.writerow([neutralise(cell) for cell in cells])
        count += 1
    return count


def export_records(
    session: Session, *, statuses: Iterable[SubscriberStatus | str] | None = None
) -> list[dict[str, Any]]:
    """Full records (status, settings, consent, labelled topics) for a JSON export."""
    records = []
    for subscriber, topics in iter_subscribers(session, statuses):
        records.append(subscriber_record(subscriber, topics))
    return records


def export_json(
    session: Session,
    out: IO[str],
    *,
    statuses: Iterable[SubscriberStatus | str] | None = None,
) -> int:
    records = export_records(session, statuses=statuses)
    json.dump(records, out, default=_json_default, indent=2, ensure_ascii=False)
    out.write("\n")
    return len(records)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def count_by_status(session: Session) -> dict[str, int]:
    return {
        status.value: count
        for status, count in session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
    }
