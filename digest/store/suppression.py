"""The suppression list: addresses we must never send to again until an admin lifts it.

An address lands here when a mail server refuses it permanently (5xx). Keys are
the lower-cased address, as in ``Subscriber.email_key``. The functions do not
commit: they run inside the caller's transaction, next to the digest outcome
they explain.

A reader who erases their data (the manage page's "delete everything") leaves only
a one-way fingerprint here (:func:`erased_key`, ``sha256:<hex>``), never the address:
every check below looks for the address and for its fingerprint, so nothing is sent
to an erased address, yet the address itself is gone. Such an entry is lifted only
when the reader subscribes again themselves and confirms (:func:`lift_erasure`).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, or_, select
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


ERASED_PREFIX = "sha256:"
ERASED_REASON = "erased at the reader's request (only this fingerprint is kept)"


def erased_key(email: str) -> str:
    """The fingerprint kept for an erased address: SHA-256 of its key, never the address.

    Unsalted on purpose: it must match the same address typed again on any later day and
    in any process. It cannot be turned back into the address; someone who already has a
    candidate address can test it, which the manage page says.
    """
    return ERASED_PREFIX + hashlib.sha256(email_key(email).encode()).hexdigest()


def _keys(email: str) -> tuple[str, str]:
    return email_key(email), erased_key(email)


def is_suppressed(session: Session, email: str, *, erased: bool = True) -> bool:
    """True if ``email`` is on the list; ``erased=False`` ignores an erasure fingerprint
    (only the reader's own double opt-in may mail an erased address again)."""
    keys = _keys(email) if erased else (email_key(email),)
    query = select(Suppression.id).where(Suppression.email_key.in_(keys)).limit(1)
    return session.scalar(query) is not None


def is_erased(session: Session, email: str) -> bool:
    query = select(Suppression.id).where(Suppression.email_key == erased_key(email))
    return session.scalar(query) is not None


def suppressed_keys(session: Session, keys: list[str]) -> set[str]:
    """Which of these address keys are suppressed, by address or by erasure fingerprint:
    one query per 500 addresses for a whole send batch."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        fingerprints = {erased_key(k): k for k in chunk}
        for stored in session.scalars(
            select(Suppression.email_key).where(
                or_(Suppression.email_key.in_(chunk), Suppression.email_key.in_(fingerprints))
            )
        ):
            found.add(fingerprints.get(stored, stored))
    return found


def get_suppression(session: Session, email: str) -> Suppression | None:
    query = select(Suppression).where(Suppression.email_key.in_(_keys(email)))
    return session.scalars(query.order_by(Suppression.id)).first()


def suppress_erased(session: Session, email: str) -> None:
    """Keep only the fingerprint of an address whose data was erased (idempotent)."""
    key = erased_key(email)
    if session.scalar(select(Suppression.id).where(Suppression.email_key == key)) is None:
        session.add(Suppression(email_key=key, reason=ERASED_REASON, created_at=utcnow()))
        session.flush()


def lift_erasure(session: Session, email: str) -> bool:
    """The reader confirmed a new subscription themselves: forget the erasure entry."""
    result = session.execute(delete(Suppression).where(Suppression.email_key == erased_key(email)))
    return bool(getattr(result, "rowcount", 0))


def unsuppress(session: Session, email: str) -> bool:
    """Lift the suppression (and any erasure fingerprint); True if the address was listed."""
    result = session.execute(delete(Suppression).where(Suppression.email_key.in_(_keys(email))))
    return bool(getattr(result, "rowcount", 0))  # a DML result (CursorResult) has one


__all__ = [
    "ERASED_PREFIX",
    "email_key",
    "erased_key",
    "get_suppression",
    "is_erased",
    "is_suppressed",
    "lift_erasure",
    "suppress",
    "suppress_erased",
    "suppressed_keys",
    "unsuppress",
]
