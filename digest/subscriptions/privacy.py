"""A reader's own data: everything we hold about them (download), and erasure.

:func:`personal_data` is what the manage page's "download my data" returns: the
subscriber with their settings and consent record, their topics, every consent event,
every transactional email and every digest with the papers it carried. Work is
bounded by the reader's own history, read in chunks (never one query per row).

:func:`erase` deletes all of it. Only a one-way fingerprint of the address stays on the
suppression list (:func:`digest.store.suppression.erased_key`), so no import, admin or
stranger's form can mail the address again; the reader may still come back themselves
through the double opt-in, which lifts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.store import suppression
from digest.store.models import Consent, Digest, Notification, Paper, Subscriber
from digest.subscriptions.lifecycle import remove, subscriber_record

#: Rows per IN-list when the papers of a long history are read.
CHUNK = 1000


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _papers(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(ids))):
        for paper in session.scalars(select(Paper).where(Paper.id.in_(chunk))):
            found[paper.id] = {
                "title": paper.title,
                "url": paper.url or paper.hf_url,
                "arxiv_id": paper.arxiv_id,
                "doi": paper.doi,
                "authors": paper.authors,
            }
    return found


def personal_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about ``subscriber``, as plain data (dates as datetimes)."""
    consents = session.scalars(
        select(Consent).where(Consent.subscriber_id == subscriber.id).order_by(Consent.id)
    )
    emails = session.scalars(
        select(Notification)
        .where(Notification.subscriber_id == subscriber.id)
        .order_by(Notification.id)
    )
    digests = list(
        session.scalars(
            select(Digest).where(Digest.subscriber_id == subscriber.id).order_by(Digest.id)
        )
    )
    papers = _papers(session, [p for d in digests for p in d.paper_ids or []])
    return {
        "exported_at": utcnow(),
        "subscriber": subscriber_record(subscriber),
        "consents": [
            {
                "action": c.action.value,
                "at": c.at,
                "source": c.source,
                "ip": c.ip,
                "user_agent": c.user_agent,
                "wording": c.wording,
            }
            for c in consents
        ],
        "emails": [
            {
                "kind": n.kind,
                "to": n.address,
                "status": n.status.value,
                "created_at": n.created_at,
                "sent_at": n.sent_at,
            }
            for n in emails
        ],
        "digests": [
            {
                "period": d.period,
                "status": d.status.value,
                "due_at": d.due_at,
                "sent_at": d.sent_at,
                "message_id": d.message_id,
                "papers": [papers.get(pid, {"id": pid, "title": None}) for pid in d.paper_ids],
            }
            for d in digests
        ],
    }


def personal_data_json(session: Session, subscriber: Subscriber) -> str:
    return json.dumps(
        personal_data(session, subscriber), default=_iso, indent=2, ensure_ascii=False
    )


def _iso(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def erase(session: Session, subscriber: Subscriber) -> None:
    """Delete the subscriber and everything about them; keep only the address's
    fingerprint on the suppression list (flushed, not committed)."""
    suppression.suppress_erased(session, subscriber.email_key)
    remove(session, subscriber)


__all__ = ["erase", "personal_data", "personal_data_json"]
