"""The `digest` command's database, papers, run, demo and stats commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.factories import make_paper, make_subscriber

from digest.cli import cli
from digest.config import Settings
from digest.store import db


def invoke(settings: Settings | None, *args: str, **env: str) -> Result:
    environ = {"DIGEST_DATABASE_URL": settings.database_url} if settings else {}
    if settings:
        environ["DIGEST_OUTBOX"] = str(settings.outbox)
    environ.update(env)
    return CliRunner().invoke(cli, list(args), env=environ, catch_exceptions=False)


def test_db_upgrade_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"DIGEST_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert f"database at {db.head_revision()}" in result.output
    assert (
        CliRunner().invoke(cli, ["db", "current"], env={"DIGEST_DATABASE_URL": url}).output.strip()
        == db.head_revision()
    )


def test_commands_migrate_a_fresh_sqlite_file_by_themselves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auto.db'}"
    result = CliRunner().invoke(cli, ["papers", "list", "--json"], env={"DIGEST_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_an_unmigrated_postgres_says_what_to_run(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    name = "digest_unmigrated_" + os.urandom(4).hex()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = postgres_url.rsplit("/", 1)[0] + "/" + name
        result = CliRunner().invoke(cli, ["papers", "list"], env={"DIGEST_DATABASE_URL": url})
        assert result.exit_code == 1
        assert "run `digest db upgrade`" in result.output
        assert (
            CliRunner().invoke(cli, ["db", "upgrade"], env={"DIGEST_DATABASE_URL": url}).exit_code
            == 0
        )
        result = CliRunner().invoke(cli, ["papers", "list"], env={"DIGEST_DATABASE_URL": url})
        assert result.exit_code == 0, result.output
    finally:
        db.engine_for(postgres_url.rsplit("/", 1)[0] + "/" + name).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DIGEST_DATABASE_URL": "mysql://x/y"},
            "DIGEST_DATABASE_URL: scheme 'mysql' not supported",
        ),
        ({"DIGEST_SMTP_URL": "smtp://host:notaport"}, "DIGEST_SMTP_URL: bad port"),
        ({"DIGEST_SEND_RATE": "fast"}, "DIGEST_SEND_RATE: expected a float"),
        (
            {"DIGEST_ALLOW_PRIVATE_FEEDS": "maybe"},
            "DIGEST_ALLOW_PRIVATE_FEEDS: expected true/false",
        ),
        ({"DIGEST_BROKER_URL": "amqp://x"}, "DIGEST_BROKER_URL: scheme 'amqp' not supported"),
        ({"DIGEST_FROM": "not an address"}, "DIGEST_FROM: not an email address"),
    ],
)
def test_a_bad_setting_stops_with_the_variable_named(env: dict[str, str], message: str) -> None:
    result = CliRunner().invoke(cli, ["papers", "list"], env=env)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_papers_list_since_and_json(settings: Settings) -> None:
    t = datetime(2026, 11, 28, 12, tzinfo=UTC)
    with db.session_scope(settings) as session:
        for i, day in enumerate((t - timedelta(days=2), t, t + timedelta(hours=3))):
            make_paper(session, f"Paper {i}", seen=day, arxiv_id=f"2511.0000{i}")
    papers = json.loads(
        invoke(settings, "papers", "list", "--json", "--since", "2026-11-28").output
    )
    assert [p["title"] for p in papers] == ["Paper 2", "Paper 1"]
    table = invoke(settings, "papers", "list").output
    assert "Paper 0" in table and "arxiv:2511.00000" in table
    bad = invoke(settings, "papers", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "yesterday" in bad.output


def test_run_in_process_then_stats(settings: Settings) -> None:
    # Real time, so `digest stats` (which looks at the last 7 days from now) sees the run.
    t = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    with db.session_scope(settings) as session:
        make_paper(
            session,
            "Open Problems in Machine Unlearning for AI Safety",
            seen=t - timedelta(hours=2),
            abstract="Machine unlearning, the ability to forget.",
            arxiv_id="2511.00001",
            last_seen_at=t,
        )
        make_subscriber(
            session, "ada@example.org", "machine unlearning", hour=t.hour, now=t - timedelta(days=1)
        )
    result = invoke(settings, "run", "--no-fetch", "--at", t.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["digests"] == {"sent": 1}
    assert report["mail"] == f"outbox folder {settings.outbox.resolve()}"
    assert report["next"]["readers"] == 1
    assert len(list(settings.outbox.glob("*.eml"))) == 1
    later = (t + timedelta(minutes=20)).isoformat()
    idle = invoke(settings, "run", "--no-fetch", "--at", later).output.splitlines()
    # Nothing due: it says when the next digest is, for how many readers.
    assert idle == [
        "planned 0 digests",
        "digests: none due",
        f"next: 1 digest tomorrow at {t.hour:02d}:00 UTC, in 23 h 10 min",
    ]
    again = invoke(settings, "run", "--no-fetch", "--at", (t + timedelta(days=1)).isoformat())
    assert again.output.splitlines()[:3] == [
        "planned 1 digest",
        "digests: 1 skipped",
        f"mail: outbox folder {settings.outbox.resolve()}",
    ]
    stats = json.loads(invoke(settings, "stats", "--json").output)
    assert stats["digests"]["week"] == {"sent": 1, "skipped": 1}
    assert stats["failures"] == []
    assert stats["suppressed"] == 0
    assert stats["mail"] == f"outbox folder {settings.outbox.resolve()}"
    assert stats["readers"] == {"active": 1}
    assert stats["next"]["readers"] == 1 and stats["next"]["line"].startswith("next: 1 digest ")
    table = invoke(settings, "stats").output
    assert "sent" in table and "suppressed addresses: 0" in table
    assert f"mail: outbox folder {settings.outbox.resolve()}" in table
    assert "readers: 1 active" in table and "next: 1 digest " in table
    bad = invoke(settings, "run", "--at", "tomorrow")
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_demo_as_a_newcomer_runs_it(tmp_path: Path) -> None:
    """The real console script, in a clean environment, with no network and no servers."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    digest_bin = Path(sys.executable).with_name("digest")
    result = subprocess.run(
        [str(digest_bin), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outbox = tmp_path / "digest-demo" / "outbox"
    emls = sorted(outbox.glob("*.eml"))
    assert len(emls) == 3
    assert len(list(outbox.glob("*.html"))) == 3
    for reader in ("ada@example.org", "grace@example.org", "alan@example.org"):
        assert reader in result.stdout
    assert "open " in result.stdout
    assert f"the emails are in {outbox}" in result.stdout
    # The README's links: arXiv searches for the real titles, never an invented id's page.
    html = emls[0].with_suffix(".html").read_text()
    assert "https://arxiv.org/search/?query=" in html
    assert "arxiv.org/abs/" not in html and "arxiv.org/pdf/" not in html
    # `make demo` twice: the second run starts a fresh demo and says where the emails are.
    again = subprocess.run(
        [str(digest_bin), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "held an earlier demo: starting a fresh one" in again.stdout
    assert f"the emails are in {outbox}" in again.stdout
    fresh = sorted(outbox.glob("*.eml"))
    assert len(fresh) == 3 and not set(fresh) & set(emls)
    # A folder with someone's real database is never cleared.
    real = tmp_path / "real"
    real.mkdir()
    other = subprocess.run(
        [str(digest_bin), "subscribers", "add", "me@example.org", "--confirmed"],
        cwd=real,
        env={**env, "DIGEST_DATABASE_URL": f"sqlite:///{real / 'digest.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    refused = subprocess.run(
        [str(digest_bin), "demo", "--dir", str(real)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "not a demo's" in refused.stderr
    assert (real / "digest.db").stat().st_size > 0
