"""The CLI on a database it cannot use: one line naming it and what to do, nothing else.

A reviewer saw SQLAlchemy tracebacks with the SQL and its parameters (subscribers'
addresses included) for a read-only file, a locked one and an unreachable server.
Each case here is real: a SQLite file opened read-only, a file another process holds
the write lock of, and a PostgreSQL URL whose port nobody listens on; the `digest`
command runs as a process, as an operator would run it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.feedserver import FeedServer

pytestmark = pytest.mark.integration

DIGEST = Path(sys.executable).with_name("digest")
ADDRESS = "carl.secret@example.org"
LEAKS = re.compile(
    r"Traceback|\[SQL|\[parameters|SELECT |INSERT |UPDATE |sqlalche\.me|s3cret|"
    + re.escape(ADDRESS),
    re.IGNORECASE,
)


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DIGEST_DATABASE_URL": url,
        "DIGEST_ALLOW_PRIVATE_FEEDS": "1",
        "DIGEST_FETCH_DELAY": "0",
    }
    return subprocess.run(
        [str(DIGEST), *args], env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_line(result: subprocess.CompletedProcess[str], names: str, hint: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"Error: database error at {names}"), line
    assert hint in line, line
    assert not LEAKS.search(result.stdout + result.stderr), result.stdout + result.stderr


@pytest.fixture
def db_file(sqlite_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "digest.db"
    shutil.copy(sqlite_template, path)
    return path


@pytest.fixture
def with_feed(db_file: Path, feed_server: FeedServer) -> Path:
    result = run(
        f"sqlite:///{db_file}", "feeds", "add", "--no-check", feed_server.feed_url("hf_daily.json")
    )
    assert result.returncode == 0, result.stderr
    return db_file


@pytest.mark.parametrize(
    "args", [("subscribers", "add", ADDRESS, "--confirmed"), ("fetch",)], ids=["add", "fetch"]
)
def test_a_read_only_database_file(with_feed: Path, args: tuple[str, ...]) -> None:
    # Root ignores file modes: SQLite's own read-only mode is what a read-only mount gives.
    url = f"sqlite:///file:{with_feed}?mode=ro&uri=true"
    result = run(url, *args)
    assert_one_line(result, "sqlite:///file", "read-only: check permissions")
    assert str(with_feed) in result.stderr  # names the file


@pytest.fixture
def locked(with_feed: Path) -> Iterator[Path]:
    """Another process holds the file's write lock for as long as the test runs."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute(\"INSERT INTO app_meta (key, value) VALUES ('lock', 'held')\")\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(with_feed),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    yield with_feed
    holder.terminate()
    holder.wait(timeout=10)


@pytest.mark.parametrize(
    "args", [("subscribers", "add", ADDRESS, "--confirmed"), ("fetch",)], ids=["add", "fetch"]
)
def test_a_locked_database_file(locked: Path, args: tuple[str, ...]) -> None:
    # ?timeout= shortens the 30 s wait for the lock, so the test takes seconds.
    result = run(f"sqlite:///{locked}?timeout=1", *args)
    assert_one_line(result, f"sqlite:///{locked}", "another process holds a write lock")
    with sqlite3.connect(f"file:{locked}?mode=ro", uri=True) as check:
        assert check.execute("SELECT count(*) FROM subscribers").fetchone() == (0,)


def test_an_unreachable_postgresql_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there
    url = f"postgresql://digest:s3cret@127.0.0.1:{port}/digest"
    commands = (
        ("subscribers", "add", ADDRESS, "--confirmed"),
        ("feeds", "list"),
        ("fetch",),
        ("db", "upgrade"),
    )
    for args in commands:
        result = run(url, *args)
        assert_one_line(
            result, f"postgresql+psycopg://digest:***@127.0.0.1:{port}/digest", "is the database"
        )
