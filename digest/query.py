"""The topic query language: text -> AST, with clear errors.

CONTRACT STUB (issue 3 fills this in): ``parse(text)`` returns a :class:`Query`
or raises :class:`QueryError` whose message says what is wrong and where.
"""

from __future__ import annotations

from dataclasses import dataclass


class QueryError(ValueError):
    """A topic query that cannot be parsed; ``str()`` says what and where."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message if column is None else f"{message} at column {column}")
        self.column = column


@dataclass(frozen=True)
class Query:
    text: str


def parse(text: str) -> Query:
    if not text.strip():
        raise QueryError("empty query")
    return Query(text)
