"""A reader's steering, from replies to their digests, applied when their digest is ranked.

Two stored signals (``reader_signals``), both kept until the reader takes them back:

``mute-author``
    "mute author NAME": papers by that author never reach the reader's digests.
    Every topic (and the trending fallback) becomes ``(topic) AND NOT author:"NAME"``,
    so a muted paper neither shows nor counts as "more matched".
``less``
    "less 3": papers like paper 3 are demoted. We keep that paper's title words
    (stemmed, common words left out). A new paper is *like* it when it has at least
    half of those words (and at least two, unless the title has only one) in its
    title or abstract, or, with the semantic extra, when its abstract's similarity
    to the disliked one reaches :data:`~digest.match.semantic.LIKE_THRESHOLD`. A
    paper like a disliked one keeps :data:`LESS_FACTOR` of its score per such
    dislike, so it sinks below equally good papers but is not hidden: the reader's
    own topics still speak for it. The ranking asks for :data:`EXTRA_CANDIDATES`
    more papers than the reader's maximum, so demoted ones can be replaced.

:func:`keyword_query` is the other half of steering ("more 3" without the semantic
extra): a keyword topic built from a paper's title.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.core.caches import memoize
from digest.errors import QueryError
from digest.match import query as q
from digest.match import semantic
from digest.match import text as textmod
from digest.match.index import PaperIndex, PaperLike
from digest.match.rank import (
    TRENDING,
    MatchedPaper,
    TopicHit,
    TopicSpec,
    count_matches,
    match_subscriber,
)
from digest.store.models import Paper, ReaderSignal

MUTE = "mute-author"
LESS = "less"
KINDS = (MUTE, LESS)
#: Share of its score a paper like a disliked one keeps, per dislike.
LESS_FACTOR = 0.5
#: Share of a disliked paper's title words another paper needs to be "like" it.
LESS_OVERLAP = 0.5
#: How many more papers than the maximum are ranked when some may be demoted.
EXTRA_CANDIDATES = 20
#: Signals of one kind kept per reader; a newer one pushes out the oldest.
MAX_SIGNALS = 100
#: Words of a "more N" keyword topic.
KEYWORDS = 3
_NAME = re.compile(r"[^\w .'’-]+")


@dataclass(frozen=True)
class Dislike:
    terms: frozenset[str]
    embedding: bytes | None = None


@dataclass(frozen=True)
class Steering:
    muted: tuple[str, ...] = ()
    dislikes: tuple[Dislike, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.muted or self.dislikes)


NO_STEERING = Steering()


def clean_author(name: str) -> str:
    """A muted name as stored and matched: letters, spaces, dots, hyphens, apostrophes."""
    return " ".join(_NAME.sub(" ", name or "").split())[:120]


def author_node(name: str) -> q.Author | None:
    """The ``author:"NAME"`` leaf for a muted name, or None if it names nobody."""
    cleaned = clean_author(name).replace('"', "")
    if not cleaned:
        return None
    try:
        root = q.parse(f'author:"{cleaned}"').root
    except QueryError:
        return None
    return root if isinstance(root, q.Author) else None


def title_terms(title: str) -> frozenset[str]:
    """A paper's title words as a "less" signal keeps them: stemmed, no common words."""
    return frozenset(
        tok.term
        for tok in textmod.tokens(title or "")
        if len(tok.term) > 1 and not textmod.is_stop_word(tok.surface) and not tok.term.isdigit()
    )


@memoize(maxsize=8192)
def _paper_terms(title: str, abstract: str) -> frozenset[str]:
    # The same paper is in many readers' candidate lists of a batch: cut it into words once.
    return frozenset(tok.term for tok in textmod.tokens(f"{title}\n{abstract}"))


def is_like(dislike: Dislike, paper: PaperLike) -> bool:
    """Is ``paper`` like the disliked one (see the module docstring)?"""
    if dislike.terms:
        have = _paper_terms(str(paper.title or ""), str(paper.abstract or ""))
        need = math.ceil(len(dislike.terms) * LESS_OVERLAP)
        if len(dislike.terms) >= 2:
            need = max(2, need)
        if len(dislike.terms & have) >= need:
            return True
    embedding = getattr(paper, "embedding", None)
    if dislike.embedding and embedding and semantic.available():
        return semantic.similarity(dislike.embedding, embedding) >= semantic.LIKE_THRESHOLD
    return False


def steered_topics(topics: Sequence[TopicSpec], steering: Steering) -> list[TopicSpec]:
    """The reader's topics with their muted authors excluded (no topics: trending)."""
    muted = [node for node in (author_node(n) for n in steering.muted) if node is not None]
    if not muted:
        return list(topics)
    exclude = q.Not(muted[0] if len(muted) == 1 else q.Or(tuple(muted)))
    out: list[TopicSpec] = []
    for spec in topics or [TopicSpec(None, "Trending", TRENDING)]:
        try:
            parsed = spec.parsed()
        except QueryError:
            out.append(spec)  # skipped with a warning by match_subscriber, as before
            continue
        out.append(
            TopicSpec(spec.id, spec.label, q.Query(parsed.text, q.And((parsed.root, exclude))))
        )
    return out


def demote(matched: Sequence[MatchedPaper], steering: Steering, k: int) -> list[MatchedPaper]:
    """The best ``k`` after papers like a disliked one lost part of their score."""
    if not steering.dislikes:
        return list(matched[:k])
    scored: list[tuple[float, int, MatchedPaper]] = []
    for order, m in enumerate(matched):
        factor = 1.0
        for dislike in steering.dislikes:
            if is_like(dislike, m.paper):
                factor *= LESS_FACTOR
        scored.append((-m.score * factor, order, m))
    scored.sort(key=lambda item: (item[0], item[1]))
    out: list[MatchedPaper] = []
    for neg, _order, m in scored[:k]:
        if -neg == m.score:
            out.append(m)
        else:
            out.append(MatchedPaper(m.paper, round(-neg, 4), make_hits=_hits_of(m)))
    return out


def _hits_of(matched: MatchedPaper) -> Callable[[], list[TopicHit]]:
    def hits() -> list[TopicHit]:
        return matched.hits

    return hits


def match_steered(
    index: PaperIndex,
    topics: Sequence[TopicSpec],
    max_papers: int,
    steering: Steering,
    *,
    _cache: dict[tuple[q.Node, int], Any] | None = None,
) -> list[MatchedPaper]:
    """:func:`~digest.match.rank.match_subscriber` with the reader's steering applied."""
    specs = steered_topics(topics, steering)
    if not steering.dislikes:
        return match_subscriber(index, specs, max_papers, _cache=_cache)
    wider = match_subscriber(index, specs, max_papers + EXTRA_CANDIDATES, _cache=_cache)
    return demote(wider, steering, max_papers)


K = TypeVar("K")


def match_many_steered(
    index: PaperIndex,
    readers: Iterable[tuple[K, Sequence[TopicSpec], int, Steering]],
) -> dict[K, list[MatchedPaper]]:
    """Batch form of :func:`match_steered`; topics shared by readers are ranked once."""
    cache: dict[tuple[q.Node, int], Any] = {}
    out: dict[K, list[MatchedPaper]] = {}
    for key, topics, max_papers, steering in readers:
        if len(cache) > 50_000:
            cache.clear()
        out[key] = match_steered(index, topics, max_papers, steering, _cache=cache)
    return out


def count_steered(index: PaperIndex, topics: Sequence[TopicSpec], steering: Steering) -> int:
    """How many papers match, muted authors left out (demoted papers still count)."""
    return count_matches(index, steered_topics(topics, steering))


def load_steering(session: Session, subscriber_ids: Iterable[int]) -> dict[int, Steering]:
    """Each reader's steering, in one query per 1,000 readers (readers without: absent)."""
    ids = sorted(set(subscriber_ids))
    muted: dict[int, list[str]] = {}
    dislikes: dict[int, list[tuple[list[str], int | None]]] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = session.execute(
            select(
                ReaderSignal.subscriber_id,
                ReaderSignal.kind,
                ReaderSignal.value,
                ReaderSignal.terms,
                ReaderSignal.paper_id,
            )
            .where(ReaderSignal.subscriber_id.in_(chunk))
            .order_by(ReaderSignal.id)
        ).all()
        for sub_id, kind, value, terms, paper_id in rows:
            if kind == MUTE:
                muted.setdefault(sub_id, []).append(value)
            elif kind == LESS:
                dislikes.setdefault(sub_id, []).append((list(terms or []), paper_id))
    embeddings = _embeddings(session, {p for d in dislikes.values() for _t, p in d if p})
    out: dict[int, Steering] = {}
    for sub_id in set(muted) | set(dislikes):
        out[sub_id] = Steering(
            tuple(muted.get(sub_id, ())),
            tuple(
                Dislike(frozenset(terms), embeddings.get(paper_id) if paper_id else None)
                for terms, paper_id in dislikes.get(sub_id, ())
            ),
        )
    return out


def _embeddings(session: Session, paper_ids: set[int]) -> dict[int, bytes]:
    if not paper_ids or not semantic.available():
        return {}
    found: dict[int, bytes] = {}
    ordered = sorted(paper_ids)
    for start in range(0, len(ordered), 1000):
        chunk = ordered[start : start + 1000]
        for pid, blob in session.execute(
            select(Paper.id, Paper.embedding).where(
                Paper.id.in_(chunk), Paper.embedding.is_not(None)
            )
        ):
            if blob:
                found[pid] = blob
    return found


# --- "more N": a topic from a paper ---------------------------------------------------


class Titled(Protocol):
    """What :func:`keyword_query` reads of a paper."""

    id: Any
    title: str
    abstract: str


def keyword_query(paper: Titled, others: Sequence[Titled], avoid: Iterable[str] = ()) -> str:
    """A keyword topic for "more like this paper", from its title.

    The title's words (common words and numbers left out), rarest first among the
    ``others`` (recent papers) but found in at least one of them: a word only this
    paper has (a system's name) would make a topic nothing else ever matches. Words
    of the reader's own topics (``avoid``, as written) are left out unless nothing
    else is left: the paper matched those already, and "more like it" is about what
    else it is about. Up to
    :data:`KEYWORDS` words are kept while together they still find another paper.
    With no such word, the title's longest words. Always a valid query.
    """
    avoided = {tok.term for text in avoid for tok in textmod.tokens(text)}
    title_tokens = [
        tok
        for tok in textmod.tokens(str(paper.title or ""))
        if len(tok.surface) > 2
        and not textmod.is_stop_word(tok.surface)
        and not tok.surface.isdigit()
        and tok.start == tok.end
    ]
    by_term: dict[str, str] = {}
    for tok in title_tokens:
        by_term.setdefault(tok.term, tok.surface)
    postings: dict[str, set[int]] = {term: set() for term in by_term}
    paper_id = getattr(paper, "id", None)
    for i, other in enumerate(others):
        if paper_id is not None and getattr(other, "id", None) == paper_id:
            continue
        for term in (
            _paper_terms(str(other.title or ""), str(other.abstract or "")) & postings.keys()
        ):
            postings[term].add(i)
    order = list(by_term)
    found = sorted(
        (t for t in order if postings[t] and t not in avoided),
        key=lambda t: (len(postings[t]), order.index(t)),
    ) or sorted((t for t in order if postings[t]), key=lambda t: (len(postings[t]), order.index(t)))
    chosen: list[str] = []
    together: set[int] | None = None
    for term in found:
        narrower = postings[term] if together is None else together & postings[term]
        if narrower:
            chosen.append(term)
            together = narrower
        if len(chosen) == KEYWORDS:
            break
    if not chosen:
        chosen = sorted(order, key=lambda t: -len(by_term[t]))[:2]
    chosen.sort(key=order.index)  # in the title's order: reads like a phrase of it
    words = [by_term[t].lower() for t in chosen]
    for size in range(len(words), 0, -1):
        text = " ".join(words[:size])
        if q.check(text) is None:
            return text
    raise QueryError("the paper's title has no words a topic could use")


__all__ = [
    "EXTRA_CANDIDATES",
    "KINDS",
    "LESS",
    "LESS_FACTOR",
    "LESS_OVERLAP",
    "MAX_SIGNALS",
    "MUTE",
    "NO_STEERING",
    "Dislike",
    "Steering",
    "author_node",
    "clean_author",
    "count_steered",
    "demote",
    "is_like",
    "keyword_query",
    "load_steering",
    "match_many_steered",
    "match_steered",
    "steered_topics",
    "title_terms",
]
