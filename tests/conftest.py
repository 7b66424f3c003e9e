"""Shared fixtures: every storage test runs on SQLite and on a real PostgreSQL.

PostgreSQL: one throw-away database per test session (so parallel sessions on one
machine never meet), migrated once, truncated before each test. SQLite: one file
migrated once per session, copied for each test.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core import caches
from digest.store import db
from digest.store.models import Base

# Real servers as fixtures: the HTTP feed server, the SMTP server, Redis and Celery processes.
pytest_plugins = [
    "support.feedserver",
    "support.smtpserver",
    "support.services",
    "support.inboundkit",
]

PG_ADMIN_URL = os.environ.get(
    "DIGEST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    """No test sees another's process-wide caches (indexes, parsed queries, settings)."""
    caches.clear_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "digest.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"digest_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN_URL} is not answering ({exc}); start it (see .ci/run)"
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    db.upgrade(url)
    yield url
    db.engine_for(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine_for(url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """An empty, migrated PostgreSQL database, for what only PostgreSQL has (locks, Celery)."""
    _truncate_postgres(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite file or PostgreSQL, one test each."""
    if request.param == "sqlite":
        path = tmp_path / "digest.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


def make_settings(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "outbox": tmp_path / "outbox",
        "allow_private_feeds": True,
        "secret_key": TEST_SECRET,
        "base_url": "https://digest.example.org",
        "from_addr": "Paper Digest <digest@digest.example.org>",
        "postal_address": "1 Example Street, Testville",
        "fetch_delay": 0.0,
        "fetch_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    # Deferred on SQLite: a test reads through this session between calls that write in
    # their own sessions; an immediate one would hold the write lock from its first read.
    factory = db.session_factory(settings, deferred=True)
    with factory() as s:
        yield s
