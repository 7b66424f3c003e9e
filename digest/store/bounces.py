"""The bounces table as operators read it: `digest bounces list`, `subscribers show`."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.core.addresses import email_key
from digest.store.models import Bounce


def recent_bounces(
    session: Session, email: str | None = None, kinds: Iterable[str] = (), limit: int = 50
) -> list[Bounce]:
    """Bounces and complaints, newest first (of one address, of these kinds)."""
    query = select(Bounce).order_by(Bounce.received_at.desc(), Bounce.id.desc()).limit(limit)
    if email:
        query = query.where(Bounce.email_key == email_key(email))
    wanted = list(kinds)
    if wanted:
        query = query.where(Bounce.kind.in_(wanted))
    return list(session.scalars(query))


__all__ = ["recent_bounces"]
