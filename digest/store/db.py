"""Engines, sessions and schema migrations.

SQLite is the embedded default; PostgreSQL is the same code by URL. Commands
that need the database call :func:`ensure_schema`, which applies pending
migrations to a fresh SQLite file by itself; on PostgreSQL an operator runs
``digest db upgrade`` (docker-compose's one-shot ``migrate`` service).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, normalise_database_url
from digest.core import caches
from digest.errors import DatabaseError


def _sqlite_pragmas(busy_seconds: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling issues a deferred BEGIN before the first
        # write; ours (_sqlite_begin) must be the only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the web app read while a worker writes; busy_timeout turns a brief
        # writer collision into a wait instead of "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


SQLITE_BUSY_SECONDS = 30.0

#: The execution option of a session whose transactions begin deferred (see
#: :func:`session_factory`).
DEFERRED = "digest_deferred"


def _sqlite_begin(connection: Connection) -> None:
    # In WAL mode a deferred transaction that reads and then writes fails at once with
    # "database is locked" (SQLITE_BUSY_SNAPSHOT) if another connection committed in
    # between, and busy_timeout does not apply. BEGIN IMMEDIATE takes the write lock
    # first (waiting busy_timeout for it), so a writer never fails half-way. Readers
    # ask for a plain BEGIN: they never block a writer nor wait for one.
    deferred = connection.get_execution_options().get(DEFERRED, False)
    connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        # How long a writer waits for another's lock: 30 s, or the URL's ?timeout=S.
        busy = float(make_url(url).query.get("timeout") or SQLITE_BUSY_SECONDS)  # type: ignore[arg-type]
        engine = create_engine(url, connect_args={"timeout": busy})
        event.listen(engine, "connect", _sqlite_pragmas(busy))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


#: One engine (and pool) per database URL per process.
_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """The process's engine for ``url``, made on first use."""
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    """Close every pooled connection and forget the engines (a forked worker, a test)."""
    while _ENGINES:
        _, engine = _ENGINES.popitem()
        engine.dispose()


def session_factory(settings: Settings, *, deferred: bool = False) -> sessionmaker[Session]:
    """Sessions on the settings' database.

    ``deferred`` ones begin a plain (deferred) transaction on SQLite: they never take
    the write lock to read, so a reader never blocks a writer nor waits for one. A
    deferred transaction that reads and then writes fails with "database is locked"
    when another connection committed in between: only for readers, and for a caller
    that commits its writes before anyone else can (tests).
    """
    engine = engine_for(settings.database_url)
    if deferred:
        engine = engine.execution_options(**{DEFERRED: True})
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings, *, read_only: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception.

    On SQLite every transaction of a session that may write begins with
    ``BEGIN IMMEDIATE``: it waits for the write lock up front rather than failing
    half-way (ARCHITECTURE.md); keep such transactions short and never hold one
    across network I/O. ``read_only`` sessions begin a plain snapshot instead.
    """
    session = session_factory(settings, deferred=read_only)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def end_transaction(session: Session) -> None:
    """Commit the session's open transaction, if it has one, before slow network I/O.

    On SQLite the transaction holds the database's write lock (``BEGIN IMMEDIATE``):
    held across an SMTP conversation it would make every other writer (a web
    unsubscribe, ingest) wait for the mail server. With nothing open this is free:
    pending changes stay in the session for the next commit.
    """
    if session.in_transaction():
        session.commit()


def release_database_lock(session: Session) -> None:
    """Before slow network I/O in the middle of a group of writes: commit only where the
    open transaction locks the whole database (SQLite's ``BEGIN IMMEDIATE``).

    On PostgreSQL the transaction holds row locks on the rows it changed, which are the
    caller's own (a send batch's leased digests), so its writes stay grouped: a COMMIT
    per message would cost a round trip per digest (``DIGEST_COMMIT_EVERY``).
    """
    if session.get_bind().dialect.name == "sqlite":
        end_transaction(session)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "digest.store:migrations")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalise_database_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    with engine_for(url).execution_options(**{DEFERRED: True}).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


#: Databases already seen at head by this process: every task calls ensure_schema, and
#: one check per process is enough (schemas do not go backwards under a running worker).
_AT_HEAD: set[str] = set()
caches.register(_AT_HEAD.clear)


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
        raise database_error(exc, url) from exc
    if current == head_revision():
        _AT_HEAD.add(url)
        return
    if url.startswith("sqlite"):
        upgrade(url)
        _AT_HEAD.add(url)
        return
    if current is None and inspect(engine_for(url)).get_table_names():
        raise DatabaseError(f"{safe_url(url)} has tables but no digest schema version")
    raise DatabaseError(
        f"the database schema is at {current or 'nothing'}, the code needs {head_revision()}: "
        "run `digest db upgrade`"
    )


def safe_url(url: str) -> str:
    """The database URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unreadable database URL)"


def driver_message(exc: BaseException) -> str:
    """The driver's own first line, without SQL, parameters or SQLAlchemy's help link."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    message = lines[0] if lines else type(cause).__name__
    message = message.split("(Background on this error at:")[0].strip()
    return message if len(message) <= 200 else message[:197] + "..."


#: What to do about the usual database failures, by a fragment of the driver's message.
_HINTS = (
    ("readonly database", "the database file (or its folder) is read-only: check permissions"),
    ("read-only", "the database is read-only: check permissions or the server's mode"),
    ("database is locked", "another process holds a write lock: try again in a moment"),
    ("unable to open database", "the file or its folder does not exist or cannot be opened"),
    ("connection refused", "is the database server running? check DIGEST_DATABASE_URL"),
    ("could not connect", "is the database server running? check DIGEST_DATABASE_URL"),
    ("could not translate host name", "the host name does not resolve: check DIGEST_DATABASE_URL"),
    ("does not exist", "check DIGEST_DATABASE_URL (and run `digest db upgrade`)"),
    ("no such table", "the schema is missing: run `digest db upgrade`"),
    ("password authentication failed", "check the user and password in DIGEST_DATABASE_URL"),
    ("timeout", "the database did not answer in time: is it overloaded or unreachable?"),
)


def database_error(exc: BaseException, url: str) -> DatabaseError:
    """One line naming the database, what went wrong and what to do; never SQL or data."""
    message = driver_message(exc)
    lowered = message.lower()
    hint = next((h for fragment, h in _HINTS if fragment in lowered), "")
    return DatabaseError(
        f"database error at {safe_url(url)}: {message}" + (f" ({hint})" if hint else "")
    )
