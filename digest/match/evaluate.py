"""Evaluate a query on an index: which papers match, how well, and the best k.

A paper matches a topic when the boolean query holds and is more than a passing
mention (:func:`bits_of`); its relevance is a sum of weights of indicator sets it
belongs to (:mod:`digest.match.weights`), so the best k are found by merging sets
of equal relevance instead of scoring every match (:meth:`Scorer.top`).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from digest.core import caches
from digest.match import query as q
from digest.match.index import PaperIndex, positions
from digest.match.weights import (
    ABSTRACT_WEIGHT,
    PHRASE_FACTOR,
    PROXIMITY_ABSTRACT,
    PROXIMITY_TITLE,
    RECURRING_BONUS,
    SEMANTIC_WEIGHT,
    TITLE_WEIGHT,
)


@dataclass(slots=True)
class Hit:
    """How one paper matched one query: the score and the leaves that matched."""

    score: float
    leaves: list[tuple[q.Leaf, str]]  # (leaf, where): where is "title", "abstract", "both", ...
    proximity: list[tuple[int, int, str]] = field(default_factory=list)  # leaf pairs side by side


def bits_of(index: PaperIndex, node: q.Node) -> tuple[int, int]:
    """(present, strong) for a node: papers where the boolean query holds, and those of
    them where it holds on more than a passing mention.

    A paper matches a topic when it is in ``strong`` of the root: the words are
    there and at least one of each group of words written together is in the
    title, said twice in the abstract, or stands next to another word of the
    group (or the reader quoted it). One passing mention in a 200-word abstract
    is how most unwanted papers got in (tests/test_matching_quality.py).
    """
    if isinstance(node, q.And):
        present = index.universe
        strong = 0
        for child in node.children:
            if isinstance(child, q.Not):
                present &= ~bits_of(index, child.child)[0]
            else:
                p, st = bits_of(index, child)
                present &= p
                strong |= st
            if not present:
                return 0, 0
        for field_names, keys in _adjacent_pairs(node):
            for field_name in field_names:
                for key in keys:
                    strong |= index.seq_bits(field_name, key)
        return present, present & strong
    if isinstance(node, q.Or):
        present = strong = 0
        for child in node.children:
            p, st = bits_of(index, child)
            present |= p
            strong |= st
        return present, strong
    if isinstance(node, q.Not):
        return index.universe & ~bits_of(index, node.child)[0], 0
    lb = index.leaf(node)
    return lb.bits, lb.strong


FIELDS = ("title", "abstract")
_pair_cache: dict[q.And, tuple[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]], ...]] = {}
caches.register(_pair_cache.clear)


def together(a: q.Text, b: q.Text) -> tuple[tuple[str, ...], ...]:
    """The term runs that say words written side by side stand together in a paper:
    the last term of one next to the first of the other, or both as one word
    ("fine tuning" written "finetuning")."""
    one = q.joined_form(a, b)
    keys: list[tuple[str, ...]] = [
        (sa[-1], sb[0])
        for sa in a.seqs
        for sb in b.seqs
        if one is None or (one,) not in (sa, sb)  # the joined form is no neighbour
    ]
    if one is not None:
        keys.append((one,))
    return tuple(dict.fromkeys(keys))


def _adjacent_pairs(
    node: q.And,
) -> tuple[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]], ...]:
    """For words written side by side, the term runs that say they stand together."""
    cached = _pair_cache.get(node)
    if cached is None:
        out = []
        kids = node.children
        for a, b in itertools.pairwise(kids):
            if isinstance(a, q.Text) and isinstance(b, q.Text) and a.field == b.field:
                out.append(((a.field,) if a.field else FIELDS, together(a, b)))
        cached = tuple(out)
        if len(_pair_cache) > 100_000:
            _pair_cache.clear()
        _pair_cache[node] = cached
    return cached


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to score for a query: its positive leaves and the word pairs written together."""

    leaves: tuple[q.Leaf, ...]
    pairs: tuple[tuple[int, int, tuple[tuple[str, ...], ...]], ...]  # leaf indexes, runs


_plans: dict[q.Node, _Plan] = {}
caches.register(_plans.clear)


def plan_of(root: q.Node) -> _Plan:
    plan = _plans.get(root)
    if plan is not None:
        return plan
    leaves = tuple(dict.fromkeys(q.leaves(root, positive_only=True)))
    where = {leaf: i for i, leaf in enumerate(leaves)}
    pairs: list[tuple[int, int, tuple[tuple[str, ...], ...]]] = []
    for node in _ands(root):
        kids = node.children
        for a, b in itertools.pairwise(kids):
            if isinstance(a, q.Text) and isinstance(b, q.Text) and a.field == b.field:
                pairs.append((where[a], where[b], together(a, b)))
    plan = _Plan(leaves, tuple(pairs))
    if len(_plans) > 100_000:
        _plans.clear()
    _plans[root] = plan
    return plan


def _ands(node: q.Node) -> Iterable[q.And]:
    if isinstance(node, q.And):
        yield node
    if isinstance(node, q.And | q.Or):
        for child in node.children:
            yield from _ands(child)


class Scorer:
    """Scores for one query on one index, from bitsets: the relevance of a paper is a
    sum of weights of indicator sets it belongs to (word in title, in abstract, said
    twice, words side by side...), plus a per-paper boost that falls with the stored
    position (upvotes, then recency). That makes the best k findable without
    scoring every matching paper (:meth:`top`)."""

    def __init__(self, index: PaperIndex, root: q.Node) -> None:
        self.index = index
        self.root = root
        self.matched = bits_of(index, root)[1]
        self.plan = plan_of(root)
        self.leaf_bits = [index.leaf(leaf) for leaf in self.plan.leaves]
        self.pair_bits = [
            (
                i,
                j,
                or_all(index.seq_bits("title", k) for k in keys),
                or_all(index.seq_bits("abstract", k) for k in keys),
            )
            for i, j, keys in self.plan.pairs
        ]
        self.semantic = any(isinstance(leaf, q.Like | q.Semantic) for leaf in self.plan.leaves)
        self.trending = any(isinstance(leaf, q.Trending) for leaf in self.plan.leaves)
        indicators: list[tuple[float, int]] = []
        for leaf, lb in zip(self.plan.leaves, self.leaf_bits, strict=True):
            if isinstance(leaf, q.Text):
                factor = PHRASE_FACTOR if any(len(sq) > 1 for sq in leaf.seqs) else 1.0
                indicators += [
                    (TITLE_WEIGHT * factor, lb.title),
                    (ABSTRACT_WEIGHT * factor, lb.abstract),
                    (RECURRING_BONUS * factor, lb.many),
                ]
            elif isinstance(leaf, q.Author):
                indicators.append((2.0, lb.bits))
            elif isinstance(leaf, q.Trending):
                indicators.append((1.0, lb.bits))  # + ln(1 + upvotes), per paper
            elif not isinstance(leaf, q.Like | q.Semantic):
                indicators.append((0.5, lb.bits))
        for _i, _j, title_bits, abstract_bits in self.pair_bits:
            indicators.append((PROXIMITY_TITLE, title_bits))
            indicators.append((PROXIMITY_ABSTRACT, abstract_bits & ~title_bits))
        self.indicators = [(w, b & self.matched) for w, b in indicators if w and b & self.matched]
        self._classes: list[tuple[float, int]] | None = None

    def extra(self, pos: int) -> float:
        """The per-paper part of the score (non-increasing with the stored position)."""
        value = self.index.boost[pos]
        if self.trending and self.index.upvotes[pos] > 0:
            value += math.log1p(self.index.upvotes[pos])
        return value

    def score(self, pos: int) -> float:
        bit = 1 << pos
        value = self.extra(pos)
        for weight, bits in self.indicators:
            if bits & bit:
                value += weight
        if self.semantic:
            for leaf, lb in zip(self.plan.leaves, self.leaf_bits, strict=True):
                if isinstance(leaf, q.Like | q.Semantic) and lb.bits & bit:
                    value += SEMANTIC_WEIGHT * (lb.similarity or {}).get(pos, 0.0)
        return value

    def hit(self, pos: int) -> Hit:
        """The score and the leaves behind it, for explaining one paper."""
        bit = 1 << pos
        got: list[tuple[q.Leaf, str]] = []
        for leaf, lb in zip(self.plan.leaves, self.leaf_bits, strict=True):
            if not lb.bits & bit:
                continue
            if isinstance(leaf, q.Text):
                in_title, in_abstract = bool(lb.title & bit), bool(lb.abstract & bit)
                where = "both" if in_title and in_abstract else "title" if in_title else "abstract"
                got.append((leaf, where))
            elif isinstance(leaf, q.Like | q.Semantic):
                got.append((leaf, f"{(lb.similarity or {}).get(pos, 0.0):.2f}"))
            else:
                got.append((leaf, ""))
        near: list[tuple[int, int, str]] = []
        for i, j, title_bits, abstract_bits in self.pair_bits:
            if title_bits & bit:
                near.append((i, j, "title"))
            elif abstract_bits & bit:
                near.append((i, j, "abstract"))
        return Hit(self.score(pos), got, near)

    def classes(self) -> list[tuple[float, int]]:
        """The matches split into sets of equal relevance, most relevant first."""
        if self._classes is None:
            classes: dict[float, int] = {0.0: self.matched} if self.matched else {}
            for weight, bits in self.indicators:
                split: dict[float, int] = {}
                for rel, members in classes.items():
                    inside = members & bits
                    if inside:
                        split[rel + weight] = split.get(rel + weight, 0) | inside
                        members &= ~bits
                    if members:
                        split[rel] = split.get(rel, 0) | members
                classes = split
            self._classes = sorted(classes.items(), reverse=True)
        return self._classes

    def top(self, k: int) -> list[tuple[float, int]]:
        """(score, stored position) of the best ``k`` matches, in digest order: score,
        then most recent, then stored position.

        Within one class of equal relevance, stored order *is* that order (the
        per-paper part falls with the position, and equal parts mean equal upvotes,
        where positions go by recency), so the best k are a k-way merge of the
        classes, taking bits from the bottom of each.
        """
        if not self.matched or k <= 0:
            return []
        index = self.index
        if self.semantic:  # similarity is per paper: no classes to exploit
            scored = [(self.score(p), p) for p in positions(self.matched)]
            scored.sort(key=lambda sp: (-sp[0], -index.recency[sp[1]], sp[1]))
            return scored[:k]
        recency = index.recency
        heap: list[tuple[float, float, int, float, int]] = []
        for rel, members in self.classes():
            low = members & -members
            pos = low.bit_length() - 1
            score = rel + self.extra(pos)
            heap.append((-score, -recency[pos], pos, rel, members ^ low))
        heapq.heapify(heap)
        found: list[tuple[float, int]] = []
        while heap and len(found) < k:
            neg_score, _recency, pos, rel, rest = heapq.heappop(heap)
            found.append((-neg_score, pos))
            if rest:
                low = rest & -rest
                nxt = low.bit_length() - 1
                heapq.heappush(
                    heap, (-(rel + self.extra(nxt)), -recency[nxt], nxt, rel, rest ^ low)
                )
        return found

    def above(self, floor: float, mask: int) -> list[tuple[float, int]]:
        """(score, stored position) of every match in ``mask`` scoring at least ``floor``."""
        if self.semantic:
            return [
                (sc, p) for p in positions(self.matched & mask) if (sc := self.score(p)) >= floor
            ]
        best_extra = self.extra(0)
        found: list[tuple[float, int]] = []
        for rel, members in self.classes():
            if rel + best_extra < floor:
                break
            members &= mask
            while members:
                low = members & -members
                pos = low.bit_length() - 1
                score = rel + self.extra(pos)
                if score < floor:
                    break
                found.append((score, pos))
                members ^= low
        return found


def or_all(values: Iterable[int]) -> int:
    result = 0
    for v in values:
        result |= v
    return result


def scorer_for(index: PaperIndex, root: q.Node) -> Scorer:
    scorer = index.scorers.get(root)
    if scorer is None:
        if len(index.scorers) > 4096:
            index.scorers.clear()
        scorer = index.scorers[root] = Scorer(index, root)
    return scorer


def evaluate(index: PaperIndex, query: q.Query | str) -> dict[int, Hit]:
    """Every paper the query matches, with its score and why.

    Keys are positions in the sequence given to :func:`build_index`.
    """
    parsed = query if isinstance(query, q.Query) else q.parse(query)
    scorer = scorer_for(index, parsed.root)
    return {index.input_pos[pos]: scorer.hit(pos) for pos in positions(scorer.matched)}


def in_passing(index: PaperIndex, query: q.Query | str) -> list[int]:
    """The papers a query misses only because its words are there in passing (one
    mention in the abstract, see :func:`bits_of`): what quoting a word would add.

    Positions in the sequence given to :func:`build_index`, ascending.
    """
    parsed = query if isinstance(query, q.Query) else q.parse(query)
    present, strong = bits_of(index, parsed.root)
    return sorted(index.input_pos[pos] for pos in positions(present & ~strong))
