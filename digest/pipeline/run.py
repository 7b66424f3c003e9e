"""The whole day in this process (``digest run`` without a broker), and its progress.

Nothing in ``digest.pipeline`` knows about Celery: ``workers/`` calls the same
functions, one per task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import ingest
from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver import require_safe_links
from digest.match import semantic
from digest.pipeline.lease import sweep
from digest.pipeline.notify import send_pending
from digest.pipeline.plan import plan
from digest.pipeline.send import send_batch
from digest.pipeline.upcoming import Upcoming, upcoming
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
    upcoming: Upcoming | None = None  # when the next digests fall due, after this run
    #: Transactional emails sent (or retried) by this run, by outcome.
    notifications: dict[str, int] = field(default_factory=dict)


def run_once(settings: Settings, now: datetime | None = None, fetch: bool = True) -> RunSummary:
    """The whole day in this process: ingest, plan, send everything due, once.

    Refuses (:class:`~digest.errors.ConfigError`) before doing anything when mail would
    go over SMTP with links no reader can open (see ``Settings.insecure_links``).
    """
    require_safe_links(settings)
    # Papers are stamped by the ingest clock unless a moment is being replayed.
    outcomes = ingest_feeds(settings, now) if fetch else []
    now = now or utcnow()
    planned = plan(settings, now)
    due = sorted(set(planned) | set(sweep(settings, now, grace=False)))
    totals: dict[str, int] = {}
    for batch in batches(due, settings.batch_size):
        for status, n in send_batch(settings, batch, now).by_status.items():
            totals[status] = totals.get(status, 0) + n
    # Confirmations and welcomes that could not go out from the web (a mail server that
    # was down) are retried by every run; with a broker beat does it every few seconds.
    notified = send_pending(settings, max(now, utcnow()))
    with db.session_scope(settings) as session:
        after = upcoming(session, now)
    return RunSummary(outcomes, len(planned), totals, after, notified)


def next_digests(settings: Settings, now: datetime | None = None) -> Upcoming:
    """When the next digests fall due (for `digest run` with a broker, and `stats`)."""
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:
        return upcoming(session, now or utcnow())


@dataclass(frozen=True)
class RunScope:
    """What `digest run --wait` follows: the ledger rows of the run's periods, between
    its first and last row id (a range the primary key reads; no list of ids to bind)."""

    first: int
    last: int
    periods: tuple[str, ...]
    count: int  # digests the run covered when it was handed out

    def as_dict(self) -> dict[str, object]:
        return {
            "first": self.first,
            "last": self.last,
            "periods": list(self.periods),
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunScope:
        periods = data.get("periods")
        return cls(
            int(str(data["first"])),
            int(str(data["last"])),
            tuple(str(p) for p in periods) if isinstance(periods, list) else (),
            int(str(data["count"])),
        )


def run_scope(settings: Settings, digest_ids: Sequence[int]) -> RunScope | None:
    """The scope of a run's digests (None for none), read once when the run is handed out."""
    ids = sorted(digest_ids)
    if not ids:
        return None
    periods: set[str] = set()
    with db.session_scope(settings) as session:
        # In chunks: a driver takes at most 65,535 parameters.
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            periods.update(
                session.scalars(select(Digest.period).where(Digest.id.in_(chunk)).distinct())
            )
    return RunScope(ids[0], ids[-1], tuple(sorted(periods)), len(ids))


def period_progress(settings: Settings, scope: RunScope) -> dict[str, int]:
    """How many of the run's digests are in each status (for `digest run --wait`): one
    COUNT by status over its periods and id range, however many digests it covers."""
    with db.session_scope(settings) as session:
        rows = session.execute(
            select(Digest.status, func.count())
            .where(
                Digest.id.between(scope.first, scope.last),
                Digest.period.in_(scope.periods),
            )
            .group_by(Digest.status)
        ).all()
    return {status.value: n for status, n in rows}
