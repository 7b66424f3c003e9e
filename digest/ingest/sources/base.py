"""What every source module produces: normalised paper records.

A source module turns one HTTP response body into a :class:`FeedParseResult`.
It does no I/O. Normalisation rules (ARCHITECTURE.md) are applied here, so
``digest.ingest.merge`` only merges and stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class PaperRecord:
    """One paper as one feed describes it, already normalised.

    ``key`` is the canonical identity: ``arxiv:<id without version>`` where there
    is an arXiv id, else ``doi:<lower-cased DOI>``, else ``url:<entry link>``.
    """

    key: str
    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    primary_category: str | None = None
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    url: str | None = None
    pdf_url: str | None = None
    hf_url: str | None = None
    upvotes: int | None = None
    comments: int | None = None
    published_at: datetime | None = None  # aware UTC
    updated_at: datetime | None = None  # aware UTC
    source: str = ""  # "arxiv", "hf", or a feed host for generic RSS
    # arXiv RSS announce type: "new", "cross", "replace", "replace-cross"; None elsewhere.
    # Replacements update a stored paper but never count as new papers.
    announce_type: str | None = None

    @property
    def is_replacement(self) -> bool:
        return self.announce_type in ("replace", "replace-cross")


@dataclass
class FeedParseResult:
    papers: list[PaperRecord]
    # Entries we could not use, each with the reason (kept on the feed as a warning).
    skipped: list[str] = field(default_factory=list)
    title: str | None = None
