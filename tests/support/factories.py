"""Factories for the rows tests need: papers (from the real seed titles and abstracts),
subscribers with topics, topics. Each takes overrides for any column, flushes, and
returns the row, so a test says only what matters to it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.store.models import Paper, Subscriber, Topic
from digest.subscriptions.lifecycle import add_subscriber, add_topic

SEED_PATH = Path(__file__).resolve().parent.parent / "data" / "seed_papers.json"
#: A fixed moment for tests that replay a day: an hour after a 07:00 UTC send time.
T = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


@cache
def seed() -> dict[str, dict[str, Any]]:
    """The 61 real Hugging Face Daily Papers entries, by title."""
    return {p["title"]: p for p in json.loads(SEED_PATH.read_text())}


def seed_titles(*fragments: str) -> list[str]:
    """Seed titles containing each fragment (case-insensitive), one per fragment."""
    found = []
    for fragment in fragments:
        matches = [t for t in seed() if fragment.lower() in t.lower()]
        if not matches:
            raise KeyError(f"no seed paper title contains {fragment!r}")
        found.append(matches[0])
    return found


def arxiv_id_for(title: str) -> str:
    """A stable made-up arXiv id per title (the seed capture has none of its own)."""
    digits = int(hashlib.sha256(title.encode()).hexdigest(), 16) % 100000
    return f"2511.{digits:05d}"


def make_paper(
    session: Session,
    title: str,
    *,
    seen: datetime | None = None,
    abstract: str | None = None,
    **fields: Any,
) -> Paper:
    """A paper as arXiv would give it; the abstract comes from the seed when the title
    is a seed title. ``seen`` stamps first and last seen (default: now)."""
    seen = seen or utcnow()
    arxiv_id = fields.pop("arxiv_id", None) or arxiv_id_for(title)
    values: dict[str, Any] = {
        "key": f"arxiv:{arxiv_id}",
        "arxiv_id": arxiv_id,
        "version": 1,
        "title": title,
        "abstract": abstract if abstract is not None else seed().get(title, {}).get("abstract", ""),
        "authors": ["Ada Lovelace"],
        "categories": ["cs.LG"],
        "url": f"https://arxiv.org/abs/{arxiv_id}",
        "pdf_url": f"https://arxiv.org/pdf/{arxiv_id}",
        "sources": ["arxiv"],
        "first_seen_at": seen,
        "last_seen_at": seen,
    }
    values.update(fields)
    paper = Paper(**values)
    session.add(paper)
    session.flush()
    return paper


def make_papers(
    session: Session, titles: Sequence[str], seen: datetime | None = None, **fields: Any
) -> list[Paper]:
    """Papers one second apart from ``seen``, in the order given."""
    seen = seen or utcnow()
    return [
        make_paper(session, title, seen=seen + timedelta(seconds=i), **fields)
        for i, title in enumerate(titles)
    ]


def make_subscriber(
    session: Session,
    email: str,
    *topics: str,
    confirmed: bool = True,
    hour: int = 7,
    now: datetime | None = None,
    **fields: Any,
) -> Subscriber:
    """A subscriber through the real lifecycle code (validation included), confirmed
    two days before ``now`` (default: before :data:`T`) so today's digest is theirs."""
    return add_subscriber(
        session,
        email,
        topics=topics,
        confirmed=confirmed,
        hour=hour,
        now=now or T - timedelta(days=2),
        **fields,
    )


def make_topic(
    session: Session, subscriber: Subscriber, query: str, label: str | None = None
) -> Topic:
    return add_topic(session, subscriber, query, label)


def all_titles(exclude: Iterable[str] = ()) -> list[str]:
    skip = set(exclude)
    return [t for t in seed() if t not in skip]
