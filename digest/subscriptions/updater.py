"""``digest subscribers import --update``: change existing subscribers from CSV rows.

A row for an address already stored changes that subscriber, in bulk (the stored
settings and topics are read in chunks of ids, the changes written with one
executemany per kind: no query per row at 100,000 rows). The rules:

- only the cells a row fills in change anything: a column missing from the header,
  or a blank cell, leaves that setting as it is (an import cannot clear a setting);
- a filled-in ``topics`` cell is the reader's whole list: topics not in it are
  removed, new ones added, kept ones keep their id (and their label unless the
  ``labels`` cell gives one);
- ``status`` switches between active and paused only;
- the consent record is never touched, and nobody who left is brought back: a row
  for an unsubscribed or bounced subscriber is refused, and a pending one (who has
  not confirmed) cannot be made active or paused by a file.

Every changed row is counted once in ``updated`` and once per field it changed in
``changes``; rows already as the file says are ``unchanged``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.store.models import Subscriber, SubscriberStatus, Topic
from digest.subscriptions.validate import default_label, topic_key

_CHUNK = 1000
_WRITE_CHUNK = 5000
#: (CSV column, model column, stored attribute) of the plain settings.
_SETTINGS = (
    ("timezone", "timezone", "timezone"),
    ("frequency", "frequency", "frequency"),
    ("weekday", "weekday", "weekday"),
    ("hour", "send_hour", "hour"),
    ("max", "max_papers", "max"),
)


@dataclass
class Stored:
    """The columns of an existing subscriber an update compares a row with."""

    id: int
    status: SubscriberStatus
    timezone: str
    frequency: Any
    weekday: int
    hour: int
    max: int
    unsubscribed_at: Any = None


@dataclass
class UpdateResult:
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # line, email, reason
    updated: int = 0
    unchanged: int = 0
    changes: dict[str, int] = field(default_factory=dict)


def _refusal(stored: Stored, values: dict[str, Any]) -> str | None:
    if stored.status is SubscriberStatus.UNSUBSCRIBED:
        when = f"{stored.unsubscribed_at:%Y-%m-%d}" if stored.unsubscribed_at else "earlier"
        return (
            f"unsubscribed on {when}: an import cannot subscribe them again (that needs "
            "their fresh consent: digest subscribers add --confirmed)"
        )
    if stored.status is SubscriberStatus.BOUNCED:
        return (
            "bounced: mail to the address failed permanently, and an import does not change "
            f"that (digest subscribers unsuppress {values['email']})"
        )
    if stored.status is SubscriberStatus.PENDING and "status" in values["given"]:
        return (
            "has not confirmed the subscription yet, and an import confirms nobody: leave "
            "the status cell blank to change only their settings"
        )
    return None


def _stored_topics(session: Session, ids: Sequence[int]) -> dict[int, list[tuple[int, str, str]]]:
    """(topic id, query, label) of each subscriber, read in chunks of ids."""
    found: dict[int, list[tuple[int, str, str]]] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(Topic.subscriber_id, Topic.id, Topic.query, Topic.label)
            .where(Topic.subscriber_id.in_(ids[start : start + _CHUNK]))
            .order_by(Topic.id)
        )
        for subscriber_id, topic_id, query, label in rows:
            found.setdefault(subscriber_id, []).append((topic_id, query, label))
    return found


def apply_updates(
    session: Session,
    rows: Sequence[tuple[int, dict[str, Any], Stored]],
    *,
    dry_run: bool = False,
) -> UpdateResult:
    """Compare each row with its stored subscriber; write the differences in bulk."""
    report = UpdateResult()
    todo = []
    for line, values, stored in rows:
        reason = _refusal(stored, values)
        if reason:
            report.refused.append((line, values["raw"], reason))
        else:
            todo.append((line, values, stored))
    topics = _stored_topics(session, [s.id for _, v, s in todo if "topics" in v["given"]])
    settings: list[dict[str, Any]] = []
    deleted: list[int] = []
    relabelled: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    now = utcnow()
    for _line, values, stored in todo:
        given = values["given"]
        changed: list[str] = []
        new = {column: getattr(stored, attr) for _, column, attr in _SETTINGS}
        new["status"] = stored.status
        for cell, column, attr in _SETTINGS:
            if cell in given and values[cell] != getattr(stored, attr):
                new[column] = values[cell]
                changed.append(cell)
        if "status" in given and values["status"] is not stored.status:
            new["status"] = values["status"]
            changed.append("status")
        if "topics" in given:
            changed += _topic_changes(
                stored.id, topics.get(stored.id, []), values, deleted, relabelled, added, now
            )
        if not changed:
            report.unchanged += 1
            continue
        report.updated += 1
        for name in changed:
            report.changes[name] = report.changes.get(name, 0) + 1
        if set(changed) - {"topics", "labels"}:
            settings.append({"id": stored.id, **new})
    if dry_run:
        return report
    for start in range(0, len(settings), _WRITE_CHUNK):
        session.execute(update(Subscriber), settings[start : start + _WRITE_CHUNK])
    for start in range(0, len(deleted), _CHUNK):
        session.execute(delete(Topic).where(Topic.id.in_(deleted[start : start + _CHUNK])))
    for start in range(0, len(relabelled), _WRITE_CHUNK):
        session.execute(update(Topic), relabelled[start : start + _WRITE_CHUNK])
    for start in range(0, len(added), _WRITE_CHUNK):
        session.execute(insert(Topic), added[start : start + _WRITE_CHUNK])
    return report


def _topic_changes(
    subscriber_id: int,
    stored: list[tuple[int, str, str]],
    values: dict[str, Any],
    deleted: list[int],
    relabelled: list[dict[str, Any]],
    added: list[dict[str, Any]],
    now: Any,
) -> list[str]:
    """The row's topics against the stored ones; appends the writes, returns the fields."""
    labels_given = "labels" in values["given"]
    by_key = {topic_key(query): (topic_id, label) for topic_id, query, label in stored}
    wanted = {topic_key(query): (query, label) for query, label in values["topics"]}
    changed: list[str] = []
    gone = [topic_id for key, (topic_id, _) in by_key.items() if key not in wanted]
    new = [
        {"subscriber_id": subscriber_id, "query": query, "label": label, "created_at": now}
        for key, (query, label) in wanted.items()
        if key not in by_key
    ]
    if gone or new:
        changed.append("topics")
        deleted.extend(gone)
        added.extend(new)
    renamed = []
    for key, (query, label) in wanted.items():
        if key not in by_key:
            continue
        topic_id, current = by_key[key]
        # A blank label entry means the default: only a label actually written changes one.
        if labels_given and label != current and label != default_label(query):
            renamed.append({"id": topic_id, "label": label})
    if renamed:
        changed.append("labels")
        relabelled.extend(renamed)
    return changed


__all__ = ["Stored", "UpdateResult", "apply_updates"]
