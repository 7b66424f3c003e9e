"""Fetch feeds, normalise their entries and merge them into the papers table.

The same paper seen in several feeds, or as v1 and v2, is one row: records are
merged by canonical key (``arxiv:ID``, else ``doi:…``, else ``url:…``). A paper's
``first_seen_at`` is set once, when we first store it, and is what digests are
built from; replacements (arXiv "replace" announcements) update a stored paper
but never make it new again.

A feed that fails (network, HTTP status, not a feed, malformed or hostile XML)
has its error recorded on the feed row; its papers are untouched and the other
feeds go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest import db
from digest.config import Settings
from digest.fetch import FetchError, fetch
from digest.models import Feed, FeedKind, Paper, utcnow
from digest.sources import detect_kind, parse_feed
from digest.sources.base import FeedFormatError, FeedParseResult, PaperRecord

log = logging.getLogger(__name__)

#: Fields a newer version of a paper replaces, and a later sighting fills in when empty.
#: (``published_at`` is not one: it is the earliest date any source gives, so a
#: replacement announced weeks later does not make an old paper look recent.)
_TEXT_FIELDS = ("title", "abstract", "authors")
_FILL_FIELDS = ("primary_category", "doi", "url", "pdf_url", "hf_url")


class FeedError(ValueError):
    """A feed cannot be added or found; the message says why."""


@dataclass
class MergeCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    new_paper_ids: list[int] = field(default_factory=list)

    def __iadd__(self, other: MergeCounts) -> MergeCounts:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.new_paper_ids += other.new_paper_ids
        return self


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


# --- feeds ---------------------------------------------------------------------------


_DEFAULT_PORTS = {"http": 80, "https": 443}


def validate_feed_url(url: str) -> str:
    """The URL in the one form we store and compare, or :class:`FeedError` saying why not.

    Scheme and host are lower-cased, a default port and a ``#fragment`` (never sent to
    the server) dropped, so one feed cannot be added twice under two spellings.
    """
    url = url.strip()
    if any(ch.isspace() for ch in url):
        raise FeedError(f"feed URL contains a space (write it as %20): {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FeedError(f"not a valid URL ({exc}): {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FeedError(f"feed URL must start with http:// or https://, got {url!r}")
    host = parts.hostname
    if not host:
        raise FeedError(f"feed URL has no host: {url!r}")
    host = f"[{host}]" if ":" in host else host
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def add_feed(
    session: Session,
    url: str,
    kind: str = "auto",
    name: str | None = None,
    *,
    settings: Settings | None = None,
) -> Feed:
    """Store a new feed. With ``settings``, fetch it once first: a URL that does not
    give a feed of the right kind is refused with the reason, and ``auto`` sniffs the
    body when the URL alone does not say what the feed is."""
    url = validate_feed_url(url)
    if session.scalar(select(Feed).where(Feed.url == url)) is not None:
        raise FeedError(f"a feed with URL {url} already exists")
    feed_kind = None if kind == "auto" else _feed_kind(kind)
    if settings is not None:
        feed_kind, _ = check_feed(settings, url, feed_kind.value if feed_kind else "auto")
    feed_kind = feed_kind or detect_kind(url)
    feed = Feed(url=url, kind=feed_kind, name=(name or _default_name(url, feed_kind))[:200])
    session.add(feed)
    session.flush()
    return feed


def _feed_kind(kind: str) -> FeedKind:
    try:
        return FeedKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in FeedKind)
        raise FeedError(f"unknown feed kind {kind!r}: use auto, {choices}") from None


def _default_name(url: str, kind: FeedKind) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if kind is FeedKind.ARXIV_RSS and tail:
        return f"arXiv {tail}"
    if kind is FeedKind.HF_DAILY:
        return "Hugging Face Daily Papers"
    if kind is FeedKind.ARXIV_API:
        return "arXiv API query"
    return host or url


def get_feed(session: Session, feed_id: int) -> Feed:
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise FeedError(f"no feed with id {feed_id}")
    return feed


def remove_feed(session: Session, feed_id: int) -> Feed:
    """Remove a feed; the papers it brought stay (other feeds or digests may refer to them)."""
    feed = get_feed(session, feed_id)
    session.delete(feed)
    return feed


def check_feed(
    settings: Settings, url: str, kind: str = "auto"
) -> tuple[FeedKind, FeedParseResult]:
    """Fetch and parse without storing anything: what `digest feeds check` shows."""
    url = validate_feed_url(url)
    result = fetch(url, settings)
    assert result.body is not None  # no validators were sent, so never a 304
    feed_kind = detect_kind(url, result.body) if kind == "auto" else _feed_kind(kind)
    return feed_kind, parse_feed(feed_kind, result.body, url, result.content_type)


# --- merging -------------------------------------------------------------------------


def merge_records(session: Session, records: Iterable[PaperRecord], now: datetime) -> MergeCounts:
    """Upsert records into ``papers``; returns how many were new, updated or unchanged."""
    by_key: dict[str, PaperRecord] = {}
    for record in records:
        by_key[record.key] = (
            _combine(by_key[record.key], record) if record.key in by_key else record
        )
    counts = MergeCounts()
    if not by_key:
        return counts
    existing = _existing_papers(session, list(by_key.values()))
    new_papers: list[Paper] = []
    for key, record in by_key.items():
        paper = existing.get(key) or _same_doi(existing, record)
        if paper is None:
            if record.is_replacement:
                # A revision of a paper we never stored is old news: not a new paper.
                counts.unchanged += 1
                continue
            paper = _new_paper(record, now)
            session.add(paper)
            new_papers.append(paper)
            counts.new += 1
        elif _apply(paper, record, now):
            counts.updated += 1
        else:
            counts.unchanged += 1
    session.flush()
    counts.new_paper_ids = [p.id for p in new_papers]
    _embed(session, new_papers)
    return counts


def _same_doi(existing: dict[str, Paper], record: PaperRecord) -> Paper | None:
    """The stored paper with the record's DOI, unless it is a different arXiv paper.

    A journal feed may store a paper under its DOI before arXiv's record of it (which
    names the DOI) arrives, or after: either order must give one paper.
    """
    paper = existing.get(f"doi:{record.doi}") if record.doi else None
    if paper is None or (record.arxiv_id and paper.arxiv_id not in (None, record.arxiv_id)):
        return None
    return paper


def _existing_papers(session: Session, records: Sequence[PaperRecord]) -> dict[str, Paper]:
    keys = [r.key for r in records]
    dois = [r.doi for r in records if r.doi]
    found: dict[str, Paper] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for paper in session.scalars(select(Paper).where(Paper.key.in_(chunk))):
            found[paper.key] = paper
    for start in range(0, len(dois), 500):
        chunk = dois[start : start + 500]
        for paper in session.scalars(select(Paper).where(Paper.doi.in_(chunk))):
            found.setdefault(f"doi:{paper.doi}", paper)
    return found


def _combine(a: PaperRecord, b: PaperRecord) -> PaperRecord:
    """Two records of one paper in one feed: keep the newer version, fill gaps."""
    newer, older = (b, a) if (b.version or 0) >= (a.version or 0) else (a, b)
    for name in (*_TEXT_FIELDS, *_FILL_FIELDS, "upvotes", "comments", "updated_at"):
        if not getattr(newer, name) and getattr(older, name):
            setattr(newer, name, getattr(older, name))
    newer.categories = _union(older.categories, newer.categories)
    if older.announce_type in ("new", "cross"):
        newer.announce_type = older.announce_type
    return newer


def _new_paper(record: PaperRecord, now: datetime) -> Paper:
    return Paper(
        key=record.key,
        arxiv_id=record.arxiv_id,
        version=record.version,
        doi=record.doi,
        title=record.title,
        abstract=record.abstract,
        authors=list(record.authors),
        categories=list(record.categories),
        primary_category=record.primary_category or (record.categories[:1] or [None])[0],
        url=record.url,
        pdf_url=record.pdf_url,
        hf_url=record.hf_url,
        upvotes=record.upvotes,
        comments=record.comments,
        sources=[record.source] if record.source else [],
        published_at=record.published_at,
        updated_at=record.updated_at,
        first_seen_at=now,
        last_seen_at=now,
    )


def _apply(paper: Paper, record: PaperRecord, now: datetime) -> bool:
    """Merge one sighting into a stored paper; True if anything the reader sees changed."""
    changed = False

    def put(name: str, value: object) -> None:
        nonlocal changed
        if value is not None and getattr(paper, name) != value:
            setattr(paper, name, value)
            changed = True

    newer_version = record.version is not None and (paper.version or 0) < record.version
    if newer_version:
        put("version", record.version)
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if value and (newer_version or not getattr(paper, name)):
            put(name, list(value) if isinstance(value, list) else value)
    for name in _FILL_FIELDS:
        value = getattr(record, name)
        if value and (newer_version or not getattr(paper, name)):
            put(name, value)
    if record.updated_at and (paper.updated_at is None or record.updated_at > paper.updated_at):
        put("updated_at", record.updated_at)
    # Hugging Face counts move every hour: the latest sighting is the truth.
    put("upvotes", record.upvotes)
    put("comments", record.comments)
    if record.arxiv_id and not paper.arxiv_id:
        put("arxiv_id", record.arxiv_id)
        put("key", record.key)  # found by DOI: the arXiv id is the better key
    if record.published_at and (
        paper.published_at is None or record.published_at < paper.published_at
    ):
        put("published_at", record.published_at)
    put("categories", _union(paper.categories, record.categories))
    if record.source:
        put("sources", _union(paper.sources, [record.source]))
    paper.last_seen_at = now
    return changed


def _union(a: Sequence[str], b: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


def _embed(session: Session, papers: Sequence[Paper]) -> None:
    """Store sentence embeddings for new papers when the `semantic` extra is installed."""
    if not papers:
        return
    try:
        from digest import semantic
    except ImportError:
        return
    if semantic.available():
        semantic.embed_papers(papers)


# --- fetching ------------------------------------------------------------------------


def fetch_feed(
    session: Session, settings: Settings, feed: Feed, now: datetime | None = None
) -> FeedOutcome:
    """Fetch one feed and merge its papers; errors end up on the feed row, not raised.

    ``now`` (default: the clock once the response is in) becomes the new papers'
    ``first_seen_at``. It is read under :func:`digest.db.lock_paper_stamps`, after
    the download, so no digest window closes between the stamp and the commit.
    """
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name, status="ok")
    try:
        result = fetch(feed.url, settings, etag=feed.etag, last_modified=feed.last_modified)
        db.lock_paper_stamps(session, exclusive=False)
        now = now or utcnow()
        if result.not_modified:
            outcome.status = "not-modified"
        else:
            assert result.body is not None
            _merge_body(session, feed, result.body, now, outcome, result.content_type)
            # Validators are stored only once the body is safely merged, so a failed
            # merge is fetched in full next time instead of answered with a 304.
            feed.etag, feed.last_modified = result.etag, result.last_modified
    except (FetchError, FeedFormatError) as exc:
        outcome.status, outcome.error = "error", str(exc)
    except IntegrityError:
        raise  # another worker stored the same paper at the same moment: the caller retries
    except Exception as exc:
        log.exception("feed %s (%s) failed", feed.id, feed.url)
        outcome.status, outcome.error = "error", f"internal error: {type(exc).__name__}: {exc}"
    now = now or utcnow()
    feed.last_fetched_at = now
    _record(feed, outcome, now)
    return outcome


def ingest_body(session: Session, feed: Feed, body: bytes, now: datetime) -> FeedOutcome:
    """Merge a body we already have (bundled sample data, a saved response) as if fetched."""
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name, status="ok")
    feed.last_fetched_at = now
    try:
        _merge_body(session, feed, body, now, outcome)
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
) -> None:
    parsed = parse_feed(feed.kind, body, feed.url, content_type)
    with session.begin_nested():
        counts = merge_records(session, parsed.papers, now)
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
) -> list[FeedOutcome]:
    """Fetch every enabled feed (or the given ones), each in its own transaction."""
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:
        query = select(Feed.id).order_by(Feed.id)
        query = query.where(Feed.id.in_(feed_ids)) if feed_ids else query.where(Feed.enabled)
        ids = list(session.scalars(query))
    outcomes = []
    for feed_id in ids:
        outcome = ingest_one(settings, feed_id, now)
        outcomes.append(outcome)
        if on_feed_done:
            on_feed_done(outcome)
    return outcomes


def ingest_one(settings: Settings, feed_id: int, now: datetime | None = None) -> FeedOutcome:
    for attempt in range(3):
        try:
            with db.session_scope(settings) as session:
                return fetch_feed(session, settings, get_feed(session, feed_id), now)
        except IntegrityError:
            # Two workers inserted the same new paper at once; the retry sees it stored.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
