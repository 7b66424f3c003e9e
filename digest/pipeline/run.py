"""The whole day in this process (``digest run`` without a broker), and its progress.

Nothing in ``digest.pipeline`` knows about Celery: ``workers/`` calls the same
functions, one per task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import ingest
from digest.config import Settings
from digest.core.clock import utcnow
from digest.match import semantic
from digest.pipeline.lease import sweep
from digest.pipeline.plan import plan
from digest.pipeline.send import send_batch
from digest.store import db
from digest.store.models import Digest, Paper


def ingest_feeds(
    settings: Settings,
    now: datetime | None = None,
    feed_ids: Sequence[int] | None = None,
    on_feed_done: Callable[[ingest.FeedOutcome], None] | None = None,
) -> list[ingest.FeedOutcome]:
    """Fetch every enabled feed (or the given ones); new papers get their embeddings."""
    return ingest.ingest_all(
        settings, feed_ids, now=now, on_feed_done=on_feed_done, on_new_papers=embed_new_papers
    )


def embed_new_papers(session: Session, papers: Sequence[Paper]) -> None:
    """Sentence embeddings for papers stored for the first time, once, at ingest, when
    the semantic extra is installed: every digest's ``~…`` and ``like:`` topics use them."""
    if semantic.available():
        semantic.embed_papers(papers)


def batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


@dataclass
class RunSummary:
    feeds: list[ingest.FeedOutcome]
    planned: int
    by_status: dict[str, int]


def run_once(settings: Settings, now: datetime | None = None, fetch: bool = True) -> RunSummary:
    """The whole day in this process: ingest, plan, send everything due, once."""
    # Papers are stamped by the ingest clock unless a moment is being replayed.
    outcomes = ingest_feeds(settings, now) if fetch else []
    now = now or utcnow()
    planned = plan(settings, now)
    due = sorted(set(planned) | set(sweep(settings, now, grace=False)))
    totals: dict[str, int] = {}
    for batch in batches(due, settings.batch_size):
        for status, n in send_batch(settings, batch, now).by_status.items():
            totals[status] = totals.get(status, 0) + n
    return RunSummary(outcomes, len(planned), totals)


def period_progress(settings: Settings, digest_ids: Sequence[int]) -> dict[str, int]:
    """How many of these digests are in each status (for `digest run --wait`)."""
    with db.session_scope(settings) as session:
        rows = session.execute(
            select(Digest.status, func.count())
            .where(Digest.id.in_(digest_ids))
            .group_by(Digest.status)
        ).all()
    return {status.value: n for status, n in rows}
