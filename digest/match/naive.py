"""The reference evaluator: the obvious per-paper loop over the same rules.

:func:`naive_matches` is what the tests compare the index against, and the
baseline the matching benchmark measures. Never used to send digests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from digest.match import query as q
from digest.match import text as textmod
from digest.match.evaluate import FIELDS, together
from digest.match.index import (
    COMPARE,
    PaperLike,
    author_matches,
    category_matches,
    find_sequence,
    forms,
    parse_author,
)


def naive_matches(
    papers: Sequence[PaperLike],
    query: q.Query | str,
    tokenised: Sequence[dict[str, list[textmod.Token]]] | None = None,
) -> set[int]:
    """Positions of the papers ``query`` matches, by looking at each paper in turn.

    The slow, obviously-right evaluator of the same rules (including "more than a
    passing mention", see :func:`bits_of`): tests check the index against it and the
    benchmark measures the index's speed against it. ``tokenised`` (from
    :func:`tokenise`) saves re-tokenising the papers for every query.
    """
    parsed = query if isinstance(query, q.Query) else q.parse(query)
    fields_of = tokenised if tokenised is not None else tokenise(papers)
    return {
        i
        for i, (paper, fields) in enumerate(zip(papers, fields_of, strict=True))
        if _naive(parsed.root, paper, fields)[1]
    }


def tokenise(papers: Sequence[PaperLike]) -> list[dict[str, list[textmod.Token]]]:
    return [
        {"title": textmod.tokens(p.title or ""), "abstract": textmod.tokens(p.abstract or "")}
        for p in papers
    ]


def _naive(
    node: q.Node, paper: PaperLike, fields: dict[str, list[textmod.Token]]
) -> tuple[bool, bool]:
    """(present, strong) for one paper, as :func:`bits_of` defines them."""
    if isinstance(node, q.And):
        results = [
            (not _naive(c.child, paper, fields)[0], False)
            if isinstance(c, q.Not)
            else _naive(c, paper, fields)
            for c in node.children
        ]
        present = all(p for p, _ in results)
        strong = any(st for _, st in results)
        kids = node.children
        for a, b in itertools.pairwise(kids):
            if isinstance(a, q.Text) and isinstance(b, q.Text) and a.field == b.field:
                names = (a.field,) if a.field else FIELDS
                if any(find_sequence(fields[n], key) for n in names for key in together(a, b)):
                    strong = True
        return present, present and strong
    if isinstance(node, q.Or):
        results = [_naive(c, paper, fields) for c in node.children]
        return any(p for p, _ in results), any(st for _, st in results)
    if isinstance(node, q.Not):
        return not _naive(node.child, paper, fields)[0], False
    if isinstance(node, q.Text):
        names = (node.field,) if node.field else FIELDS
        # Per written form: "self-driving" said once is one mention, though both
        # ("self", "drive") and ("selfdrive",) find it.
        seqs = forms(node)
        counts = {n: max(len(find_sequence(fields[n], seq)) for seq in seqs) for n in names}
        present = any(counts.values())
        long_run = any(len(seq) >= 3 for seq in seqs) and counts.get("abstract", 0) > 0
        strong = (
            (present and (node.quoted or node.field == "abstract" or long_run))
            or counts.get("title", 0) > 0
            or counts.get("abstract", 0) >= 2
        )
        return present, bool(strong)
    hit = _naive_leaf(node, paper)
    return hit, hit


def _naive_leaf(node: q.Node, paper: PaperLike) -> bool:
    if isinstance(node, q.Author):
        return any(author_matches(node, parse_author(str(a))) for a in paper.authors or [])
    if isinstance(node, q.Category):
        cats = [str(c).lower() for c in paper.categories or []]
        return any(category_matches(node, c) for c in cats)
    if isinstance(node, q.Source):
        return node.value in {str(s).lower() for s in paper.sources or []}
    if isinstance(node, q.Upvotes):
        return COMPARE[node.op](int(paper.upvotes or 0), node.value)
    if isinstance(node, q.Trending):
        return int(paper.upvotes or 0) > 0
    raise TypeError(f"naive_matches does not evaluate {type(node).__name__}")
