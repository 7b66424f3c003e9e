"""A topic query in plain words, for labels, subjects and section headings.

``cat:cs.CR AND jailbreak`` → ``cs.CR jailbreak``; ``"machine unlearning" OR
title:forgetting`` → ``machine unlearning or forgetting``; ``author:bengio -survey``
→ ``by bengio, not survey``; ``upvotes:>=10`` → ``10+ upvotes``. Built from the
query's tokens rather than its tree, so the reader's words, their order and their
case survive (the tree drops common words and folds case). Field names, quotes,
``AND`` and the upper-case operators never show; categories take arXiv's spelling.
"""

from __future__ import annotations

import re

from digest.core.caches import memoize
from digest.errors import QueryError
from digest.match import categories, lexer
from digest.match import query as q

_UPVOTES = {">=": "{n}+ upvotes", ">": "over {n} upvotes", "<": "under {n} upvotes",
            "<=": "at most {n} upvotes", "=": "{n} upvotes"}  # fmt: skip


_SOURCES = {"hf": "Hugging Face", "arxiv": "arXiv"}
#: Anything the query language reads as more than a word: fields, quotes, groups, the
#: minus, ``~``, the upper-case operators and the built-in topic.
_SYNTAX = re.compile(
    "[" + re.escape(":()-~" + q.QUOTE_CHARACTERS) + r"]|\b(?:OR|AND|NOT)\b|(?i:^trending$)"
)


@memoize(maxsize=16384)
def readable(text: str) -> str:
    """The query in plain words; the text itself (whitespace collapsed) if it does not lex."""
    stripped = " ".join((text or "").split())
    if not _SYNTAX.search(stripped):
        return stripped  # plain words (most topics): already what a reader would write
    if stripped.lower() == "trending":
        return "Trending"
    if stripped.startswith("~"):
        return stripped[1:].strip()
    try:
        tokens = lexer.lex(stripped.translate(lexer.QUOTES))
    except QueryError:
        return stripped
    flat = not any(tok.kind in ("OR", "LPAREN") for tok in tokens)
    out: list[str] = []
    negated: list[str] = []  # of a flat query: said at the end ("agents, not survey")
    negate = False
    field = ""  # a field whose value is the quoted phrase that follows (author:"…")
    for tok in tokens:
        if tok.kind in ("EOF", "AND"):
            continue
        if tok.kind in ("NOT", "MINUS"):
            negate = True
            continue
        if tok.kind == "OR":
            out.append("or")
            continue
        if tok.kind == "RPAREN":
            out.append(")")
            continue
        if tok.kind == "FIELD" and not tok.value:
            field = tok.field  # title:"…", author:"…", title:( … )
            continue
        if tok.kind == "QUOTED" and field:
            tok = lexer.Tok("FIELD", tok.value, tok.column, field)
        field = ""
        words = _term(tok)
        if negate and flat:
            negated.append(f"not {words}")
        elif negate:
            # "(a OR b) -c" reads "(a or b), not c"; after "(" or "or", just "not c".
            if out and out[-1] not in ("(", "or"):
                out[-1] += ","
            out.append(f"not {words}")
        else:
            out.append(words)
        negate = False
    phrase = ", ".join([" ".join(out), *negated]) if out else ", ".join(negated)
    phrase = " ".join(phrase.split()).replace("( ", "(").replace(" )", ")")
    return phrase or stripped


def _term(tok: lexer.Tok) -> str:
    if tok.kind == "LPAREN":
        return "("
    if tok.kind != "FIELD":
        return tok.value
    value = tok.value.strip()
    if tok.field == "cat":
        return categories.canonical(value) or value
    if tok.field == "author":
        return f"by {value}"
    if tok.field == "source":
        return f"from {_SOURCES.get(value.lower(), value)}"
    if tok.field == "like":
        return f"like {value.removeprefix('arxiv:')}"
    if tok.field == "upvotes":
        op = value.rstrip("0123456789") or ">="
        number = value[len(op) :] if value.startswith(op) else value
        return _UPVOTES.get(op, "{n} upvotes").format(n=number)
    return value  # title:word, abstract:word


__all__ = ["readable"]
