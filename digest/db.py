"""Engines, sessions and schema migrations.

SQLite is the embedded default; PostgreSQL is the same code by URL. Commands
that need the database call :func:`ensure_schema`, which applies pending
migrations to a fresh SQLite file by itself; on PostgreSQL an operator runs
``digest db upgrade`` (docker-compose's one-shot ``migrate`` service).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, normalise_database_url


class DatabaseError(RuntimeError):
    """The database cannot be reached or is not at the expected schema."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while a worker writes; busy_timeout turns a brief
    # writer collision into a wait instead of "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and pool) per URL per process."""
    return make_engine(url)


def session_factory(settings: Settings) -> sessionmaker[Session]:
    return sessionmaker(engine_for(settings.database_url), expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


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


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "digest:migrations")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalise_database_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


#: Databases already seen at head by this process: every task calls ensure_schema, and
#: one check per process is enough (schemas do not go backwards under a running worker).
_AT_HEAD: set[str] = set()


def ensure_schema(settings: Settings) -> None:
    """Bring the schema to head on SQLite; on PostgreSQL, insist it already is.

    Migrating a shared PostgreSQL behind the operator's back (from every worker at
    once) is how outages start, so there we only check and say what to run.
    """
    url = settings.database_url
    if url in _AT_HEAD:
        return
    try:
        current = current_revision(url)
    except Exception as exc:
        raise DatabaseError(f"cannot open the database at {_safe_url(url)}: {exc}") from exc
    if current == head_revision():
        _AT_HEAD.add(url)
        return
    if url.startswith("sqlite"):
        upgrade(url)
        _AT_HEAD.add(url)
        return
    if current is None and inspect(engine_for(url)).get_table_names():
        raise DatabaseError(f"{_safe_url(url)} has tables but no digest schema version")
    raise DatabaseError(
        f"the database schema is at {current or 'nothing'}, the code needs {head_revision()}: "
        "run `digest db upgrade`"
    )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
