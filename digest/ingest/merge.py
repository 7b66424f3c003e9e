"""One paper however many feeds and versions it was seen in: merge records into ``papers``.

Records are merged by canonical key (``arxiv:ID``, else ``doi:…``, else ``url:…``).
A paper's ``first_seen_at`` is set once, when we first store it, and is what
digests are built from; replacements (arXiv "replace" announcements) update a
stored paper but never make it new again.

A source is authoritative only for what it owns (ARCHITECTURE.md): arXiv's own feeds
for a paper's text, authors, categories, dates and versions; Hugging Face for upvotes
and comments; anything else fills fields that are empty and never overwrites a value
a more authoritative source set, nor moves an arXiv paper's version. Which source
set each field is kept in ``Paper.field_sources`` (``digest papers show``), so an
RSS item naming ``arXiv:<id>v999`` cannot put its text under arXiv's link.
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
#: Fields Hugging Face owns; every other field is arXiv's.
_HF_FIELDS = frozenset({"upvotes", "comments", "hf_url"})
#: Every field whose setter is recorded in ``Paper.field_sources``.
TRACKED_FIELDS = (
    "version",
    *_TEXT_FIELDS,
    "categories",
    *_FILL_FIELDS,
    "upvotes",
    "comments",
    "published_at",
    "updated_at",
)
#: How much a source's word counts, by its class ("arxiv", "hf" or "feed"): for the
#: fields Hugging Face owns, and for all the others.
_RANK = {"arxiv": (2, 3), "hf": (3, 2), "feed": (1, 1)}
_ARXIV_KINDS = ("arxiv-rss", "arxiv-api", "arxiv")
_HF_KINDS = ("hf-daily", "hf")


def source_label(record: PaperRecord, feed: Feed | None) -> str:
    """What ``field_sources`` records: ``<feed kind>:<feed id>``, or the record's source
    tag when it came from no feed row (sample data, tests)."""
    if feed is not None and feed.id is not None:
        return f"{feed.kind.value}:{feed.id}"
    return record.source or "feed"


def source_class(label: str) -> str:
    """``arxiv``, ``hf`` or ``feed`` for a ``field_sources`` label."""
    kind = label.split(":", 1)[0]
    if kind in _ARXIV_KINDS:
        return "arxiv"
    if kind in _HF_KINDS:
        return "hf"
    return "feed"


def _rank(source: str, name: str) -> int:
    return _RANK[source][0 if name in _HF_FIELDS else 1]


def _stored_class(paper: Paper, name: str) -> str:
    """Who set a stored field: as recorded, or (a paper stored before that was kept)
    the most authoritative source the paper was seen in."""
    label = (paper.field_sources or {}).get(name)
    if label is not None:
        return source_class(label)
    seen = set(paper.sources or [])
    candidates: list[str] = [c for c in ("arxiv", "hf") if c in seen] or ["feed"]
    return max(candidates, key=lambda c: _rank(c, name))


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
            paper = _new_paper(record, now, source_label(record, feed))
            session.add(paper)
            new_papers.append(paper)
            counts.new += 1
        elif _apply(paper, record, now, source_label(record, feed)):
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


def _new_paper(record: PaperRecord, now: datetime, label: str) -> Paper:
    paper = Paper(
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
    if source_class(label) == "feed" and record.arxiv_id:
        # A generic feed names an arXiv version it cannot vouch for: arXiv will say.
        paper.version = None
    paper.field_sources = {name: label for name in TRACKED_FIELDS if _present(getattr(paper, name))}
    return paper


def _present(value: object) -> bool:
    return value is not None and value != "" and value != []


def _apply(paper: Paper, record: PaperRecord, now: datetime, label: str) -> bool:
    """Merge one sighting into a stored paper; True if anything the reader sees changed.

    Each field is written only by a source at least as authoritative as the one that
    set it (an empty field by anyone); at equal authority, text follows a newer
    version, counts the latest sighting, dates the earliest publication and the
    latest update.
    """
    changed = False
    incoming = source_class(label)
    field_sources = dict(paper.field_sources or {})

    def outranks(name: str) -> int:
        """>0: the record's source outranks the field's setter; 0: equal; <0: lower."""
        if not _present(getattr(paper, name)):
            return 1
        return _rank(incoming, name) - _rank(_stored_class(paper, name), name)

    def put(name: str, value: object) -> None:
        nonlocal changed
        if value is None:
            return
        if getattr(paper, name) != value:
            setattr(paper, name, value)
            changed = True
        if name in TRACKED_FIELDS:
            field_sources[name] = label

    # Only arXiv (or whoever already numbered a paper arXiv does not know) moves versions.
    newer_version = (
        record.version is not None
        and not (incoming == "feed" and paper.arxiv_id)
        and (paper.version or 0) < record.version
        and outranks("version") >= 0
    )
    if newer_version:
        put("version", record.version)
    for name in (*_TEXT_FIELDS, *_FILL_FIELDS):
        value = getattr(record, name)
        rank = outranks(name)
        if value and (rank > 0 or (rank == 0 and newer_version)):
            put(name, list(value) if isinstance(value, list) else value)
    if record.categories:
        rank = outranks("categories")
        if rank > 0 and _present(paper.categories):
            put("categories", list(record.categories))  # a better source's own list
        elif rank >= 0:
            put("categories", _union(paper.categories, record.categories))
    if record.updated_at:
        rank = outranks("updated_at")
        if rank > 0 or (rank == 0 and paper.updated_at and record.updated_at > paper.updated_at):
            put("updated_at", record.updated_at)
    if record.published_at:
        rank = outranks("published_at")
        if rank > 0 or (
            rank == 0 and paper.published_at and record.published_at < paper.published_at
        ):
            put("published_at", record.published_at)
    # Hugging Face counts move every hour: the latest sighting is the truth.
    for name in ("upvotes", "comments"):
        if getattr(record, name) is not None and outranks(name) >= 0:
            put(name, getattr(record, name))
    if record.arxiv_id and not paper.arxiv_id:
        put("arxiv_id", record.arxiv_id)
        put("key", record.key)  # found by DOI: the arXiv id is the better key
    if record.source:
        put("sources", _union(paper.sources, [record.source]))
    if field_sources != (paper.field_sources or {}):
        paper.field_sources = field_sources
    paper.last_seen_at = now
    return changed


def _union(a: Sequence[str], b: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))
