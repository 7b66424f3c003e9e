"""Cut a topic query into tokens: words, quoted phrases, field:value pairs, operators.

Every token keeps its column, so the parser's errors say where the problem is.
Typographic quotes (“ ” „ « ») read as ``"``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from digest.errors import QueryError

FIELDS = {
    "title": "title",
    "ti": "title",
    "abstract": "abstract",
    "abs": "abstract",
    "author": "author",
    "au": "author",
    "cat": "cat",
    "category": "cat",
    "source": "source",
    "src": "source",
    "upvotes": "upvotes",
    "like": "like",
}
SUGGESTABLE = ["title", "abstract", "author", "cat", "source", "upvotes", "like"]
FIELD_RE = re.compile(r"([A-Za-z]+):(.*)\Z", re.S)
UPVOTES_RE = re.compile(r"(>=|<=|>|<|=)?([0-9]+)\Z")
CATEGORY_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*(\.\*|\*)?\Z")
LIKE_RE = re.compile(
    r"(?:arxiv:)?([0-9]{4}\.[0-9]{4,5}|[a-z-]+(?:\.[A-Z]{2})?/[0-9]{7})(?:v[0-9]+)?\Z", re.I
)
#: Every character the language reads as a double quote (typographic ones included).
QUOTE_CHARACTERS = '"“”„«»'
QUOTES = str.maketrans({c: '"' for c in QUOTE_CHARACTERS[1:]})


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str  # WORD QUOTED LPAREN RPAREN OR AND NOT MINUS FIELD EOF
    value: str
    column: int  # 1-based
    field: str = ""  # for FIELD: canonical field name; value is the inline value


def lex(text: str) -> list[Tok]:
    out: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        col = i + 1
        if ch == "(":
            out.append(Tok("LPAREN", ch, col))
            i += 1
        elif ch == ")":
            out.append(Tok("RPAREN", ch, col))
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QueryError("unclosed quote", col)
            out.append(Tok("QUOTED", text[i + 1 : end], col))
            i = end + 1
        elif ch == "-" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] not in "-)":
            out.append(Tok("MINUS", ch, col))
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            word = text[i:j]
            i = j
            if word in ("OR", "AND", "NOT"):
                out.append(Tok(word, word, col))
                continue
            m = FIELD_RE.match(word)
            if m:
                name, value = m.group(1), m.group(2)
                canonical = FIELDS.get(name.lower())
                if canonical is None:
                    guess = difflib.get_close_matches(name.lower(), SUGGESTABLE, n=1, cutoff=0.6)
                    if value or guess:
                        hint = (
                            f" (did you mean {guess[0]}:?)"
                            if guess
                            else f"; fields are {', '.join(f + ':' for f in SUGGESTABLE)}"
                        )
                        raise QueryError(f"unknown field '{name}:'", col, hint)
                    # "AEGIS: online moderation": a colon as punctuation, not a field.
                    out.append(Tok("WORD", word, col))
                    continue
                if not value and (i >= n or text[i] not in '("'):
                    what = "a number" if canonical == "upvotes" else "a value"
                    raise QueryError(
                        f"{name}: expects {what} like {field_example(canonical)} (no space after the colon)",
                        col,
                    )
                # title:-word is -title:word; dropping the minus would mean the opposite.
                minus_col = col + len(name) + 1
                while value.startswith("-"):
                    out.append(Tok("MINUS", "-", minus_col))
                    value = value[1:]
                    minus_col += 1
                if not value and (i >= n or text[i] not in '("'):
                    raise QueryError(f"{name}:- needs a value after the minus", col)
                out.append(Tok("FIELD", value, col, canonical))
                continue
            out.append(Tok("WORD", word, col))
    out.append(Tok("EOF", "", n + 1))
    return out


def field_example(field: str) -> str:
    return {
        "title": 'title:unlearning or title:"machine unlearning"',
        "abstract": "abstract:guardrails",
        "author": 'author:bengio or author:"yoshua bengio"',
        "cat": "cat:cs.LG or cat:cs.*",
        "source": "source:hf",
        "upvotes": "upvotes:>=10",
        "like": "like:2401.00001",
    }[field]
