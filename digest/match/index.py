"""Index one period's papers once: postings as Python ints used as bitsets.

The papers of a period (a busy day: 2,000-3,000) are indexed once
(:func:`build_index`). Each term, adjacent term pair, author name part,
category and source gets a postings set stored as a Python ``int`` used as a
bitset (bit *i* = the *i*-th paper): evaluating a topic is a handful of
big-integer ANDs/ORs, never a scan over the papers (measured: 1,000
papers x 50,000 topics in 0.03 s this way, against 20 s for a plain loop).
Leaf results are cached on the index, so a term shared by many topics is
looked up once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from digest.match import query as q
from digest.match import semantic
from digest.match import text as textmod
from digest.match.weights import UPVOTE_FACTOR

if TYPE_CHECKING:
    from digest.match.evaluate import Scorer

log = logging.getLogger(__name__)


class PaperLike(Protocol):
    """What matching reads of a paper (``digest.store.models.Paper`` is one)."""

    @property
    def id(self) -> Any: ...
    @property
    def key(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def abstract(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def authors(self) -> list[str]: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def sources(self) -> list[str]: ...
    @property
    def upvotes(self) -> int | None: ...
    @property
    def first_seen_at(self) -> datetime | None: ...
    @property
    def published_at(self) -> datetime | None: ...
    @property
    def embedding(self) -> bytes | None: ...


_BYTE_BITS = [[b for b in range(8) if byte >> b & 1] for byte in range(256)]


def positions(bits: int) -> list[int]:
    """The set bits of a postings int, ascending."""
    if not bits:
        return []
    out: list[int] = []
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for offset, byte in enumerate(data):
        if byte:
            base = offset * 8
            out.extend(base + b for b in _BYTE_BITS[byte])
    return out


def _bitset(indexes: list[int]) -> int:
    bits = 0
    for i in indexes:
        bits |= 1 << i
    return bits


@dataclass(slots=True)
class _LeafBits:
    bits: int
    title: int = 0
    abstract: int = 0
    many: int = 0  # mentioned at least twice in the abstract
    strong: int = 0  # more than a passing mention (see bits_of)
    similarity: dict[int, float] | None = None


@dataclass(frozen=True, slots=True)
class _AuthorName:
    written: str
    parts: tuple[str, ...]  # every normalised name part
    surname: str
    given: tuple[str, ...]


def parse_author(written: str) -> _AuthorName:
    if "," in written:
        last, _, first = written.partition(",")
        surname_words = q.INITIALS.findall(last)
        given_words = q.INITIALS.findall(first)
    else:
        words = q.INITIALS.findall(written)
        surname_words, given_words = words[-1:], words[:-1]
    surname = textmod.normalise(" ".join(surname_words))
    given = tuple(textmod.normalise(g) for g in given_words)
    parts = tuple(textmod.normalise(w) for w in (*given_words, *surname_words))
    return _AuthorName(written, parts, surname, given)


def _given_compatible(wanted: tuple[str, ...], have: tuple[str, ...]) -> bool:
    """ "yoshua" fits "yoshua" and "y"; "y" fits "yoshua"; a name without given names fits."""
    if not wanted or not have:
        return True
    for w, h in zip(wanted, have, strict=False):
        if w == h:
            continue
        if (len(w) == 1 or len(h) == 1) and w[0] == h[0]:
            continue
        return False
    return True


def author_matches(leaf: q.Author, name: _AuthorName) -> bool:
    if not leaf.given:
        return leaf.surname in name.parts or leaf.surname == name.surname
    return (leaf.surname == name.surname or leaf.surname in name.parts) and _given_compatible(
        leaf.given, name.given
    )


def _recency(paper: PaperLike) -> tuple[float, float]:
    """(first seen, published) as timestamps, for the newest-first tie-break; a paper
    not yet seen counts as seen when published."""
    seen, published = getattr(paper, "first_seen_at", None), getattr(paper, "published_at", None)
    published_ts = published.timestamp() if published is not None else 0.0
    return (seen.timestamp() if seen is not None else published_ts, published_ts)


def category_matches(leaf: q.Category, category: str) -> bool:
    """cat:cs.LG is that category; a prefix ("math." of cat:math.*) starts it once a
    "." is put after it, so math.* is math and math.CO but not math-ph."""
    cat = category.lower()
    return (cat + ".").startswith(leaf.value) if leaf.prefix else cat == leaf.value


class PaperIndex:
    """Postings over one period's papers. Build with :func:`build_index`."""

    def __init__(
        self, papers: Sequence[PaperLike], like_lookup: Callable[[str], bytes | None] | None
    ) -> None:
        # Papers are stored most upvoted first, then most recent first, so that within
        # a set of equally relevant papers the lowest bit is the one to show first.
        given = list(papers)
        stamps = [_recency(p) for p in given]
        keys = [
            (-int(getattr(p, "upvotes", None) or 0), -stamps[i][0], -stamps[i][1], i)
            for i, p in enumerate(given)
        ]
        order = sorted(range(len(given)), key=keys.__getitem__)
        # Recency as one number per paper (its rank, newest highest), so the many
        # tie-breaks below compare a float, not a (first seen, published) pair.
        rank = {stamp: r for r, stamp in enumerate(sorted(set(stamps)))}
        self.input_papers = given
        self.papers = [given[i] for i in order]
        self.input_pos = order  # stored position -> position in the sequence given
        self.n = len(self.papers)
        self.universe = (1 << self.n) - 1
        self.like_lookup = like_lookup
        self.upvotes = [int(getattr(p, "upvotes", None) or 0) for p in self.papers]
        self.recency = [float(rank[stamps[i]]) for i in order]
        self.boost = [UPVOTE_FACTOR * math.log1p(u) for u in self.upvotes]
        self._leaf_cache: dict[Hashable, _LeafBits] = {}
        self._tokens: dict[tuple[int, str], list[textmod.Token]] = {}
        self._authors: dict[int, list[_AuthorName]] = {}
        self.cats: list[list[str]] = []
        self._ids: list[tuple[str | None, str | None]] = []  # (arxiv id, key)
        self._embeddings: list[bytes | None] = []
        self._matrix: Any = None
        self.scorers: dict[q.Node, Scorer] = {}
        self._spans: dict[tuple[int, str], dict[str, list[tuple[int, int]]]] = {}
        self.explained: dict[tuple[q.Node, int], tuple[tuple[str, ...], str]] = {}
        self._splits_here: dict[str, tuple[tuple[str, ...], ...]] = {}
        self._build()

    def _build(self) -> None:
        fields: dict[str, dict[str, list[int]]] = {"title": {}, "abstract": {}}
        pairs: dict[str, dict[str, list[int]]] = {"title": {}, "abstract": {}}
        many: dict[str, list[int]] = {}  # terms and term pairs said twice or more
        author_parts: dict[str, list[int]] = {}
        cats: dict[str, list[int]] = {}
        sources: dict[str, list[int]] = {}
        for i, paper in enumerate(self.papers):
            for name, text in (("title", paper.title or ""), ("abstract", paper.abstract or "")):
                toks = textmod.tokens(text)
                # Kept: phrase checks and explanations need positions, and tokenising
                # again costs more than the memory (~20 MB per 1,000 papers).
                self._tokens[(i, name)] = toks
                counts: dict[str, int] = {}
                by_start: dict[int, list[textmod.Token]] = {}
                for tok in toks:
                    counts[tok.term] = counts.get(tok.term, 0) + 1
                    by_start.setdefault(tok.start, []).append(tok)
                postings = fields[name]
                for term in counts:
                    postings.setdefault(term, []).append(i)
                if name == "abstract":
                    for term, count in counts.items():
                        if count >= 2:
                            many.setdefault(term, []).append(i)
                # Term pairs and triples that stand in a row: phrases of up to three
                # words are then exact lookups, with no positions to check.
                seen: dict[str, int] = {}
                triples: set[str] = set()
                for tok in toks:
                    for nxt in by_start.get(tok.end + 1, ()):
                        key = f"{tok.term} {nxt.term}"
                        seen[key] = seen.get(key, 0) + 1
                        for third in by_start.get(nxt.end + 1, ()):
                            triples.add(f"{key} {third.term}")
                grams = pairs[name]
                for key, count in seen.items():
                    grams.setdefault(key, []).append(i)
                    if count >= 2 and name == "abstract":
                        many.setdefault(key, []).append(i)
                for key in triples:
                    grams.setdefault(key, []).append(i)
            # What explanations and semantic terms read later is copied now: the
            # papers may be ORM objects whose session is gone by then.
            names = [parse_author(str(a)) for a in getattr(paper, "authors", None) or []]
            self._authors[i] = names
            self.cats.append([str(c) for c in getattr(paper, "categories", None) or []])
            self._ids.append((getattr(paper, "arxiv_id", None), getattr(paper, "key", None)))
            self._embeddings.append(getattr(paper, "embedding", None))
            for author in names:
                for part in author.parts:
                    lst = author_parts.setdefault(part, [])
                    if not lst or lst[-1] != i:
                        lst.append(i)
            for cat in {str(c).lower() for c in getattr(paper, "categories", None) or []}:
                cats.setdefault(cat, []).append(i)
            for src in {str(s).lower() for s in getattr(paper, "sources", None) or []}:
                sources.setdefault(src, []).append(i)

        def freeze(d: dict[str, list[int]]) -> dict[str, int]:
            return {k: _bitset(v) for k, v in d.items()}

        self.terms = {name: freeze(d) for name, d in fields.items()}
        # Most word pairs and triples occur in one paper only: those are stored as the
        # small int -(position + 1) instead of a bitset of up to n bits (see gram()).
        self.pairs = {
            name: {k: (-v[0] - 1 if len(v) == 1 else _bitset(v)) for k, v in d.items()}
            for name, d in pairs.items()
        }
        self.many = freeze(many)
        self.author_parts = freeze(author_parts)
        self.categories = freeze(cats)
        self.sources = freeze(sources)

    # -- per-paper detail, computed lazily for the few papers that need it ---------------

    def tokens(self, pos: int, field_name: str) -> list[textmod.Token]:
        key = (pos, field_name)
        toks = self._tokens.get(key)
        if toks is None:
            paper = self.papers[pos]
            toks = textmod.tokens((paper.title if field_name == "title" else paper.abstract) or "")
            self._tokens[key] = toks
        return toks

    def authors(self, pos: int) -> list[_AuthorName]:
        return self._authors.get(pos, [])

    def has_sequence(self, pos: int, field_name: str, seq: tuple[str, ...]) -> bool:
        """Does ``seq`` stand as one run in that field of that paper?"""
        key = (pos, field_name)
        spans = self._spans.get(key)
        if spans is None:
            spans = {}
            for tok in self.tokens(pos, field_name):
                spans.setdefault(tok.term, []).append((tok.start, tok.end))
            self._spans[key] = spans
        first = spans.get(seq[0])
        if not first:
            return False
        ends = [end for _start, end in first]
        for term in seq[1:]:
            wanted = {end + 1 for end in ends}
            ends = [end for start, end in spans.get(term, ()) if start in wanted]
            if not ends:
                return False
        return True

    # -- leaves -------------------------------------------------------------------------

    def gram(self, field_name: str, key: str) -> int:
        """The papers with these terms in a row ("a b" or "a b c") in that field."""
        value = self.pairs[field_name].get(key, 0)
        return value if value >= 0 else 1 << (-value - 1)

    def seq_bits(self, field_name: str, seq: tuple[str, ...]) -> int:
        if len(seq) == 1:
            return self.terms[field_name].get(seq[0], 0)
        if len(seq) <= 3:
            return self.gram(field_name, " ".join(seq))
        bits = self.universe
        for start in range(len(seq) - 2):
            bits &= self.gram(field_name, " ".join(seq[start : start + 3]))
            if not bits:
                return 0
        key = ("seq", field_name, seq)
        cached = self._leaf_cache.get(key)
        if cached is None:
            # Every run of three is there; check they form one run.
            exact = _bitset([p for p in positions(bits) if self.has_sequence(p, field_name, seq)])
            cached = self._leaf_cache[key] = _LeafBits(exact)
        return cached.bits

    def forms(self, leaf: q.Text) -> tuple[tuple[str, ...], ...]:
        """The term sequences a text leaf matches here: its own, and a single word's
        splits into two words that stand in a row somewhere in these papers (see
        :func:`forms`; the rest cannot match, so they are not looked up again)."""
        if " " in leaf.display:
            return leaf.seqs
        # Keyed by the word: the same word is many leaves (its neighbours differ).
        found = self._splits_here.get(leaf.display)
        if found is None:
            title, abstract = self.pairs["title"], self.pairs["abstract"]
            found = tuple(
                s
                for s in textmod.splits(leaf.display)
                if (k := f"{s[0]} {s[1]}") in title or k in abstract
            )
            self._splits_here[leaf.display] = found
        return (*leaf.seqs, *found) if found else leaf.seqs

    def leaf(self, leaf: q.Leaf) -> _LeafBits:
        cached = self._leaf_cache.get(leaf)
        if cached is None:
            cached = self._compute_leaf(leaf)
            if not isinstance(leaf, q.Text):
                cached.strong = (
                    cached.bits
                )  # an author, category, vote count... is never "in passing"
            self._leaf_cache[leaf] = cached
        return cached

    def _compute_leaf(self, leaf: q.Leaf) -> _LeafBits:
        if isinstance(leaf, q.Text):
            seqs = self.forms(leaf)
            title = abstract = 0
            if leaf.field in (None, "title"):
                for seq in seqs:
                    title |= self.seq_bits("title", seq)
            if leaf.field in (None, "abstract"):
                for seq in seqs:
                    abstract |= self.seq_bits("abstract", seq)
            many = 0
            if abstract:
                for seq in seqs:
                    if len(seq) <= 2:
                        many |= self.many.get(" ".join(seq), 0)
                    else:  # a run of three or more words is specific enough as it is
                        many |= abstract
                many &= abstract
            bits = title | abstract
            # A reader who quotes a word or names the abstract asks for any mention.
            strong = bits if leaf.quoted or leaf.field == "abstract" else title | many
            return _LeafBits(bits, title, abstract, many, strong)
        if isinstance(leaf, q.Author):
            candidates = self.author_parts.get(leaf.surname, 0)
            if " " in leaf.surname:  # "van der berg": every part must be there
                candidates = self.universe
                for part in leaf.surname.split():
                    candidates &= self.author_parts.get(part, 0)
            bits = _bitset(
                [
                    p
                    for p in positions(candidates)
                    if any(author_matches(leaf, name) for name in self.authors(p))
                ]
            )
            return _LeafBits(bits)
        if isinstance(leaf, q.Category):
            if not leaf.prefix:
                return _LeafBits(self.categories.get(leaf.value, 0))
            bits = 0
            for cat, cat_bits in self.categories.items():
                if category_matches(leaf, cat):
                    bits |= cat_bits
            return _LeafBits(bits)
        if isinstance(leaf, q.Source):
            return _LeafBits(self.sources.get(leaf.value, 0))
        if isinstance(leaf, q.Upvotes):
            test = COMPARE[leaf.op]
            return _LeafBits(
                _bitset([i for i, u in enumerate(self.upvotes) if test(u, leaf.value)])
            )
        if isinstance(leaf, q.Trending):
            return _LeafBits(_bitset([i for i, u in enumerate(self.upvotes) if u > 0]))
        if isinstance(leaf, q.Like | q.Semantic):
            return self._semantic_leaf(leaf)
        raise TypeError(f"unknown query node {leaf!r}")  # pragma: no cover

    def _semantic_leaf(self, leaf: q.Like | q.Semantic) -> _LeafBits:

        if not semantic.available():
            # The parser refuses new semantic topics; a stored one cannot match now.
            log.warning("semantic topic %r skipped: %s", leaf, q.SEMANTIC_HINT)
            return _LeafBits(0, similarity={})
        if isinstance(leaf, q.Like):
            target = self._like_vector(leaf.paper_id)
            if target is None:
                log.warning("like:%s: no embedding stored for that paper", leaf.paper_id)
                return _LeafBits(0, similarity={})
            threshold = semantic.LIKE_THRESHOLD
        else:
            target = semantic.embed_query(leaf.text)
            threshold = semantic.TEXT_THRESHOLD
        if self._matrix is None:
            self._matrix = semantic.Matrix(self._embeddings)
        sims = {p: s for p, s in self._matrix.scores(target) if s >= threshold}
        if isinstance(leaf, q.Like):  # a paper is not "similar to itself" news
            own = leaf.paper_id, f"arxiv:{leaf.paper_id}"
            sims = {
                p: s
                for p, s in sims.items()
                if self._ids[p][0] != own[0] and self._ids[p][1] != own[1]
            }
        return _LeafBits(_bitset(sorted(sims)), similarity=sims)

    def _like_vector(self, paper_id: str) -> bytes | None:
        for (arxiv_id, key), blob in zip(self._ids, self._embeddings, strict=True):
            if blob and (arxiv_id == paper_id or key == f"arxiv:{paper_id}"):
                return blob
        return self.like_lookup(paper_id) if self.like_lookup else None


def _splits(leaf: q.Text) -> tuple[tuple[str, str], ...]:
    """A single written word's readings as two words in a row ("finetuning" is
    "fine tuning"); none for phrases, which say where their words part."""
    if " " in leaf.display:
        return ()
    return textmod.splits(leaf.display)


def forms(leaf: q.Text) -> tuple[tuple[str, ...], ...]:
    """Every term sequence a text leaf matches: its own and its word's splits."""
    return (*leaf.seqs, *_splits(leaf))


COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
}


def find_sequence(toks: list[textmod.Token], seq: tuple[str, ...]) -> list[tuple[int, int]]:
    """Token index spans (first, last) where ``seq`` stands as one run."""
    by_start: dict[int, list[int]] = {}
    for idx, tok in enumerate(toks):
        by_start.setdefault(tok.start, []).append(idx)
    found: list[tuple[int, int]] = []
    for idx, tok in enumerate(toks):
        if tok.term != seq[0]:
            continue
        frontier = [idx]
        for term in seq[1:]:
            frontier = [
                j
                for i in frontier
                for j in by_start.get(toks[i].end + 1, ())
                if toks[j].term == term
            ]
            if not frontier:
                break
        found.extend((idx, j) for j in frontier)
    return found


def build_index(
    papers: Sequence[PaperLike], *, like_lookup: Callable[[str], bytes | None] | None = None
) -> PaperIndex:
    """Index one period's papers. ``like_lookup`` resolves ``like:ID`` to a stored
    embedding when that paper is not among ``papers`` (see ``semantic.like_lookup``)."""
    return PaperIndex(papers, like_lookup)
