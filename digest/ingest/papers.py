"""The papers table as ingest leaves it: listing for `digest papers`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.store.models import Paper


def list_papers(session: Session, since: datetime | None = None, limit: int = 200) -> list[Paper]:
    """Papers newest first (by first sighting), optionally only those first seen at or
    after ``since``."""
    query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc()).limit(limit)
    if since is not None:
        query = query.where(Paper.first_seen_at >= since)
    return list(session.scalars(query))


__all__ = ["list_papers"]
