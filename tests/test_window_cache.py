"""The day's papers are read once per process and reused across batches, until they change.

`IndexCache.window_papers` (pipeline/compose.py) keeps the papers it read with a
one-row stamp of the window; a batch reuses them only while the stamp holds. These
tests change the papers between two builders the way ingest does (a new paper, a
fresh sighting with new upvotes) and require the second builder to see the change,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from support.factories import T, make_paper, make_papers, make_subscriber, seed_titles

from digest.config import Settings
from digest.core import caches
from digest.pipeline.compose import INDEXES, DigestBuilder, DigestSpec, Window
from digest.store.models import Paper


def _builder(settings: Settings, session: Session, spec: DigestSpec) -> DigestBuilder:
    builder = DigestBuilder(settings, session, T, {1: spec})
    builder.match()
    return builder


def test_papers_are_read_once_and_reread_when_ingest_changes_them(
    settings: Settings, session: Session
) -> None:
    titles = seed_titles("Open Problems in Machine", "Corrective Machine", "Challenging Forgets")
    make_papers(session, titles[:2], seen=T - timedelta(hours=3))
    reader = make_subscriber(session, "ada@example.org", "unlearning")
    session.commit()
    spec = DigestSpec(reader, "2026-11-29", Window(T - timedelta(days=1), T), T)

    first = _builder(settings, session, spec)
    assert {p.title for p in first.papers} == set(titles[:2])
    again = _builder(settings, session, spec)
    assert [id(p) for p in again.papers] == [id(p) for p in first.papers], "read once"

    # A new paper in the window: read again, and it is matched.
    make_paper(session, titles[2], seen=T - timedelta(hours=1))
    session.commit()
    third = _builder(settings, session, spec)
    assert {p.title for p in third.papers} == set(titles[:3])
    assert titles[2] in {m.paper.title for m in third.matched[1]}

    # A fresh sighting (ingest bumps last_seen_at) with new upvotes: read again.
    paper = session.scalars(select(Paper).where(Paper.title == titles[0])).one()
    paper.upvotes = 99
    paper.last_seen_at = T - timedelta(minutes=5)
    session.commit()
    fourth = _builder(settings, session, spec)
    assert {p.title: p.upvotes for p in fourth.papers}[titles[0]] == 99

    caches.clear_all()
    assert not INDEXES._papers
