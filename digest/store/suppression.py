"""The suppression list: addresses we must never send to again until an admin lifts it.

An address lands here when a mail server refuses it permanently (5xx). Keys are
the lower-cased address, as in ``Subscriber.email_key``. The functions do not
commit: they run inside the caller's transaction, next to the digest outcome
they explain.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.core.addresses import email_key
from digest.core.clock import utcnow
from digest.store.models import Suppression


def suppress(session: Session, email: str, reason: str, code: int | None = None) -> Suppression:
    """Put ``email`` on the list (or refresh its reason and code if already there)."""
    key = email_key(email)
    row = session.scalar(select(Suppression).where(Suppression.email_key == key))
    reason = (reason or "permanent delivery failure")[:2000]
    if row is None:
        row = Suppression(email_key=key, reason=reason, smtp_code=code, created_at=utcnow())
        session.add(row)
    else:
        row.reason = reason
        row.smtp_code = code
    session.flush()
    return row


def is_suppressed(session: Session, email: str) -> bool:
    key = email_key(email)
    return session.scalar(select(Suppression.id).where(Suppression.email_key == key)) is not None


def suppressed_keys(session: Session, keys: list[str]) -> set[str]:
    """Which of these address keys are suppressed: one query for a whole send batch."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(
            session.scalars(select(Suppression.email_key).where(Suppression.email_key.in_(chunk)))
        )
    return found


def get_suppression(session: Session, email: str) -> Suppression | None:
    return session.scalar(select(Suppression).where(Suppression.email_key == email_key(email)))


def unsuppress(session: Session, email: str) -> bool:
    """Lift the suppression; True if the address was on the list."""
    result = session.execute(delete(Suppression).where(Suppression.email_key == email_key(email)))
    return bool(getattr(result, "rowcount", 0))  # a DML result (CursorResult) has one


__all__ = [
    "email_key",
    "get_suppression",
    "is_suppressed",
    "suppress",
    "suppressed_keys",
    "unsuppress",
]
