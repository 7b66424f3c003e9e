"""Fetch feeds and merge their entries, each feed in its own transaction.

A feed that fails (network, HTTP status, not a feed, malformed or hostile XML)
has its error recorded on the feed row; its papers are untouched and the other
feeds go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.clock import utcnow
from digest.errors import FeedFormatError, FetchError
from digest.ingest.feeds import default_feed_name, get_feed
from digest.ingest.http import fetch
from digest.ingest.merge import NewPapersHook, merge_records
from digest.ingest.sources import parse_feed
from digest.store import db
from digest.store.dialect import lock_paper_stamps
from digest.store.models import Feed, FeedKind

log = logging.getLogger(__name__)


@dataclass
class FeedOutcome:
    """What one fetch of one feed did, for the CLI's table and the logs."""

    feed_id: int
    name: str
    status: str  # "ok" | "not-modified" | "error"
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def fetch_feed(
    session: Session,
    settings: Settings,
    feed: Feed,
    now: datetime | None = None,
    on_new_papers: NewPapersHook | None = None,
) -> FeedOutcome:
    """Fetch one feed and merge its papers; errors end up on the feed row, not raised.

    ``now`` (default: the clock once the response is in) becomes the new papers'
    ``first_seen_at``. It is read under :func:`~digest.store.dialect.lock_paper_stamps`, after
    the download, so no digest window closes between the stamp and the commit.
    """
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name, status="ok")
    try:
        result = fetch(feed.url, settings, etag=feed.etag, last_modified=feed.last_modified)
        lock_paper_stamps(session, exclusive=False)
        now = now or utcnow()
        if result.not_modified:
            outcome.status = "not-modified"
        else:
            assert result.body is not None
            _merge_body(
                session, feed, result.body, now, outcome, result.content_type, on_new_papers
            )
            # Validators are stored only once the body is safely merged, so a failed
            # merge is fetched in full next time instead of answered with a 304.
            feed.etag, feed.last_modified = result.etag, result.last_modified
    except (FetchError, FeedFormatError) as exc:
        outcome.status, outcome.error = "error", str(exc)
    except IntegrityError:
        raise  # another worker stored the same paper at the same moment: the caller retries
    except SQLAlchemyError:
        # The database, not the feed: recorded on the feed it would carry SQL, parameters
        # and SQLAlchemy's help link; raised, the CLI says it in one line.
        raise
    except Exception as exc:
        log.exception("feed %s (%s) failed", feed.id, feed.url)
        outcome.status, outcome.error = "error", f"internal error: {type(exc).__name__}: {exc}"
    now = now or utcnow()
    feed.last_fetched_at = now
    _record(feed, outcome, now)
    return outcome


def ingest_body(
    session: Session,
    feed: Feed,
    body: bytes,
    now: datetime,
    on_new_papers: NewPapersHook | None = None,
) -> FeedOutcome:
    """Merge a body we already have (bundled sample data, a saved response) as if fetched."""
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name, status="ok")
    feed.last_fetched_at = now
    try:
        _merge_body(session, feed, body, now, outcome, None, on_new_papers)
    except FeedFormatError as exc:
        outcome.status, outcome.error = "error", str(exc)
    _record(feed, outcome, now)
    return outcome


def _merge_body(
    session: Session,
    feed: Feed,
    body: bytes,
    now: datetime,
    outcome: FeedOutcome,
    content_type: str | None = None,
    on_new_papers: NewPapersHook | None = None,
) -> None:
    parsed = parse_feed(feed.kind, body, feed.url, content_type)
    if feed.kind is FeedKind.RSS:
        # The parser knows only the URL; the feed's tag is what `source:` topics name.
        for record in parsed.papers:
            record.source = feed.source
        # Added without a check (--no-check): the first good fetch names it by its title.
        if (
            parsed.title
            and feed.last_ok_at is None
            and feed.name == default_feed_name(feed.url, feed.kind)
        ):
            feed.name = default_feed_name(feed.url, feed.kind, parsed.title)
            outcome.name = feed.name
    with session.begin_nested():
        counts = merge_records(session, parsed.papers, now, on_new_papers)
    outcome.new, outcome.updated, outcome.unchanged = counts.new, counts.updated, counts.unchanged
    outcome.warnings = parsed.skipped


def _record(feed: Feed, outcome: FeedOutcome, now: datetime) -> None:
    feed.last_status = outcome.status
    if outcome.status == "error":
        feed.last_error = outcome.error
        feed.consecutive_errors += 1
        return
    feed.last_ok_at = now
    feed.consecutive_errors = 0
    feed.last_error = _summarise_warnings(outcome.warnings)
    feed.last_new, feed.last_updated, feed.last_unchanged = (
        outcome.new,
        outcome.updated,
        outcome.unchanged,
    )


def _summarise_warnings(warnings: Sequence[str]) -> str | None:
    if not warnings:
        return None
    head = "; ".join(warnings[:3])
    more = f" (and {len(warnings) - 3} more)" if len(warnings) > 3 else ""
    return f"{len(warnings)} entries skipped: {head}{more}"


def ingest_all(
    settings: Settings,
    feed_ids: Sequence[int] | None = None,
    now: datetime | None = None,
    on_feed_done: Callable[[FeedOutcome], None] | None = None,
    on_new_papers: NewPapersHook | None = None,
) -> list[FeedOutcome]:
    """Fetch every enabled feed (or the given ones), each in its own transaction."""
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:
        query = select(Feed.id).order_by(Feed.id)
        query = query.where(Feed.id.in_(feed_ids)) if feed_ids else query.where(Feed.enabled)
        ids = list(session.scalars(query))
    outcomes = []
    for feed_id in ids:
        outcome = ingest_one(settings, feed_id, now, on_new_papers)
        outcomes.append(outcome)
        if on_feed_done:
            on_feed_done(outcome)
    return outcomes


def ingest_one(
    settings: Settings,
    feed_id: int,
    now: datetime | None = None,
    on_new_papers: NewPapersHook | None = None,
) -> FeedOutcome:
    for attempt in range(3):
        try:
            with db.session_scope(settings) as session:
                feed = get_feed(session, feed_id)
                return fetch_feed(session, settings, feed, now, on_new_papers)
        except IntegrityError:
            # Two workers inserted the same new paper at once; the retry sees it stored.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
