"""The manage page's edits as whole forms: every field checked, all or nothing.

Each function validates everything first and raises one
:class:`~digest.subscriptions.validate.FormError` naming every bad field (so a page
can show each message next to its field and keep what was typed); only a form
without errors changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.errors import SubscriptionError
from digest.store.models import Subscriber, Topic
from digest.subscriptions.lifecycle import update_subscriber
from digest.subscriptions.validate import (
    MAX_TOPICS,
    FormError,
    normalise_query,
    parse_weekday,
    topic_key,
    validate_frequency,
    validate_hour,
    validate_label,
    validate_max_papers,
    validate_query,
    validate_timezone,
)


@dataclass(frozen=True)
class TopicEdit:
    """One row of the topics form: an existing topic (``topic_id``) or a new one (None)."""

    topic_id: int | None
    query: str
    label: str
    remove: bool = False

    @property
    def key(self) -> str:
        """The form's name for this row: ``12`` or ``new``."""
        return "new" if self.topic_id is None else str(self.topic_id)


def _sentence(exc: SubscriptionError) -> str:
    text = str(exc).strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def update_topics(session: Session, subscriber: Subscriber, rows: Sequence[TopicEdit]) -> None:
    """Apply the topics form: edit, remove and add in one go, or change nothing.

    Errors are keyed ``query-<row>`` / ``label-<row>`` (row = topic id or ``new``), and
    ``topics`` for the form as a whole (too many, the same topic twice). A new row with
    an empty query is no row; an existing one with an empty query is a mistake, not a
    removal (the Remove button says so explicitly).
    """
    errors: dict[str, list[str]] = {}
    mine = {t.id: t for t in subscriber.topics}
    kept: list[tuple[TopicEdit, str, str]] = []
    queries: list[tuple[TopicEdit, str]] = []  # every row whose query is good
    for row in rows:
        if row.topic_id is not None and row.topic_id not in mine:
            errors["topics"] = ["A topic on this page no longer exists: reload the page."]
            continue
        if row.remove or (row.topic_id is None and not normalise_query(row.query)):
            continue
        try:
            query = validate_query(row.query)
        except SubscriptionError as exc:
            errors[f"query-{row.key}"] = [_query_sentence(row.query, exc)]
            continue
        queries.append((row, query))
        try:
            label = validate_label(row.label, query)
        except SubscriptionError as exc:
            errors[f"label-{row.key}"] = [_sentence(exc)]
            continue
        kept.append((row, query, label))
    seen: dict[str, TopicEdit] = {}
    for row, query in queries:
        other = seen.setdefault(topic_key(query), row)
        if other is not row:
            errors[f"query-{row.key}"] = ["You already have this topic."]
    untouched = [t for t in subscriber.topics if t.id not in {r.topic_id for r in rows}]
    total = len(queries) + len(untouched)
    if total > MAX_TOPICS:
        errors.setdefault("topics", []).append(
            f"{total} topics: the limit is {MAX_TOPICS}; remove {total - MAX_TOPICS}."
        )
    if errors:
        raise FormError(errors)
    now = utcnow()
    removed = {r.topic_id for r in rows if r.remove and r.topic_id is not None}
    for topic in [t for t in subscriber.topics if t.id in removed]:
        subscriber.topics.remove(topic)
    for row, query, label in kept:
        if row.topic_id is None:
            subscriber.topics.append(Topic(label=label, query=query, created_at=now))
        else:
            topic = mine[row.topic_id]
            topic.query, topic.label = query, label
    session.flush()


def _query_sentence(text: str, exc: SubscriptionError) -> str:
    # validate_query's message repeats the query; next to the field it is in view already.
    message = str(exc)
    query = normalise_query(text)
    prefix = f'bad topic query "{query}": '
    if message.startswith(prefix):
        message = message[len(prefix) :]
    return (message[:1].upper() + message[1:]).rstrip(".") + "."


def update_settings(
    session: Session,
    subscriber: Subscriber,
    *,
    timezone: str,
    frequency: str,
    weekday: str,
    hour: str,
    max_papers: str,
) -> None:
    """Apply the delivery form (all fields), or raise a FormError naming each bad one."""
    errors: dict[str, list[str]] = {}
    checks = (
        ("timezone", validate_timezone, timezone),
        ("frequency", validate_frequency, frequency),
        ("weekday", parse_weekday, weekday),
        ("hour", validate_hour, hour),
        ("max_papers", validate_max_papers, max_papers),
    )
    for name, check, value in checks:
        try:
            check(value)
        except SubscriptionError as exc:
            errors[name] = [_sentence(exc)]
    if errors:
        raise FormError(errors)
    update_subscriber(
        session,
        subscriber,
        timezone=timezone,
        frequency=frequency,
        weekday=weekday,
        hour=int(hour.strip()),
        max_papers=int(max_papers.strip()),
    )


__all__ = ["TopicEdit", "update_settings", "update_topics"]
