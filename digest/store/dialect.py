"""What differs between SQLite and PostgreSQL, in one place: upserts and locks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(session: Session, table: Any) -> Any:
    """The session's dialect's INSERT (it has ``on_conflict_do_nothing``/``do_update``)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no INSERT … ON CONFLICT for {dialect}")


def insert_ignore(session: Session, table: Any, index_elements: list[str]) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` for the session's dialect."""
    return dialect_insert(session, table).on_conflict_do_nothing(index_elements=index_elements)


#: Advisory-lock key ("dige") ordering paper stamping against digest windows.
PAPER_STAMP_LOCK = 0x64696765


def lock_paper_stamps(session: Session, *, exclusive: bool) -> None:
    """Order "stamp new papers" against "close a digest window", until the transaction ends.

    Ingest takes it shared before stamping ``first_seen_at``; a send batch takes it
    exclusively while it fixes windows and reads their papers. So a window never
    closes between a paper's stamp and its commit: the paper would fall before the
    window's end yet stay invisible to it, and the next window would start after it.
    PostgreSQL only: SQLite already serialises writers, and the embedded default
    runs ingest and send one after the other.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    session.execute(text(f"SELECT {function}(:key)"), {"key": PAPER_STAMP_LOCK})


#: Rows written in one go after which the planner's statistics are refreshed at once.
ANALYZE_AFTER_ROWS = 1000


def analyze(session: Session, *tables: str) -> None:
    """Refresh PostgreSQL's statistics of ``tables`` after a bulk change, in this transaction.

    Autovacuum gets there within a minute or so, but a plan made in between on a table
    it believes empty can be quadratic (a nested loop over the rows just inserted:
    3 s for 10,000 readers, minutes for 100,000). ANALYZE inside the transaction sees
    its own rows. SQLite's planner needs nothing here.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in tables:
        session.execute(text(f"ANALYZE {table}"))
