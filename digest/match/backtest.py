"""Backtest topics: what a query would have sent over the stored papers of the last N days.

`digest topics test` and the manage page's "would have matched" counts both use
:class:`Backtest`, so the number a reader sees next to a topic is the number the
operator sees in the CLI. One window indexes its papers once; every query tested
against it is a few big-integer operations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.match import query as q
from digest.match import semantic
from digest.match.evaluate import evaluate, in_passing
from digest.match.index import PaperIndex, build_index
from digest.match.nodes import Query, Text, leaves
from digest.match.rank import MatchedPaper, TopicSpec, match_subscriber
from digest.store.models import Paper


@dataclass(frozen=True)
class BacktestResult:
    query: Query
    days: int
    papers_considered: int
    matched: int  # every paper the query matches in the window
    in_passing: int  # papers left out because the words are there only in passing
    hint: str | None  # what to do about those, or None
    best: list[MatchedPaper]  # the best ``limit`` matches, digest order


class Backtest:
    """The stored papers first seen in the last ``days`` days, indexed once."""

    def __init__(self, session: Session, days: int = 7, now: datetime | None = None) -> None:
        self.days = days
        since = (now or utcnow()) - timedelta(days=days)
        self.papers = list(
            session.scalars(
                select(Paper).where(Paper.first_seen_at >= since).order_by(Paper.first_seen_at)
            )
        )
        self._session = session
        self._index: PaperIndex | None = None

    def _index_for(self, parsed: Query) -> PaperIndex:
        if self._index is None or (parsed.is_semantic and self._index.like_lookup is None):
            self._index = build_index(self.papers, like_lookup=self._like_lookup(parsed))
        return self._index

    def _like_lookup(self, parsed: Query) -> Callable[[str], bytes | None] | None:
        if not parsed.is_semantic:
            return None

        return semantic.like_lookup(self._session)

    def count(self, query: str | Query) -> int:
        """How many papers of the window the query matches."""
        parsed = query if isinstance(query, Query) else q.parse(query)
        return len(evaluate(self._index_for(parsed), parsed))

    def run(self, query: str | Query, limit: int = 20, label: str = "") -> BacktestResult:
        parsed = query if isinstance(query, Query) else q.parse(query)
        index = self._index_for(parsed)
        total = len(evaluate(index, parsed))
        passing = len(in_passing(index, parsed))
        spec = TopicSpec(None, label or parsed.text, parsed)
        return BacktestResult(
            query=parsed,
            days=self.days,
            papers_considered=len(self.papers),
            matched=total,
            in_passing=passing,
            hint=passing_hint(parsed, passing),
            best=match_subscriber(index, [spec], limit),
        )


def passing_hint(parsed: Query, count: int) -> str | None:
    """What to do about the papers left out as passing mentions, or None."""
    words = [
        leaf.display
        for leaf in leaves(parsed.root, positive_only=True)
        if isinstance(leaf, Text) and not leaf.quoted
    ]
    if not count or not words:
        return None
    papers = "1 more paper mentions" if count == 1 else f"{count} more papers mention"
    if len(words) == 1:
        how = f'quote the word ("{words[0]}")'
    else:
        how = f'quote one of the words (e.g. "{words[0]}")'
    return f"{papers} it only in passing; {how} to include {'it' if count == 1 else 'them'}"


__all__ = ["Backtest", "BacktestResult", "passing_hint"]
