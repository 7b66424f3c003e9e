"""Why a paper matched: the words to highlight as written there, and one line of reason."""

from __future__ import annotations

from digest.match import query as q
from digest.match.evaluate import plan_of, scorer_for
from digest.match.index import PaperIndex, author_matches, category_matches, find_sequence


def explain(index: PaperIndex, pos: int, root: q.Node) -> tuple[list[str], str]:
    """The words to highlight in the paper at stored position ``pos``, as written
    there, and a one-line reason it matched the query ``root``."""
    key = (root, pos)
    cached = index.explained.get(key)
    if cached is not None:
        return list(cached[0]), cached[1]
    hit = scorer_for(index, root).hit(pos)
    terms: list[str] = []
    title_parts: list[str] = []
    abstract_parts: list[str] = []
    other: list[str] = []
    # Words the reader wrote side by side and the paper has side by side: say them as one.
    joined: dict[q.Leaf, tuple[str, str]] = {}
    plan = plan_of(root)
    for i, j, where in hit.proximity:
        a, b = plan.leaves[i], plan.leaves[j]
        if isinstance(a, q.Text) and isinstance(b, q.Text) and a not in joined:
            joined[a] = (f"{a.display} {b.display}", where)
            joined[b] = ("", where)
    for leaf, where in hit.leaves:
        if isinstance(leaf, q.Text):
            for field_name in ("title", "abstract"):
                if where in (field_name, "both"):
                    terms.extend(_surfaces(index, pos, field_name, index.forms(leaf)))
            shown, near_where = joined.get(leaf, (leaf.display, ""))
            if not shown:
                continue
            label = f'"{shown}"'
            if where in ("title", "both") and near_where != "abstract":
                title_parts.append(label)
            else:
                abstract_parts.append(label)
        elif isinstance(leaf, q.Author):
            names = [n.written for n in index.authors(pos) if author_matches(leaf, n)]
            terms.extend(names)
            other.append("by " + ", ".join(names or [leaf.display]))
        elif isinstance(leaf, q.Category):
            cats = [c for c in index.cats[pos] if category_matches(leaf, c)]
            other.append("in " + ", ".join(cats or [leaf.value]))
        elif isinstance(leaf, q.Source):
            other.append(f"from {leaf.value}")
        elif isinstance(leaf, q.Upvotes | q.Trending):
            votes = index.upvotes[pos]
            text = f"{votes} upvote{'s' if votes != 1 else ''} on Hugging Face"
            other.append(("trending: " + text) if isinstance(leaf, q.Trending) else text)
        elif isinstance(leaf, q.Semantic):
            short = leaf.text if len(leaf.text) <= 60 else leaf.text[:57] + "..."
            other.append(f'close in meaning to "{short}" (similarity {where})')
        elif isinstance(leaf, q.Like):
            other.append(f"similar to {leaf.paper_id} (similarity {where})")
    parts: list[str] = []
    if title_parts:
        parts.append("title matches " + ", ".join(dict.fromkeys(title_parts)))
    if abstract_parts:
        parts.append("abstract mentions " + ", ".join(dict.fromkeys(abstract_parts)))
    parts.extend(other)
    result = (list(dict.fromkeys(terms)), "; ".join(parts))
    if len(index.explained) > 100_000:
        index.explained.clear()
    index.explained[key] = (tuple(result[0]), result[1])
    return result


def _surfaces(
    index: PaperIndex, pos: int, field_name: str, seqs: tuple[tuple[str, ...], ...]
) -> list[str]:
    toks = index.tokens(pos, field_name)
    out: list[str] = []
    for seq in seqs:
        for first, last in find_sequence(toks, seq):
            if first == last:
                out.append(toks[first].surface)
            else:
                out.extend(
                    toks[k].surface for k in range(first, last + 1) if toks[k].start == toks[k].end
                )
    return out
