"""The papers table as ingest leaves it: `digest papers list` and `digest papers show`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.errors import FeedError
from digest.ingest.merge import TRACKED_FIELDS
from digest.ingest.sources.ids import extract_arxiv_id
from digest.store.models import Feed, Paper


def list_papers(session: Session, since: datetime | None = None, limit: int = 200) -> list[Paper]:
    """Papers newest first (by first sighting), optionally only those first seen at or
    after ``since``."""
    query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc()).limit(limit)
    if since is not None:
        query = query.where(Paper.first_seen_at >= since)
    return list(session.scalars(query))


def get_paper(session: Session, ref: str) -> Paper:
    """A paper by row id, key (``arxiv:2401.00001``, ``doi:…``) or bare arXiv id."""
    ref = ref.strip()
    paper = None
    if ref.isdigit() and int(ref) < 2**63:
        paper = session.get(Paper, int(ref))
    if paper is None:
        keys = [ref]
        found = extract_arxiv_id(ref)
        if found:
            keys.append(f"arxiv:{found[0]}")
        paper = session.scalar(select(Paper).where(Paper.key.in_(keys)).order_by(Paper.id))
    if paper is None:
        raise FeedError(f"no paper {ref!r} (give its id or key, see `digest papers list`)")
    return paper


@dataclass
class FieldSource:
    field: str
    value: object
    #: As recorded (``arxiv-rss:3``), or None for a paper stored before it was kept.
    label: str | None
    #: For a person: "feed 3, arXiv cs.LG (arxiv-rss)", "feed 7 (since removed)", …
    described: str


def field_sources(session: Session, paper: Paper) -> list[FieldSource]:
    """Every tracked field of ``paper`` with the source that set it."""
    recorded = paper.field_sources or {}
    feed_ids = {
        int(label.split(":", 1)[1])
        for label in recorded.values()
        if ":" in label and label.split(":", 1)[1].isdigit()
    }
    names = {f.id: f.name for f in session.scalars(select(Feed).where(Feed.id.in_(feed_ids)))}
    rows = []
    for name in TRACKED_FIELDS:
        label = recorded.get(name)
        rows.append(FieldSource(name, getattr(paper, name), label, _describe(label, names)))
    return rows


def _describe(label: str | None, names: dict[int, str]) -> str:
    if label is None:
        return "not recorded (stored before sources were kept, or empty)"
    kind, _, feed_id = label.partition(":")
    if not feed_id.isdigit():
        return label
    name = names.get(int(feed_id))
    return f"feed {feed_id}, {name} ({kind})" if name else f"feed {feed_id} ({kind}, since removed)"


__all__ = ["FieldSource", "field_sources", "get_paper", "list_papers"]
