"""A reader's digest from their topics: the union over topics, each paper once, best first.

A paper's score is its best topic's score plus a little for each further topic
it matches (:data:`~digest.match.weights.EXTRA_TOPIC_BONUS`); ties are broken by
recency (first seen, then published: the papers of one fetch share a first-seen
time). Topics written identically by many readers are ranked once per index
(:func:`match_many`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from digest.match import query as q
from digest.match.evaluate import Scorer, bits_of, or_all, scorer_for
from digest.match.explain import explain
from digest.match.index import PaperIndex, PaperLike
from digest.match.weights import EXTRA_TOPIC_BONUS

log = logging.getLogger(__name__)


class TopicHit:
    """Why one paper matched one topic.

    ``terms`` (words to highlight, as they appear in the paper) and ``reason``
    (one human line, e.g. 'title matches "unlearning"') are worked out when first
    read: a batch ranks papers for 100,000 readers, but only the digest being
    rendered needs its explanations.
    """

    __slots__ = ("_explain", "_reason", "_terms", "label", "score", "topic_id")

    def __init__(
        self,
        topic_id: int | None,
        label: str,
        score: float,
        terms: list[str] | None = None,
        reason: str = "",
        *,
        explain: Callable[[], tuple[list[str], str]] | None = None,
    ) -> None:
        self.topic_id = topic_id
        self.label = label
        self.score = score
        self._terms = terms
        self._reason = reason
        self._explain = explain

    def _resolve(self) -> None:
        if self._explain is not None:
            self._terms, self._reason = self._explain()
            self._explain = None

    @property
    def terms(self) -> list[str]:
        self._resolve()
        return self._terms if self._terms is not None else []

    @property
    def reason(self) -> str:
        self._resolve()
        return self._reason

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopicHit):
            return NotImplemented
        return (self.topic_id, self.label, self.score, self.terms, self.reason) == (
            other.topic_id,
            other.label,
            other.score,
            other.terms,
            other.reason,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"TopicHit(topic_id={self.topic_id!r}, label={self.label!r}, score={self.score!r}, "
            f"terms={self.terms!r}, reason={self.reason!r})"
        )


class MatchedPaper:
    """One paper of a reader's digest, with the topics it matched.

    ``hits`` is best first; ``hits[0]`` is the topic the paper is shown under. Like
    a :class:`TopicHit`'s explanation it may be worked out on first read.
    """

    __slots__ = ("_hits", "_make_hits", "paper", "score")

    def __init__(
        self,
        paper: PaperLike,  # the pipeline passes digest.store.models.Paper
        score: float,
        hits: list[TopicHit] | None = None,
        *,
        make_hits: Callable[[], list[TopicHit]] | None = None,
    ) -> None:
        self.paper = paper
        self.score = score
        self._hits = hits
        self._make_hits = make_hits

    @property
    def hits(self) -> list[TopicHit]:
        if self._hits is None:
            self._hits = self._make_hits() if self._make_hits is not None else []
            self._make_hits = None
        return self._hits

    def __repr__(self) -> str:
        return f"MatchedPaper(paper={self.paper!r}, score={self.score!r}, hits={self.hits!r})"

    @property
    def best(self) -> TopicHit:
        return self.hits[0]

    @property
    def terms(self) -> list[str]:
        """Words to highlight: those of every matching topic."""
        return list(dict.fromkeys(t for h in self.hits for t in h.terms))

    @property
    def reason(self) -> str:
        """One line: the best topic's reason, then the other topics it is also in."""
        others = [h.label for h in self.hits[1:]]
        if not others:
            return self.best.reason
        return self.best.reason + "; also in " + ", ".join(f'"{label}"' for label in others)


@dataclass(frozen=True)
class TopicSpec:
    """One saved topic as the matcher needs it."""

    id: int | None
    label: str
    query: str | q.Query

    def parsed(self) -> q.Query:
        return self.query if isinstance(self.query, q.Query) else q.parse(self.query)


TRENDING = q.Query("trending", q.Trending())


def trending(index: PaperIndex, max_papers: int) -> list[MatchedPaper]:
    """The period's most upvoted papers (those with any upvotes), for topic-less readers."""
    return match_subscriber(index, [TopicSpec(None, "Trending", TRENDING)], max_papers)


def match_subscriber(
    index: PaperIndex,
    topics: Sequence[TopicSpec],
    max_papers: int,
    *,
    _cache: dict[tuple[q.Node, int], _TopList] | None = None,
) -> list[MatchedPaper]:
    """One reader's papers: the union over their topics, each paper once, best first.

    A paper's score is its best topic's score plus a little for each further topic
    it matches; it is shown under its best topic and lists the others. A reader
    with no topics gets the trending papers. A topic whose stored query no longer
    parses is skipped with a warning (never the whole digest).
    """
    if max_papers <= 0:
        return []
    if not topics:
        return trending(index, max_papers)
    # Scorers are made (or fetched) only where needed: a topic many readers share has
    # its top list cached, and most readers need nothing else from it.
    scorers: list[tuple[int, TopicSpec, q.Node]] = []
    for order, spec in enumerate(topics):
        try:
            parsed = spec.parsed()
        except q.QueryError as exc:
            log.warning("topic %s (%r) skipped: %s", spec.id, spec.query, exc)
            continue
        scorers.append((order, spec, parsed.root))
    # Each topic's own best k (shared between readers with the same topic), then the
    # union ranked on final scores.
    topic_lists: list[_TopList] = []
    for _order, _spec, root in scorers:
        key = (root, max_papers)
        entry = None if _cache is None else _cache.get(key)
        if entry is None:
            entry = _TopList.of(scorer_for(index, root), max_papers)
            if _cache is not None:
                _cache[key] = entry
        topic_lists.append(entry)
    candidates = 0
    for entry in topic_lists:
        candidates |= entry.mask
    ranked = _finals(index, scorers, topic_lists, candidates)
    if len(scorers) > 1 and len(ranked) >= max_papers:
        # A paper outside every topic's own top k can still make the union's top k on
        # the bonus for matching further topics. Its final score is at most its best
        # topic score plus the bonus for the j topics it matches, and must reach the
        # k-th best final score found so far: look for it among the papers matching
        # j topics or more, down to that score less the bonus.
        kth_final = -ranked[max_papers - 1][0]
        at_least = [0] * (len(scorers) + 1)  # at_least[j]: papers matching >= j topics
        for entry in topic_lists:
            for j in range(len(scorers), 1, -1):
                at_least[j] |= at_least[j - 1] & entry.matched
            at_least[1] |= entry.matched
        # Such a paper is in no list, so every topic it matches has a full list and
        # scores it at most that list's last score.
        ceiling = max(entry.kth for entry in topic_lists)
        more = 0
        for j in range(2, len(scorers) + 1):
            mask = at_least[j] & ~candidates
            floor = kth_final - EXTRA_TOPIC_BONUS * (j - 1) - 1e-9
            if not mask or ceiling < floor:
                continue
            for (_order, _spec, root), entry in zip(scorers, topic_lists, strict=True):
                if entry.kth >= floor and entry.matched & mask:
                    for _score, pos in scorer_for(index, root).above(floor, mask):
                        more |= 1 << pos
        if more:
            ranked += _finals(index, scorers, topic_lists, more)
            ranked.sort()
    return [
        MatchedPaper(
            index.papers[pos],
            round(-neg_total, 4),
            make_hits=functools.partial(_hits, index, scorers, topic_lists, pos),
        )
        for neg_total, _neg_recency, pos in ranked[:max_papers]
    ]


def count_matches(index: PaperIndex, topics: Sequence[TopicSpec]) -> int:
    """How many papers match any of the topics (no topics: the trending papers).

    What a digest capped at the reader's maximum leaves out is this less what it
    shows; the email says so rather than drop them without a word. Cheap: a few
    big-integer operations over the leaf sets :func:`match_subscriber` cached on
    the index (no scorer is built).
    """
    roots: list[q.Node] = []
    for spec in topics or [TopicSpec(None, "Trending", TRENDING)]:
        try:
            roots.append(spec.parsed().root)
        except q.QueryError:
            continue  # skipped by match_subscriber too
    return or_all(bits_of(index, root)[1] for root in roots).bit_count()


@dataclass(frozen=True, slots=True)
class _TopList:
    """One topic's own best k on one index, kept for every reader with that topic."""

    matched: int  # every match
    known: dict[int, float]  # stored position -> score, for the best k
    mask: int  # the best k as a bitset
    kth: float  # a match not in a full list scores at most this; -inf if not full

    @classmethod
    def of(cls, scorer: Scorer, k: int) -> _TopList:
        best = scorer.top(k)
        mask = 0
        for _score, pos in best:
            mask |= 1 << pos
        kth = best[-1][0] if len(best) >= k else -math.inf
        return cls(scorer.matched, {pos: score for score, pos in best}, mask, kth)


def _finals(
    index: PaperIndex,
    scorers: list[tuple[int, TopicSpec, q.Node]],
    topic_lists: list[_TopList],
    candidates: int,
) -> list[tuple[float, float, int]]:
    """(-final score, -recency, stored position) for the candidates (a bitset), sorted:
    digest order.

    A paper's final score is its best topic score plus a bonus per further topic it
    matches. Scores come from the topics' own top lists where known; a topic whose
    list is full and ends at or below the best score found cannot raise it, so it
    only counts towards the bonus.
    """
    best: dict[int, float] = {}
    count: dict[int, int] = {}
    unknown: list[tuple[int, q.Node, float]] = []
    for (_order, _spec, root), entry in zip(scorers, topic_lists, strict=True):
        if entry.mask & candidates:
            for pos, score in entry.known.items():
                if candidates >> pos & 1:
                    old = best.get(pos)
                    if old is None:
                        best[pos] = score
                        count[pos] = 1
                    else:
                        count[pos] += 1
                        if score > old:
                            best[pos] = score
        others = candidates & entry.matched & ~entry.mask
        while others:
            low = others & -others
            pos = low.bit_length() - 1
            others ^= low
            unknown.append((pos, root, entry.kth))
    minus_inf = -math.inf
    for pos, root, kth in unknown:
        count[pos] = count.get(pos, 0) + 1
        old = best.get(pos, minus_inf)
        if kth >= old:
            score = scorer_for(index, root).score(pos)
            if score > old:
                best[pos] = score
    recency = index.recency
    bonus = EXTRA_TOPIC_BONUS
    out = [(-(score + bonus * (count[pos] - 1)), -recency[pos], pos) for pos, score in best.items()]
    out.sort()
    return out


def _hits(
    index: PaperIndex,
    scorers: list[tuple[int, TopicSpec, q.Node]],
    topic_lists: list[_TopList],
    pos: int,
) -> list[TopicHit]:
    """The topics one kept paper matched, best first, each explained on demand."""
    bit = 1 << pos
    entries = []
    for (order, spec, root), entry in zip(scorers, topic_lists, strict=True):
        if entry.matched & bit:
            score = entry.known.get(pos)
            if score is None:
                score = scorer_for(index, root).score(pos)
            entries.append((score, order, spec, root))
    entries.sort(key=lambda e: (-e[0], e[1]))
    return [
        TopicHit(
            spec.id,
            spec.label,
            round(score, 4),
            explain=functools.partial(explain, index, pos, root),
        )
        for score, _order, spec, root in entries
    ]


K = TypeVar("K")


def match_many(
    index: PaperIndex, subscribers_topics: Iterable[tuple[K, Sequence[TopicSpec], int]]
) -> dict[K, list[MatchedPaper]]:
    """Batch entry point: ``(key, topics, max_papers)`` per subscriber -> their papers.

    Topics written identically by many readers are ranked once.
    """
    cache: dict[tuple[q.Node, int], _TopList] = {}
    out: dict[K, list[MatchedPaper]] = {}
    for key, topics, max_papers in subscribers_topics:
        if len(cache) > 50_000:  # ~3 KB each
            cache.clear()
        out[key] = match_subscriber(index, topics, max_papers, _cache=cache)
    return out
