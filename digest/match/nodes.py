"""The syntax tree of a topic query: leaves (words, authors, categories, ...) and AND/OR/NOT."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def _cached_hash(cls: type) -> type:
    """Hash a node once: the matcher keys its caches by query trees, and a frozen
    dataclass would otherwise re-hash the whole tree on every lookup."""
    names = [f.name for f in dataclasses.fields(cls) if f.name != "_h"]

    def __hash__(self: object) -> int:
        value = self._h  # type: ignore[attr-defined]
        if not value:
            value = hash((cls.__name__, *(getattr(self, n) for n in names))) or 1
            object.__setattr__(self, "_h", value)
        return value

    cls.__hash__ = __hash__  # type: ignore[assignment]
    return cls


@_cached_hash
@dataclass(frozen=True, slots=True)
class Text:
    """Words in the title and/or abstract.

    ``seqs`` are alternatives, each a run of terms that must stand in a row:
    ``fine-tuning`` -> (("fine", "tune"), ("finetun",)).
    """

    field: str | None  # "title", "abstract", or None for either
    seqs: tuple[tuple[str, ...], ...]
    display: str  # as the reader wrote it, for the reason line
    quoted: bool = False
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Author:
    surname: str  # normalised
    given: tuple[str, ...] = ()  # normalised given names or initials
    display: str = ""
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Category:
    # Lower-cased. With ``prefix``, the start of the category with a "." after it:
    # cat:math.* -> "math." (math, math.CO; not math-ph), cat:cs.L* -> "cs.l".
    value: str
    prefix: bool = False
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Source:
    value: str
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Upvotes:
    op: str
    value: int
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Trending:
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Like:
    paper_id: str  # an arXiv id without version, or any stored paper key
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Semantic:
    text: str
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


@_cached_hash
@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    _h: int = dataclasses.field(default=0, init=False, repr=False, compare=False)


Leaf = Text | Author | Category | Source | Upvotes | Trending | Like | Semantic
Node = Leaf | And | Or | Not


@dataclass(frozen=True)
class Query:
    text: str
    root: Node

    @property
    def is_semantic(self) -> bool:
        return any(isinstance(leaf, Like | Semantic) for leaf in leaves(self.root))

    @property
    def is_trending(self) -> bool:
        return isinstance(self.root, Trending)


def leaves(node: Node, negated: bool = False, *, positive_only: bool = False) -> list[Leaf]:
    """The leaves of a tree, left to right; with ``positive_only``, not those under NOT."""
    if isinstance(node, And | Or):
        out: list[Leaf] = []
        for child in node.children:
            out.extend(leaves(child, negated, positive_only=positive_only))
        return out
    if isinstance(node, Not):
        if positive_only:
            return []
        return leaves(node.child, not negated, positive_only=positive_only)
    return [node]


__all__ = [
    "And",
    "Author",
    "Category",
    "Leaf",
    "Like",
    "Node",
    "Not",
    "Or",
    "Query",
    "Semantic",
    "Source",
    "Text",
    "Trending",
    "Upvotes",
    "leaves",
]
