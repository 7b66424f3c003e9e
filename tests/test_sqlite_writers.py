"""SQLite with more than one writer: `digest fetch` beside a process committing steadily.

In WAL mode a transaction that reads and then writes fails at once with "database is
locked" if another connection committed in between (busy_timeout does not apply).
Here a real second process commits every few milliseconds on the same file while
`digest fetch` fetches several slow feeds from the real feed server: every feed must
be fetched and stored, and nothing may say "locked".
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_settings
from sqlalchemy import select, text
from support.feedserver import FeedServer

from digest.cli import cli
from digest.config import Settings
from digest.ingest import add_feed
from digest.store import db
from digest.store.models import Feed, Paper

pytestmark = pytest.mark.integration

FEEDS = {
    "arxiv_rss_cs_lg.xml": "arxiv-rss",
    "arxiv_api_query.xml": "arxiv-api",
    "hf_daily.json": "hf-daily",
    "biorxiv.rdf": "rss",
    "blog_atom.xml": "rss",
}

# Commits one row every ~2 ms until told to stop (or for 60 s at most), then prints
# how many it committed.
WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
    con.execute("PRAGMA busy_timeout=30000")
    con.execute("CREATE TABLE IF NOT EXISTS writer_ticks (n INTEGER)")
    print("ready", flush=True)
    n, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO writer_ticks VALUES (?)", (n,))
        con.execute("COMMIT")
        n += 1
        time.sleep(0.002)
    """
)


@pytest.fixture
def sqlite_settings(sqlite_template: Path, tmp_path: Path) -> Settings:
    path = tmp_path / "digest.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(f"sqlite:///{path}", tmp_path)


@pytest.fixture
def steady_writer(sqlite_settings: Settings) -> Iterator[subprocess.Popen[str]]:
    path = sqlite_settings.database_url.removeprefix("sqlite:///")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def ticks(settings: Settings) -> int:
    with db.session_scope(settings) as session:
        return int(session.scalar(text("SELECT count(*) FROM writer_ticks")) or 0)


def test_fetch_beside_a_steady_writer_fetches_every_feed(
    sqlite_settings: Settings, feed_server: FeedServer, request: pytest.FixtureRequest
) -> None:
    settings = sqlite_settings
    with db.session_scope(settings) as session:
        for name, kind in FEEDS.items():
            # Each answer waits a moment: the other process commits while it downloads.
            add_feed(session, feed_server.feed_url(name) + "?delay=0.3", kind)
    request.getfixturevalue("steady_writer")
    before = ticks(settings)
    result = CliRunner().invoke(
        cli,
        ["fetch"],
        env={
            "DIGEST_DATABASE_URL": settings.database_url,
            "DIGEST_ALLOW_PRIVATE_FEEDS": "1",
            "DIGEST_FETCH_DELAY": "0",
        },
    )
    assert "locked" not in result.output, result.output
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    assert ticks(settings) > before + 50  # the other writer really ran all along
    with db.session_scope(settings) as session:
        statuses = {f.url: (f.last_status, f.last_error) for f in session.scalars(select(Feed))}
        papers = session.scalars(select(Paper.sources)).all()
    assert all(status == "ok" for status, _ in statuses.values()), statuses
    assert {s for sources in papers for s in sources} >= {"arxiv", "hf"}
