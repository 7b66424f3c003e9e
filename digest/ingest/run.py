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
from digest.errors import FeedError, FeedFormatError, FetchError
from digest.ingest.feeds import default_feed_name, get_feed
from digest.ingest.http import fetch
from digest.ingest.merge import NewPapersHook, merge_records
from digest.ingest.sources import parse_feed
from digest.ingest.sources.base import FeedParseResult
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


@dataclass
class _Prepared:
    """A feed's response, downloaded and parsed outside any transaction."""

    not_modified: bool = False
    parsed: FeedParseResult | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None


def _prepare(
    settings: Settings, url: str, kind: FeedKind, etag: str | None, modified: str | None
) -> _Prepared:
    """Download and parse; every failure of the feed itself is returned, not raised."""
    try:
        result = fetch(url, settings, etag=etag, last_modified=modified)
        if result.not_modified:
            return _Prepared(not_modified=True)
        assert result.body is not None
        parsed = parse_feed(kind, result.body, url, result.content_type)
        return _Prepared(parsed=parsed, etag=result.etag, last_modified=result.last_modified)
    except (FetchError, FeedFormatError) as exc:
        return _Prepared(error=str(exc))
    except Exception as exc:
        log.exception("feed %s failed", url)
        return _Prepared(error=f"internal error: {type(exc).__name__}: {exc}")


def fetch_feed(
    session: Session,
    settings: Settings,
    feed: Feed,
    now: datetime | None = None,
    on_new_papers: NewPapersHook | None = None,
) -> FeedOutcome:
    """Fetch one feed and merge its papers in ``session``; errors end up on the feed row.

    The caller's transaction is held across the download: :func:`ingest_one` (what
    every run uses) downloads first and opens its writing transaction only after.
    """
    prepared = _prepare(settings, feed.url, feed.kind, feed.etag, feed.last_modified)
    return _store(session, feed, prepared, now, on_new_papers)


def _store(
    session: Session,
    feed: Feed,
    prepared: _Prepared,
    now: datetime | None,
    on_new_papers: NewPapersHook | None,
) -> FeedOutcome:
    """Merge a prepared response and record the outcome on the feed.

    ``now`` (default: the clock once the response is in) becomes the new papers'
    ``first_seen_at``. It is read under :func:`~digest.store.dialect.lock_paper_stamps`,
    after the download, so no digest window closes between the stamp and the commit.
    """
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name, status="ok")
    lock_paper_stamps(session, exclusive=False)
    now = now or utcnow()
    if prepared.error is not None:
        outcome.status, outcome.error = "error", prepared.error
    elif prepared.not_modified:
        outcome.status = "not-modified"
    else:
        assert prepared.parsed is not None
        try:
            _merge_parsed(session, feed, prepared.parsed, now, outcome, on_new_papers)
        except FeedFormatError as exc:
            outcome.status, outcome.error = "error", str(exc)
        except SQLAlchemyError:
            raise  # the database, not the feed: ingest_all records it in one line
        except Exception as exc:
            # A bug tripped by this feed's data: it fails alone (its savepoint is gone).
            log.exception("feed %s (%s) failed", feed.id, feed.url)
            outcome.status, outcome.error = "error", f"internal error: {type(exc).__name__}: {exc}"
        else:
            # Validators are stored only once the body is safely merged, so a failed
            # merge is fetched in full next time instead of answered with a 304.
            feed.etag, feed.last_modified = prepared.etag, prepared.last_modified
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
        parsed = parse_feed(feed.kind, body, feed.url, None)
        _merge_parsed(session, feed, parsed, now, outcome, on_new_papers)
    except FeedFormatError as exc:
        outcome.status, outcome.error = "error", str(exc)
    _record(feed, outcome, now)
    return outcome


def _merge_parsed(
    session: Session,
    feed: Feed,
    parsed: FeedParseResult,
    now: datetime,
    outcome: FeedOutcome,
    on_new_papers: NewPapersHook | None = None,
) -> None:
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
        counts = merge_records(session, parsed.papers, now, on_new_papers, feed=feed)
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
    """Fetch every enabled feed (or the given ones), each in its own transaction.

    A feed that fails, even in the database, is recorded and the others go on; only
    when every feed failed in the database is that error raised (the CLI says it).
    """
    db.ensure_schema(settings)
    with db.session_scope(settings, read_only=True) as session:
        query = select(Feed.id).order_by(Feed.id)
        query = query.where(Feed.id.in_(feed_ids)) if feed_ids else query.where(Feed.enabled)
        ids = list(session.scalars(query))
    outcomes = []
    database_errors: list[SQLAlchemyError] = []
    for feed_id in ids:
        try:
            outcome = ingest_one(settings, feed_id, now, on_new_papers)
        except FeedError as exc:  # removed since the list was read
            outcome = FeedOutcome(feed_id, str(feed_id), "error", error=str(exc))
        except SQLAlchemyError as exc:
            database_errors.append(exc)
            outcome = _database_failure(settings, feed_id, exc)
        outcomes.append(outcome)
        if on_feed_done:
            on_feed_done(outcome)
    if ids and len(database_errors) == len(ids):
        raise database_errors[-1]
    return outcomes


def _database_failure(settings: Settings, feed_id: int, exc: SQLAlchemyError) -> FeedOutcome:
    """The outcome of a feed the database failed on, recorded on its row if it can be."""
    message = str(db.database_error(exc, settings.database_url))
    log.info("feed %s: %s", feed_id, message)  # the outcome carries it to the caller
    outcome = FeedOutcome(feed_id=feed_id, name=str(feed_id), status="error", error=message)
    try:
        with db.session_scope(settings) as session:
            feed = get_feed(session, feed_id)
            outcome.name = feed.name
            feed.last_fetched_at = utcnow()
            _record(feed, outcome, feed.last_fetched_at)
    except SQLAlchemyError:
        log.info("feed %s: its error could not be recorded either", feed_id)
    return outcome


def ingest_one(
    settings: Settings,
    feed_id: int,
    now: datetime | None = None,
    on_new_papers: NewPapersHook | None = None,
) -> FeedOutcome:
    """Fetch one feed: read it, download and parse with no transaction open (a slow
    server must not hold SQLite's write lock), then merge and record in one."""
    with db.session_scope(settings, read_only=True) as session:
        feed = get_feed(session, feed_id)
        request = (feed.url, feed.kind, feed.etag, feed.last_modified)
    prepared = _prepare(settings, *request)
    for attempt in range(3):
        try:
            with db.session_scope(settings) as session:
                feed = get_feed(session, feed_id)
                return _store(session, feed, prepared, now, on_new_papers)
        except IntegrityError:
            # Two workers inserted the same new paper at once; the retry sees it stored.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
