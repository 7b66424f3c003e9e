"""One paper however many feeds and versions it was seen in: merge records into ``papers``.

Records are merged by canonical key (``arxiv:ID``, else ``doi:…``, else ``url:…``).
A paper's ``first_seen_at`` is set once, when we first store it, and is what
digests are built from; replacements (arXiv "replace" announcements) update a
stored paper but never make it new again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.ingest.sources.base import PaperRecord
from digest.store.models import Feed, Paper

#: Called with the papers a merge stored for the first time (flushed, so they have ids):
#: the pipeline computes their sentence embeddings there when the semantic extra is in.
NewPapersHook = Callable[[Session, Sequence[Paper]], None]

#: Fields a newer version of a paper replaces, and a later sighting fills in when empty.
#: (``published_at`` is not one: it is the earliest date any source gives, so a
#: replacement announced weeks later does not make an old paper look recent.)
_TEXT_FIELDS = ("title", "abstract", "authors")
_FILL_FIELDS = ("primary_category", "doi", "url", "pdf_url", "hf_url")


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


def merge_records(
    session: Session,
    records: Iterable[PaperRecord],
    now: datetime,
    on_new_papers: NewPapersHook | None = None,
    *,
    feed: Feed | None = None,
) -> MergeCounts:
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
    if on_new_papers is not None and new_papers:
        on_new_papers(session, new_papers)
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
        primary_category=record.primary_category or next(iter(record.categories), None),
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
