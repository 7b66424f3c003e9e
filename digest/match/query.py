"""The topic query language: text -> AST, with clear errors.

A topic is one line a reader writes. ``parse(text)`` returns a :class:`Query`
holding the syntax tree, or raises :class:`QueryError` whose message says what
is wrong and where (``unclosed quote at column 14``). Every string either
parses or raises ``QueryError``; nothing else escapes (a property test checks).

Syntax
------
``machine unlearning``
    Words: all must appear (implicit AND), in the title or the abstract, and
    one of them must be more than a passing mention: in the title, said twice
    in the abstract, or next to another of the words (quote a word, or use
    ``abstract:``, to count any single mention). Case-insensitive, across
    simple inflections (model/models, LLM/LLMs, study/studies, tune/tuning). A
    hyphenated word matches written with a hyphen, a space or nothing:
    ``fine-tuning`` finds "fine-tuning", "fine tuning" and "finetuning"; so
    does ``finetuning`` (a word also matches as two words in a row, unless one
    of them is a common word), and ``fine tuning`` (words side by side also
    match written as one word). Acronym plurals fold too (GPU/GPUs, ReLU/ReLUs).
    Common words (the, of, on, for, ...) are ignored outside quotes. Papers
    where the words stand together rank higher.
``"exact phrase"``
    The words in this order, next to each other (inflections still fold, and
    two neighbouring words may be written as one: ``"fine tuning"`` finds
    "finetuning"). A phrase of only common words is refused, like such a query.
``a OR b``, ``a AND b``, ``NOT a``, ``-a``, ``( ... )``
    Operators are upper case; lower-case "or"/"and"/"not" are ordinary
    (ignored) words. AND binds tighter than OR: ``a b OR c`` is ``(a b) OR c``.
``title:word``, ``title:"a phrase"``, ``title:(a OR b)``, ``abstract:...``
    Look only in the title or only in the abstract (``ti:``, ``abs:`` too).
``title:-word``, ``author:-lopez``, ``cat:-cs.CV``
    A ``-`` right after any field's colon negates the term, as ``-title:word``
    does: what a reader who puts the minus there means (it used to be dropped,
    which silently turned the query into its opposite).
``author:bengio``, ``author:"yoshua bengio"``
    An author by surname, or full name: matches "Yoshua Bengio", "Y. Bengio"
    and "Bengio, Yoshua" (``au:`` too).
``cat:cs.LG``, ``cat:cs.*``
    arXiv category, exact, or with ``.*`` the archive and its subcategories
    (``cat:math.*`` is math and math.CO, not math-ph; a bare ``*`` is a plain
    prefix: ``cat:cs.L*`` is cs.LG and cs.LO).
``source:hf``
    Papers seen in a source ("hf" Hugging Face Daily Papers, "arxiv", or a
    generic feed's tag, which `digest feeds list` shows).
``upvotes:>=10``
    Hugging Face upvotes; ``>``, ``>=``, ``<``, ``<=``, ``=``.
Never a silent match-nothing
    A query that can match no paper is refused with the reason: only NOT terms,
    a term and its own negation side by side (``x -x``), an empty upvotes range
    (``upvotes:>50 upvotes:<10``), only common words.
``trending``
    On its own, the built-in topic: the period's most upvoted Hugging Face
    papers (as a word inside a longer query it is just a word).

Semantic topics (need the ``semantic`` extra: ``pip install -c constraints-semantic.txt
'.[semantic]'`` in a checkout; the distribution is ``digest-papers``)
    ``~safety of reasoning models under fine-tuning``: a query that *starts*
    with ``~`` is a plain-language description; papers whose meaning is close
    to it match (sentence-embedding cosine similarity), whatever words they use.
    ``like:2401.00001``: papers similar to that arXiv paper. ``like:`` is a term
    like any other: ``like:2401.00001 -cat:cs.CV`` works.
"""

from __future__ import annotations

import itertools
import re

from digest.core.caches import memoize
from digest.errors import QueryError
from digest.match import semantic
from digest.match import text as textmod
from digest.match.lexer import (
    CATEGORY_RE,
    FIELDS,
    LIKE_RE,
    QUOTE_CHARACTERS,
    QUOTES,
    UPVOTES_RE,
    Tok,
    field_example,
    lex,
)
from digest.match.nodes import (
    And,
    Author,
    Category,
    Leaf,
    Like,
    Node,
    Not,
    Or,
    Query,
    Semantic,
    Source,
    Text,
    Trending,
    Upvotes,
    leaves,
)

MAX_LENGTH = 1000
MAX_TERMS = 64
MAX_DEPTH = 24
MAX_UPVOTES = 10**9
#: The command that works from a checkout (the constraints file keeps torch on its CPU
#: build); installed from PyPI the distribution is digest-papers, the command `digest`.
SEMANTIC_HINT = (
    "semantic topics need the semantic extra: in a checkout, "
    "pip install -c constraints-semantic.txt '.[semantic]' "
    "(from PyPI: pip install 'digest-papers[semantic]')"
)

# --- the parser ------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Tok], source: str) -> None:
        self.tokens = tokens
        self.source = source
        self.i = 0
        self.depth = 0
        self.terms = 0
        self.dropped: list[str] = []  # stop words left out, for the error message
        self.dropped_quoted = False  # ... some of them in quotes

    def peek(self) -> Tok:
        return self.tokens[self.i]

    def next(self) -> Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node | None:
        node = self.or_expr(None)
        tok = self.peek()
        if tok.kind == "RPAREN":
            raise QueryError("unbalanced parenthesis: ')' without '('", tok.column)
        return node

    def or_expr(self, field: str | None) -> Node | None:
        first = self.peek()
        if first.kind == "OR":
            raise QueryError("OR needs a term on its left", first.column)
        branches = [self.and_expr(field)]
        while self.peek().kind == "OR":
            op = self.next()
            if self.peek().kind in ("EOF", "RPAREN", "OR"):
                raise QueryError("OR needs a term on its right", op.column)
            branches.append(self.and_expr(field))
        kept = [b for b in branches if b is not None]
        if not kept:
            return None
        if len(kept) == 1:
            return kept[0]
        return Or(tuple(kept))

    def and_expr(self, field: str | None) -> Node | None:
        parts: list[Node] = []
        spans: list[tuple[int, int]] = []  # each part's columns, for error messages
        seen = False  # a term was read, even one dropped as a common word
        while True:
            tok = self.peek()
            if tok.kind in ("EOF", "RPAREN", "OR"):
                break
            if tok.kind == "AND":
                self.next()
                if not seen:
                    raise QueryError("AND needs a term on its left", tok.column)
                if self.peek().kind in ("EOF", "RPAREN", "OR", "AND"):
                    raise QueryError("AND needs a term on its right", tok.column)
                continue
            node = self.unary(field)
            seen = True
            if node is not None:
                parts.append(node)
                spans.append((tok.column, self.peek().column))
        if not parts:
            return None
        self.refuse_contradictions(parts, spans)
        if len(parts) == 1:
            return parts[0]
        return And(_with_joined_forms(parts))

    def shown(self, span: tuple[int, int]) -> str:
        return self.source[span[0] - 1 : span[1] - 1].strip()

    def refuse_contradictions(self, parts: list[Node], spans: list[tuple[int, int]]) -> None:
        """Refuse what no paper can satisfy at one level of ANDs: a term and its own
        negation (x -x), or upvote bounds that leave no number (upvotes:>50 upvotes:<10).
        Only the obvious: a reader who wrote either meant something else."""
        if len(parts) < 2 or not any(isinstance(p, Not | Upvotes) for p in parts):
            return
        wanted: dict[object, tuple[int, int]] = {}
        for node, span in zip(parts, spans, strict=True):
            if not isinstance(node, Not):
                wanted.setdefault(_same_term(node), span)
        for node, span in zip(parts, spans, strict=True):
            if isinstance(node, Not) and _same_term(node.child) in wanted:
                raise QueryError(
                    f"query matches nothing: {self.shown(span)} excludes "
                    f"{self.shown(wanted[_same_term(node.child)])}, which it also asks for",
                    span[0],
                )
        low, high = 0, MAX_UPVOTES + 1
        bounds: list[tuple[int, int]] = []
        for node, span in zip(parts, spans, strict=True):
            if isinstance(node, Upvotes):
                bounds.append(span)
                lo, hi = _upvote_range(node)
                low, high = max(low, lo), min(high, hi)
                if low > high:
                    shown = " and ".join(self.shown(b) for b in bounds)
                    raise QueryError(f"query matches nothing: no upvote count is {shown}", span[0])

    def unary(self, field: str | None) -> Node | None:
        tok = self.peek()
        if tok.kind in ("NOT", "MINUS"):
            self.next()
            if self.peek().kind in ("EOF", "RPAREN", "OR", "AND"):
                what = "NOT" if tok.kind == "NOT" else "'-'"
                raise QueryError(f"{what} needs a term after it", tok.column)
            child = self.unary(field)
            return None if child is None else Not(child)
        return self.primary(field)

    def primary(self, field: str | None) -> Node | None:
        tok = self.next()
        if tok.kind == "LPAREN":
            return self.group(tok, field)
        if tok.kind == "QUOTED":
            return self.text(tok.value, tok.column, field, quoted=True)
        if tok.kind == "WORD":
            return self.text(tok.value, tok.column, field, quoted=False)
        if tok.kind == "FIELD":
            return self.field(tok)
        # NOT/MINUS are handled by unary; what is left here can only be misplaced.
        raise QueryError(f"unexpected {tok.value or tok.kind}", tok.column)

    def group(self, open_tok: Tok, field: str | None) -> Node | None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"parentheses nested deeper than {MAX_DEPTH}", open_tok.column)
        if self.peek().kind == "RPAREN":
            raise QueryError("empty parentheses", open_tok.column)
        node = self.or_expr(field)
        close = self.next()
        if close.kind != "RPAREN":
            raise QueryError("unbalanced parenthesis: '(' is never closed", open_tok.column)
        self.depth -= 1
        return node

    def count(self, column: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(f"too many terms (the limit is {MAX_TERMS})", column)

    def text(self, written: str, column: int, field: str | None, *, quoted: bool) -> Node | None:
        # One unquoted token with punctuation inside ("cs.LG", "state-of-the-art") is a
        # phrase of its words; a quoted phrase keeps its common words for word order.
        words = textmod.query_words(written)
        if words and all(textmod.is_stop_word(w) for w in words):
            self.dropped.extend(words)
            self.dropped_quoted |= quoted
            return None
        if not words:
            if quoted:
                raise QueryError("phrase has no words", column)
            return None
        self.count(column)
        if len(words) == 1:
            return Text(field, textmod.alternatives(words[0]), words[0], quoted)
        per_word = [textmod.alternatives(w) for w in words]
        # The phrase as written, and with each pair of neighbours written as one word
        # ("fine tuning" -> "finetuning"): one pair at a time, so the count stays linear.
        spellings = [per_word]
        for k in range(len(words) - 1):
            one = textmod.joined(words[k], words[k + 1])
            if one is not None:
                spellings.append([*per_word[:k], ((one,),), *per_word[k + 2 :]])
        combos = 0
        for spelling in spellings:
            product = 1
            for alts in spelling:
                product *= len(alts)
            combos += product
        if combos > 64:
            raise QueryError("phrase has too many words with several spellings", column)
        seqs = tuple(
            dict.fromkeys(
                tuple(itertools.chain.from_iterable(choice))
                for spelling in spellings
                for choice in itertools.product(*spelling)
            )
        )
        return Text(field, seqs, " ".join(words), quoted)

    def field(self, tok: Tok) -> Node | None:
        name, value, col = tok.field, tok.value, tok.column
        if name in ("title", "abstract"):
            if value:
                return self.text(value, col, name, quoted=False)
            nxt = self.next()
            if nxt.kind == "QUOTED":
                return self.text(nxt.value, nxt.column, name, quoted=True)
            return self.group(nxt, name)  # next() was '(' (the lexer checked)
        if not value:
            nxt = self.next()
            if nxt.kind != "QUOTED":
                raise QueryError(f"{name}: expects a value like {field_example(name)}", col)
            value = nxt.value
        self.count(col)
        if name == "author":
            return _author(value, col)
        if name == "cat":
            m = CATEGORY_RE.match(value.strip())
            if not m:
                raise QueryError(
                    f"cat: expects a category like cat:cs.LG or cat:cs.*, got '{value}'", col
                )
            raw = value.strip().lower()
            if m.group(1):
                # Keep the "." of ".*": the archive's subcategories, not every
                # category spelled with the same start (math.* is not math-ph).
                return Category(raw[:-1], prefix=True)
            return Category(raw)
        if name == "source":
            src = value.strip().lower()
            if not src or any(c.isspace() for c in src):
                raise QueryError("source: expects one name like source:hf or source:arxiv", col)
            return Source(src)
        if name == "upvotes":
            m = UPVOTES_RE.match(value.strip())
            if not m:
                raise QueryError(f"upvotes: expects a number like upvotes:>=10, got '{value}'", col)
            number = int(m.group(2))
            if number > MAX_UPVOTES:
                raise QueryError("upvotes: number too large", col)
            node = Upvotes(m.group(1) or ">=", number)
            low, high = _upvote_range(node)
            if low > high:
                raise QueryError(f"upvotes:{value.strip()} never matches: counts start at 0", col)
            return node
        if name == "like":
            m = LIKE_RE.match(value.strip())
            if not m:
                raise QueryError(
                    f"like: expects an arXiv id like like:2401.00001, got '{value}'", col
                )
            return Like(m.group(1).lower())
        raise QueryError(f"unknown field '{name}:'", col)  # pragma: no cover - FIELDS is closed


INITIALS = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")


def _author(value: str, column: int) -> Author:
    """author:bengio, author:"yoshua bengio", author:"Bengio, Y." -> surname + given names."""
    if "," in value:
        last, _, first = value.partition(",")
        surname_words = INITIALS.findall(last)
        given_words = INITIALS.findall(first)
    else:
        names = INITIALS.findall(value)
        surname_words, given_words = names[-1:], names[:-1]
    if not surname_words:
        raise QueryError("author: expects a name like author:bengio", column)
    surname = textmod.normalise(" ".join(surname_words))
    given = tuple(textmod.normalise(g) for g in given_words)
    display = " ".join([*given_words, *surname_words])
    return Author(surname, given, display)


def _upvote_range(node: Upvotes) -> tuple[int, int]:
    """The counts an upvotes term allows, as an inclusive range of whole numbers."""
    top = MAX_UPVOTES + 1
    return {
        ">": (node.value + 1, top),
        ">=": (node.value, top),
        "<": (0, node.value - 1),
        "<=": (0, node.value),
        "=": (node.value, node.value),
    }[node.op]


def _same_term(node: Node) -> object:
    """What makes two terms the same for a contradiction: not how they were written
    (``X`` and ``x``), nor whether quoted (any mention defeats a negation)."""
    if isinstance(node, Text):
        return ("text", node.field, node.seqs)
    return node


def joined_form(a: Node, b: Node) -> str | None:
    """The term of two plain query words written side by side, as one word ("fine",
    "tuning" -> "finetun"), or None: they also match written that way."""
    if (
        isinstance(a, Text)
        and isinstance(b, Text)
        and a.field == b.field
        and not (a.quoted or b.quoted)
        and " " not in a.display
        and " " not in b.display
    ):
        return textmod.joined(a.display, b.display)
    return None


def _with_joined_forms(parts: list[Node]) -> tuple[Node, ...]:
    """Let each pair of plain words side by side also be found written as one word:
    ``fine tuning`` finds "Finetuning LLMs" (both words are there, as one)."""
    extra: list[list[tuple[str, ...]]] = [[] for _ in parts]
    for k in range(len(parts) - 1):
        one = joined_form(parts[k], parts[k + 1])
        if one is not None:
            extra[k].append((one,))
            extra[k + 1].append((one,))
    out: list[Node] = []
    for node, more in zip(parts, extra, strict=True):
        if more and isinstance(node, Text):
            seqs = tuple(dict.fromkeys([*node.seqs, *more]))
            node = Text(node.field, seqs, node.display, node.quoted)
        out.append(node)
    return tuple(out)


def _require_semantic(column: int | None) -> None:

    if not semantic.available():
        raise QueryError(SEMANTIC_HINT, column)


def _positive(node: Node) -> bool:
    """Can this node match without a NOT doing all the work?"""
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_positive(c) for c in node.children)
    if isinstance(node, Or):
        return all(_positive(c) for c in node.children)
    return True


def parse(text: str) -> Query:
    """Parse one topic query; raise :class:`QueryError` saying what is wrong and where.

    Results are cached: the same topic text of many subscribers is parsed once.
    """
    if not isinstance(text, str):
        raise QueryError("query must be text")
    query = _parse(text)
    if query.is_semantic:
        column = text.find("like:") + 1 if isinstance(query.root, And | Or | Not | Like) else None
        _require_semantic(column or None)
    return query


@memoize(maxsize=65536)
def _parse(text: str) -> Query:
    if len(text) > MAX_LENGTH:
        raise QueryError(f"query is too long ({len(text)} characters; the limit is {MAX_LENGTH})")
    source = text.translate(QUOTES)
    stripped = source.strip()
    if not stripped:
        raise QueryError("empty query")
    if "\x00" in source:
        raise QueryError("query contains a NUL character")
    if stripped.lower() == "trending":
        return Query(text, Trending())
    if stripped.startswith("~"):
        sentence = " ".join(stripped[1:].split())
        content = [w for w in textmod.query_words(sentence) if not textmod.is_stop_word(w)]
        if not content:
            raise QueryError("~ needs a sentence after it, e.g. ~safety of reasoning models")
        return Query(text, Semantic(sentence))
    parser = _Parser(lex(source), source)
    root = parser.parse()
    if root is None:
        if parser.dropped:
            shown = ", ".join(f"'{w}'" for w in dict.fromkeys(w.lower() for w in parser.dropped))
            # Quoting does not help here (a phrase needs one word that is not common),
            # so do not suggest it.
            quoted = ", quoted or not" if parser.dropped_quoted else ""
            raise QueryError(
                f"query has only common words ({shown}) that would match almost every "
                f"paper{quoted}; add a more specific word"
            )
        raise QueryError("query has no words to match")
    if not _positive(root):
        if isinstance(root, Not) or (
            isinstance(root, And) and not any(_positive(c) for c in root.children)
        ):
            raise QueryError("query matches nothing: only NOT terms; add a word to look for")
        raise QueryError(
            "query matches nothing useful: each side of an OR needs a term that is not negated"
        )
    return Query(text, root)


def check(text: str) -> str | None:
    """The error message for a bad query, or None: for forms and CSV imports."""
    try:
        parse(text)
    except QueryError as exc:
        return str(exc)
    return None


__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TERMS",
    "QUOTE_CHARACTERS",
    "SEMANTIC_HINT",
    "And",
    "Author",
    "Category",
    "Leaf",
    "Like",
    "Node",
    "Not",
    "Or",
    "Query",
    "QueryError",
    "Semantic",
    "Source",
    "Text",
    "Trending",
    "Upvotes",
    "check",
    "joined_form",
    "leaves",
    "parse",
]
