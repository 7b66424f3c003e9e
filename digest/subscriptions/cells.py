r"""The CSV columns of subscribers, and the ``topics``/``labels`` cells' own syntax.

``topics``: queries separated by ``;``. A ``;`` inside a query is written ``\;``
(and a backslash ``\\``); a ``;`` inside a quoted phrase (any quote character the
query language accepts) needs no escape. ``labels``: one label per topic, in the
same order and with the same escapes; a blank entry means the default label.

Formula injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula, and
readers choose their own labels, topics and even addresses (``=1+2@example.org``
is a valid address). Export puts a single quote before such a cell
(:func:`neutralise`), which a spreadsheet shows as text; import takes that quote
away again (:func:`restore`), so our own export imports back exactly. A cell that
itself starts with a quote gets one more, so it too comes back as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from digest.errors import SubscriptionError
from digest.match import query as query_language
from digest.store.models import SubscriberStatus
from digest.subscriptions.validate import (
    MAX_TOPICS,
    default_label,
    normalise_query,
    topic_key,
    validate_label,
    validate_query,
)

COLUMNS = ("email", "topics", "timezone", "frequency", "hour", "max")
#: What export writes and import reads. New columns go at the end, so scripts that read
#: an export by position keep working.
EXPORT_COLUMNS = (
    "email",
    "topics",
    "timezone",
    "frequency",
    "weekday",
    "hour",
    "max",
    "status",
    "labels",
)
#: What a row may say in ``status``: an import only adds people whose consent you hold.
IMPORT_STATUSES = (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED)
HEADER_HINT = ",".join(COLUMNS)
#: The statuses an export includes by default: people who agreed and did not leave.
#: Exporting the unsubscribed into a file that imports as confirmed would undo their choice.
DEFAULT_EXPORT_STATUSES = (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED)


#: What a spreadsheet reads as the start of a formula (OWASP), and our own escape.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_START = (*_FORMULA_START, "'")


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text: ``'`` before a formula's first character.

    Leading spaces do not hide a formula from every spreadsheet, so they are looked past.
    """
    return "'" + cell if cell.lstrip(" ").startswith(_ESCAPED_START) else cell


def restore(cell: str) -> str:
    """The cell :func:`neutralise` was given (a hand-written ``'hello`` stays as is)."""
    if cell.startswith("'") and cell[1:].lstrip(" ").startswith(_ESCAPED_START):
        return cell[1:]
    return cell


# The quote characters of the query language (it reads “ ” „ « » as "), so a ``;`` inside
# a phrase is not split whichever quotes the reader typed.
_QUOTE_CHARS = query_language.QUOTE_CHARACTERS
_QUOTE_CLASS = re.escape(_QUOTE_CHARS)
# An escape, a separator or quote, a run of anything else, or a backslash escaping nothing.
_CELL_TOKEN = re.compile(rf"\\[\\;]|[;{_QUOTE_CLASS}]|[^\\;{_QUOTE_CLASS}]+|\\")
_CELL_SPECIAL = re.compile(rf"[\\{_QUOTE_CLASS}]")


def _split_cell(text: str, *, phrases: bool) -> list[str]:
    r"""The ``;``-separated items of a cell, unescaped and stripped, blank ones kept.

    ``\;`` and ``\\`` stand for ``;`` and ``\``. With ``phrases`` (the topics cell) a
    ``;`` between quotes is part of the query, as the query language reads quotes:
    not in a ``~`` sentence, where quotes are plain characters.
    """
    if not _CELL_SPECIAL.search(text):
        return [part.strip() for part in text.split(";")]
    items: list[str] = []
    current: list[str] = []
    quoted = False
    started = False  # the current item has a non-blank character: its kind is known
    sentence = not phrases
    for match in _CELL_TOKEN.finditer(text):
        token = match.group()
        if token == ";" and not quoted:
            items.append("".join(current).strip())
            current, started, sentence = [], False, not phrases
            continue
        if len(token) == 2 and token[0] == "\\":
            token = token[1]
        elif token in _QUOTE_CHARS and not sentence:
            quoted = not quoted
        if not started and token.strip():
            started = True
            sentence = sentence or token.lstrip().startswith("~")
        current.append(token)
    items.append("".join(current).strip())
    return items


def _join_cell(items: Iterable[str]) -> str:
    return "; ".join(item.replace("\\", "\\\\").replace(";", "\\;") for item in items)


def split_topics(text: str) -> list[str]:
    r"""The queries of a topics cell (see the module docstring for ``;``, ``\;`` and quotes)."""
    return [item for item in _split_cell(text, phrases=True) if item]


def format_topics(topics: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The ``topics`` and ``labels`` cells for ``(query, label)`` pairs.

    A label that is the default for its query is left blank, so a reader who never
    named a topic gets an empty labels cell.
    """
    # Normalised as import stores them: a line break from older data would otherwise
    # make the row unreadable on the way back.
    queries = [normalise_query(query) for query, _ in topics]
    labels = [" ".join(label.split()) for _, label in topics]
    labels = [
        "" if label == default_label(query) else label
        for query, label in zip(queries, labels, strict=True)
    ]
    while labels and not labels[-1]:
        labels.pop()
    return _join_cell(queries), _join_cell(labels)


def parse_topics(
    topics: str, labels: str = "", validate: Callable[[str], str] = validate_query
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(query, label)`` pairs from the two cells, and every reason they are refused.

    The n-th label belongs to the n-th entry of the topics cell. Repeats (in the sense
    of :func:`~digest.subscriptions.topic_key`) are dropped, the first one kept.
    """
    reasons: list[str] = []
    queries = _split_cell(topics, phrases=True)
    names = _split_cell(labels, phrases=False) if labels.strip() else []
    pairs: dict[str, tuple[str, str]] = {}
    for index, text in enumerate(queries):
        label = names[index] if index < len(names) else ""
        if not text:
            if label:
                reasons.append(f'the label "{label}" has no topic next to it in the topics cell')
            continue
        try:
            query = validate(text)
            pairs.setdefault(topic_key(query), (query, validate_label(label, query)))
        except SubscriptionError as exc:
            reasons.append(str(exc))
    if any(names[len(queries) :]):
        reasons.append(
            f"the labels cell has {len(names)} entries for {len(queries)} topics: "
            "one label per topic, in the same order"
        )
    if len(pairs) > MAX_TOPICS:
        reasons.append(f"{len(pairs)} topics: the limit is {MAX_TOPICS}")
    return list(pairs.values()), reasons
