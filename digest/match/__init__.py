"""Matching: topics (the query language) against a period's papers, ranked and explained.

``text`` cuts words the same way for queries and papers; ``query`` parses a topic
into a tree of ``nodes``; ``index`` indexes one period's papers once; ``evaluate``
finds and scores a query's papers on it; ``explain`` says why one matched;
``rank`` builds a reader's list from their topics; ``backtest`` runs a query over
the stored papers of the last days; ``semantic`` is the optional embeddings extra;
``naive`` is the slow reference the tests and benchmarks compare against.
"""

from digest.match.backtest import Backtest, BacktestResult
from digest.match.evaluate import Hit, evaluate, in_passing
from digest.match.explain import explain
from digest.match.index import PaperIndex, PaperLike, build_index, positions
from digest.match.naive import naive_matches, tokenise
from digest.match.rank import (
    TRENDING,
    MatchedPaper,
    TopicHit,
    TopicSpec,
    count_matches,
    match_many,
    match_subscriber,
    trending,
)

__all__ = [
    "TRENDING",
    "Backtest",
    "BacktestResult",
    "Hit",
    "MatchedPaper",
    "PaperIndex",
    "PaperLike",
    "TopicHit",
    "TopicSpec",
    "build_index",
    "count_matches",
    "evaluate",
    "explain",
    "in_passing",
    "match_many",
    "match_subscriber",
    "naive_matches",
    "positions",
    "tokenise",
    "trending",
]
