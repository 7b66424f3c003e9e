"""The seed papers (tests/data/seed_papers.json) and a plain paper object the matcher accepts.

The matcher reads papers by attribute, so tests and benches hand it this dataclass
instead of ORM rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SEED_PATH = Path(__file__).resolve().parent.parent / "data" / "seed_papers.json"


def load_seed() -> list[dict[str, str]]:
    """The 61 real titles and abstracts, in file order."""
    return json.loads(SEED_PATH.read_text())


@dataclass
class PaperLike:
    id: int
    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    upvotes: int | None = None
    first_seen_at: datetime | None = None
    published_at: datetime | None = None
    embedding: bytes | None = None
    arxiv_id: str | None = None
