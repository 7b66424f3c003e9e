"""A reader's history and what happens next, through the real `digest` command.

`digest digests list/show/resend`, `digest run` saying where mail went and when the
next digests are due, the refusal to mail links no reader can open, database
errors in one line, and readable topic labels in the emails: on SQLite and
PostgreSQL, with a real SMTP server where mail goes over SMTP.
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import TEST_SECRET
from sqlalchemy import select
from support.clikit import cli_env, one_line_error
from support.services import free_port
from support.smtpserver import SmtpSink

from digest.cli import cli
from digest.config import Settings
from digest.store.db import session_scope
from digest.store.models import Digest, DigestResend, DigestStatus, Paper, Topic
from digest.subscriptions.lifecycle import add_subscriber

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)  # a Monday; readers' send hour is 09:00 UTC


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    settings = Settings(database_url=db_url, secret_key=TEST_SECRET, outbox=tmp_path / "outbox")
    with session_scope(settings) as session:
        for i, (title, abstract) in enumerate(
            [
                ("Jailbreak attacks on aligned models", "We study jailbreak prompts."),
                ("Open Problems in Machine Unlearning", "Machine unlearning and forgetting."),
            ]
        ):
            session.add(
                Paper(
                    key=f"arxiv:2511.0000{i}",
                    arxiv_id=f"2511.0000{i}",
                    title=title,
                    abstract=abstract,
                    categories=["cs.CR"] if i == 0 else ["cs.LG"],
                    url=f"https://arxiv.org/abs/2511.0000{i}",
                    first_seen_at=T - timedelta(hours=2),
                    last_seen_at=T,
                )
            )
        for address in ("ada@example.org", "bob@example.org"):
            add_subscriber(
                session,
                address,
                topics=["cat:cs.CR AND jailbreak", "machine unlearning"],
                confirmed=True,
                hour=9,
                now=T - timedelta(days=1),
            )
    return settings


def runner(settings: Settings, tmp_path: Path, **extra: str):  # type: ignore[no-untyped-def]
    env = cli_env(settings.database_url, tmp_path, DIGEST_BASE_URL="https://digest.example.org")
    env.update(extra)

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def digest(settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    return runner(settings, tmp_path)


def _run(digest, at: datetime = T) -> Result:  # type: ignore[no-untyped-def]
    result = digest("run", "--no-fetch", "--at", at.isoformat())
    assert result.exit_code == 0, result.output
    return result


# --- digest run: where mail went, what comes next -----------------------------------------


def test_run_says_where_mail_went_and_when_the_next_digests_are_due(  # type: ignore[no-untyped-def]
    digest, settings: Settings
) -> None:
    first = _run(digest).stdout.splitlines()
    assert first == [
        "planned 2 digests",
        "digests: 2 sent",
        f"mail: outbox folder {settings.outbox.resolve()}",
        "next: 2 digests tomorrow at 09:00 UTC, in 23 h 30 min",
    ]
    quiet = _run(digest, T + timedelta(minutes=15)).stdout.splitlines()
    assert quiet == [
        "planned 0 digests",
        "digests: none due",
        "next: 2 digests tomorrow at 09:00 UTC, in 23 h 15 min",
    ]
    # One reader moves to Tokyo at 08:00 their time: the next digest is theirs, sooner.
    moved = digest("subscribers", "set", "bob@example.org", "--tz", "Asia/Tokyo", "--hour", "8")
    assert moved.exit_code == 0, moved.output
    later = _run(digest, T + timedelta(minutes=20)).stdout.splitlines()
    assert later[-1] == "next: 1 digest tomorrow at 08:00 Asia/Tokyo, in 13 h 10 min"
    # Moving west puts the reader's current period before their last digest: it is
    # skipped, never sent as yesterday's digest late.
    west = digest("subscribers", "set", "ada@example.org", "--tz", "America/Los_Angeles")
    assert west.exit_code == 0, west.output
    emails = len(list(settings.outbox.glob("*.eml")))
    assert _run(digest, T + timedelta(minutes=22)).stdout.splitlines()[:2] == [
        "planned 1 digest",
        "digests: 1 skipped",
    ]
    assert len(list(settings.outbox.glob("*.eml"))) == emails
    with session_scope(settings) as session:
        late = session.scalars(select(Digest).where(Digest.status == DigestStatus.SKIPPED)).one()
        assert late.period == "2026-11-29" and (late.error or "").startswith("superseded")
    assert digest("subscribers", "set", "ada@example.org", "--tz", "UTC").exit_code == 0
    at = (T + timedelta(minutes=25)).isoformat()
    data = json.loads(digest("run", "--no-fetch", "--at", at, "--json").stdout)
    assert data["next"]["readers"] == 1
    assert data["next"]["zones"] == [
        {"timezone": "Asia/Tokyo", "readers": 1, "local": "2026-12-01T08:00:00+09:00"}
    ]
    assert data["mail"] == f"outbox folder {settings.outbox.resolve()}"


def test_run_over_smtp_with_links_no_reader_can_open_is_refused(  # type: ignore[no-untyped-def]
    settings: Settings, tmp_path: Path, smtp_server: SmtpSink
) -> None:
    for base in ("http://localhost:8000", "https://127.0.0.1:8443", "http://digest.example.org"):
        digest = runner(settings, tmp_path, DIGEST_SMTP_URL=smtp_server.url, DIGEST_BASE_URL=base)
        message = one_line_error(digest("run", "--no-fetch", "--at", T.isoformat()))
        assert message.startswith(f"refusing to send mail over SMTP: DIGEST_BASE_URL={base} ")
        assert "DIGEST_ALLOW_INSECURE_LINKS=1" in message
        assert "refusing to send" in one_line_error(digest("send-test", "ada@example.org"))
        # stats says so too, as a warning.
        assert "refusing to send mail over SMTP" in digest("stats").stderr
    with session_scope(settings) as session:
        assert list(session.scalars(select(Digest))) == []  # nothing planned, nothing claimed
    assert smtp_server.messages == []
    allowed = runner(
        settings,
        tmp_path,
        DIGEST_SMTP_URL=smtp_server.url,
        DIGEST_BASE_URL="http://localhost:8000",
        DIGEST_ALLOW_INSECURE_LINKS="1",
    )
    sent = allowed("run", "--no-fetch", "--at", T.isoformat())
    assert sent.exit_code == 0, sent.output
    assert f"mail: SMTP server 127.0.0.1:{smtp_server.port} (none)" in sent.stdout
    assert len(smtp_server.messages) == 2
    # The password of an SMTP URL is never printed.
    secret = runner(
        settings,
        tmp_path,
        DIGEST_SMTP_URL=f"smtp://user:s3cret@127.0.0.1:{smtp_server.port}",
    )
    report = secret("stats", "--json")
    assert "s3cret" not in report.output
    assert json.loads(report.stdout)["mail"] == f"SMTP server 127.0.0.1:{smtp_server.port} (none)"


# --- digests list / show / resend ----------------------------------------------------------


def test_list_and_show_a_readers_history(digest, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    _run(digest)
    _run(digest, T + timedelta(days=1))  # nothing new: skipped
    listed = json.loads(digest("digests", "list", "ada@example.org", "--json").stdout)
    assert [(d["period"], d["status"], d["papers"]) for d in listed] == [
        ("2026-12-01", "skipped", 0),
        ("2026-11-30", "sent", 2),
    ]
    everyone = json.loads(digest("digests", "list", "--status", "sent", "--json").stdout)
    assert sorted(d["email"] for d in everyone) == ["ada@example.org", "bob@example.org"]
    since = json.loads(digest("digests", "list", "--since", "2026-12-01", "--json").stdout)
    assert {d["period"] for d in since} == {"2026-12-01"}
    table = digest("digests", "list", "ada@example.org").stdout
    assert "skipped" in table and "no new papers" in table
    assert "no digests for bob@example.org with status failed" in (
        digest("digests", "list", "bob@example.org", "--status", "failed").stdout
    )
    assert "no subscriber with the address nobody@example.org" in one_line_error(
        digest("digests", "list", "nobody@example.org")
    )

    sent = next(d for d in listed if d["status"] == "sent")
    record = json.loads(digest("digests", "show", str(sent["id"]), "--json").stdout)
    assert record["window"]["end"] is not None and record["attempts"] == 1
    assert record["message_id"].startswith(f"<digest-{sent['id']}.")
    assert sorted(p["title"] for p in record["papers"]) == [
        "Jailbreak attacks on aligned models",
        "Open Problems in Machine Unlearning",
    ]
    eml = Path(record["reply"].removeprefix("written to "))
    assert eml.is_file()  # the outbox's answer says where the message is
    shown = digest("digests", "show", str(sent["id"])).stdout
    for part in (
        "status:     sent",
        "message-id:",
        "window:",
        "attempts:   1",
        "answer:",
        "2511.00000",
    ):
        assert part in shown, part
    assert "no digest with id 999" in one_line_error(digest("digests", "show", "999"))


def test_resend_sends_the_same_papers_with_a_new_message_id(  # type: ignore[no-untyped-def]
    digest, settings: Settings
) -> None:
    _run(digest)
    with session_scope(settings) as session:
        first = session.scalars(select(Digest).order_by(Digest.id)).first()
        assert first is not None
        digest_id, message_id, papers = first.id, first.message_id, list(first.paper_ids)
        window = (first.window_start, first.window_end)
    # The reader's topics change meanwhile: the resend still carries what went out.
    with session_scope(settings) as session:
        session.execute(Topic.__table__.delete().where(Topic.query == "machine unlearning"))
    result = digest("digests", "resend", str(digest_id), "--yes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"digest {digest_id} for ada@example.org recorded as a resend")
    assert lines[-1].startswith(f"digest {digest_id}: sent: written to ")
    with session_scope(settings) as session:
        again = session.get(Digest, digest_id)
        assert again is not None
        assert again.status is DigestStatus.SENT and again.message_id != message_id
        assert (again.window_start, again.window_end) == window
        assert again.paper_ids == papers and again.attempts == 1
        (resend,) = session.scalars(select(DigestResend))
        assert (resend.previous_status, resend.previous_message_id) == ("sent", message_id)
        assert resend.previous_attempts == 1 and resend.previous_reply.startswith("written to")
    emls = sorted(settings.outbox.glob("*.eml"))
    assert len(emls) == 3  # two digests, one resend
    newest = max(emls, key=lambda p: p.stat().st_mtime)
    message = email.message_from_bytes(newest.read_bytes(), policy=email.policy.default)
    assert message["Message-ID"] != message_id
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Open Problems in Machine Unlearning" in body  # the same papers as the first time
    shown = digest("digests", "show", str(digest_id)).stdout
    assert f"before: sent, {message_id}, 1 attempt(s)" in shown
    assert "resent 1x" in digest("digests", "list", "ada@example.org").stdout
    # A resend is asked for unless --yes.
    asked = digest("digests", "resend", str(digest_id), input="n\n")
    assert asked.exit_code == 1 and "Aborted" in asked.output


def test_resend_refusals_are_one_line(digest, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    _run(digest)
    _run(digest, T + timedelta(days=1))
    with session_scope(settings) as session:
        rows = {(d.subscriber.email, d.status): d.id for d in session.scalars(select(Digest))}
    skipped = rows[("ada@example.org", DigestStatus.SKIPPED)]
    assert "was skipped (no new papers): no email went out" in one_line_error(
        digest("digests", "resend", str(skipped), "--yes")
    )
    sent = rows[("bob@example.org", DigestStatus.SENT)]
    assert digest("subscribers", "pause", "bob@example.org").exit_code == 0
    assert "bob@example.org is paused: digests go to active readers only" in one_line_error(
        digest("digests", "resend", str(sent), "--yes")
    )
    assert "no digest with id 4242" in one_line_error(digest("digests", "resend", "4242", "--yes"))
    with session_scope(settings) as session:
        assert list(session.scalars(select(DigestResend))) == []


# --- emails name topics in plain words ------------------------------------------------------


def test_subjects_and_headings_show_labels_never_raw_syntax(  # type: ignore[no-untyped-def]
    digest, settings: Settings
) -> None:
    with session_scope(settings) as session:
        # A topic saved before default labels were readable: its label is the query.
        legacy = session.scalars(select(Topic).where(Topic.query == "machine unlearning")).first()
        assert legacy is not None
        legacy.query = legacy.label = '"machine unlearning" OR title:forgetting'
    _run(digest)
    subjects, htmls, texts = [], [], []
    for path in sorted(settings.outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subjects.append(str(message["Subject"]))
        htmls.append(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
        texts.append(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert any("cs.CR jailbreak" in s for s in subjects), subjects
    for text in [*subjects, *htmls, *texts]:
        assert "CAT:" not in text and "cat:cs.CR" not in text and " AND " not in text
        assert "OR title:" not in text
    assert any("machine unlearning or forgetting" in h for h in htmls)
    assert any("== cs.CR jailbreak (1) ==" in t for t in texts)
    # The section heading is shown as written, not forced into capitals.
    heading = htmls[0].split("cs.CR jailbreak</span>")[0].rsplit("<span", 1)[1]
    assert "uppercase" not in heading


# --- errors are one line ----------------------------------------------------------------------


def test_database_errors_are_one_line_without_sqlalchemy_background(tmp_path: Path) -> None:
    cases = {
        f"postgresql://nobody@127.0.0.1:{free_port()}/digest": "connection refused",
        f"sqlite:///{tmp_path / 'missing' / 'dir' / 'digest.db'}": "unable to open database",
    }
    for url, fragment in cases.items():
        for args in (["stats"], ["digests", "list"], ["run", "--no-fetch"]):
            result = CliRunner().invoke(cli, args, env={"DIGEST_DATABASE_URL": url})
            message = one_line_error(result)
            assert message.startswith("database error at "), message
            assert fragment in message.lower()
            assert "Background on this error" not in result.output
            assert "sqlalche.me" not in result.output
