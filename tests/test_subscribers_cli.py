"""`digest subscribers …` through click's CliRunner against a real database (both kinds)."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from conftest import TEST_SECRET
from support.clikit import cli_env, noun_runner, one_line_error

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.store.db import session_scope
from digest.store.models import Digest, DigestStatus, SubscriberStatus, Suppression

BAD_QUERY = '"machine unlearning'  # unclosed quote


@pytest.fixture
def run(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = cli_env(db_url, tmp_path, DIGEST_BASE_URL="https://digest.example.org")
    return noun_runner("subscribers", env)


@pytest.fixture
def cli_settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, secret_key=TEST_SECRET)


def test_add_pending_sends_the_confirmation_email(  # type: ignore[no-untyped-def]
    run, cli_settings: Settings, tmp_path: Path
) -> None:
    result = run(
        "add", "Ada@Example.org", "--topic", '"machine unlearning"', "--topic", "author:bengio",
        "--tz", "Europe/London", "--hour", "8", "--max", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "added Ada@example.org (pending), daily at 08:00 Europe/London, 2 topics, up to 10 papers"
    )
    assert lines[1] == (
        f"pending: confirmation email sent to Ada@example.org through the outbox "
        f"({tmp_path / 'outbox'}). Nothing is sent until they confirm."
    )
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=default_policy)
    assert message["To"] == "Ada@example.org"
    assert message["Subject"] == "Confirm your subscription to Paper Digest"
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    prefix = "https://digest.example.org/confirm/"
    link = next(w for w in body.split() if w.startswith(prefix))
    with session_scope(cli_settings) as session:
        sub = subs.confirm(session, link.removeprefix(prefix), settings=cli_settings)
        assert sub.email_key == "ada@example.org" and sub.status is SubscriberStatus.ACTIVE
        assert sub.consent_source == "cli" and "digest subscribers add" in sub.consent_detail


def test_add_pending_with_no_email_prints_the_link(  # type: ignore[no-untyped-def]
    run, cli_settings: Settings, tmp_path: Path
) -> None:
    result = run("add", "bob@example.org", "--no-email")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "no email sent (--no-email)" in lines[1]
    prefix = "https://digest.example.org/confirm/"
    assert lines[2].startswith(prefix)
    assert not list((tmp_path / "outbox").glob("*.eml"))
    with session_scope(cli_settings) as session:
        sub = subs.confirm(session, lines[2].removeprefix(prefix), settings=cli_settings)
        assert sub.status is SubscriberStatus.ACTIVE


def test_add_pending_with_a_broker_queues_the_email_for_the_workers(  # type: ignore[no-untyped-def]
    db_url: str, tmp_path: Path
) -> None:
    env = cli_env(db_url, tmp_path, DIGEST_BROKER_URL="redis://127.0.0.1:1/0")
    result = noun_runner("subscribers", env)("add", "carol@example.org")
    assert result.exit_code == 0, result.output
    assert "confirmation email to carol@example.org queued; the workers send it" in result.stdout
    assert not list((tmp_path / "outbox").glob("*.eml"))


def test_add_confirmed_weekly(run) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "add", "bob@example.org", "--confirmed", "--frequency", "weekly", "--weekday", "FRI",
        "--hour", "18",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "added bob@example.org (active), weekly on fri at 18:00 UTC, 0 topics, up to 20 papers"
    )
    assert "confirm" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x@"], '"x@": the email address is not valid: There must be something after the @-sign.'),
        (["a@example.org", "--tz", "Europe/Pari"], 'unknown time zone "Europe/Pari": did you mean'),
        (["a@example.org", "--hour", "24"], 'the send hour "24" is not a whole hour from 0 to 23'),
        (["a@example.org", "--max", "0"], "from 1 to 100"),
        (["a@example.org", "--topic", BAD_QUERY], f'bad topic query "{BAD_QUERY}"'),
        (["a@example.org", "--tz", "Etc/GMT+5"], "use a city zone such as America/New_York"),
        (["a@example.org", "--tz", "EST"], '"EST" is a fixed offset or an abbreviation'),
        (["a@example.org", "--tz", "MST"], "not a place"),
    ],
)
def test_add_errors_are_one_line(run, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    assert message in one_line_error(run("add", *args))
    assert json.loads(run("list", "--json").stdout) == []


def test_add_duplicate_says_it_exists_and_its_status(run) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "ada@example.org", "--confirmed").exit_code == 0
    assert one_line_error(run("add", "ADA@example.org")) == (
        "ada@example.org is already subscribed (status: active)"
    )


def test_repeated_topics_of_any_case_are_stored_once(run) -> None:  # type: ignore[no-untyped-def]
    result = run("add", "h9@example.org", "--topic", "trending", "--topic", "TRENDING")
    assert result.exit_code == 0, result.output
    topics = json.loads(run("show", "h9@example.org", "--json").stdout)["topics"]
    assert [t["query"] for t in topics] == ["trending"]


def test_add_an_unsubscribed_address_needs_fresh_consent(run, cli_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    run("add", "Ann@example.org", "--confirmed", "--topic", "llm", "--tz", "Europe/Paris")
    run("remove", "ann@example.org", "--keep-record")
    left = json.loads(run("show", "ann@example.org", "--json").stdout)["unsubscribed_at"][:10]

    pending = run("add", "ann@example.org", "--topic", "agents")
    assert pending.exit_code == 0, pending.output
    lines = pending.stdout.splitlines()
    assert lines[0] == (
        f"Ann@example.org unsubscribed on {left}: subscribing them again needs their fresh "
        "consent (their earlier consent record is kept in the consent detail)"
    )
    assert lines[1] == (
        "subscribed again Ann@example.org (pending), daily at 07:00 Europe/Paris, "
        "2 topics, up to 20 papers"
    )
    assert lines[2].startswith("pending: confirmation email sent to Ann@example.org")
    record = json.loads(run("show", "ann@example.org", "--json").stdout)
    assert record["status"] == "pending" and record["consent"]["source"] == "cli"
    assert f"unsubscribed at {left}" in record["consent"]["detail"]

    run("remove", "ann@example.org", "--keep-record")
    active = run("add", "ann@example.org", "--confirmed", "--hour", "9")
    assert active.exit_code == 0, active.output
    assert "; you confirmed you have it" in active.stdout.splitlines()[0]
    assert active.stdout.splitlines()[1] == (
        "subscribed again Ann@example.org (active), daily at 09:00 Europe/Paris, "
        "2 topics, up to 20 papers"
    )
    assert "confirm" not in active.stdout.splitlines()[-1]
    # Still one row, with its history.
    assert [r["email"] for r in json.loads(run("list", "--json").stdout)] == ["Ann@example.org"]


def test_add_a_bounced_address_points_at_unsuppress(run, cli_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    from digest.store import suppression

    run("add", "bob@example.org", "--confirmed")
    with session_scope(cli_settings) as session:
        sub = subs.get_subscriber(session, "bob@example.org")
        assert sub is not None
        sub.status = SubscriberStatus.BOUNCED
        suppression.suppress(session, "bob@example.org", "550 no such user", 550)
    assert one_line_error(run("add", "bob@example.org", "--confirmed")) == (
        "bob@example.org is bounced: mail to it failed permanently; if the address works "
        "again, lift that with `digest subscribers unsuppress bob@example.org`"
    )


def test_list_filters_and_json(run) -> None:  # type: ignore[no-untyped-def]
    assert "no subscribers" in run("list").stdout
    run("add", "ada@example.org", "--confirmed", "--topic", "llm", "--topic", "rl")
    run("add", "bob@example.org")
    table = run("list").stdout
    assert "ada@example.org" in table and "bob@example.org" in table
    assert table.splitlines()[0].split() == [
        "email",
        "status",
        "schedule",
        "max",
        "topics",
        "since",
    ]
    rows = json.loads(run("list", "--json").stdout)
    assert [(r["email"], r["status"], r["topics"]) for r in rows] == [
        ("ada@example.org", "active", 2),
        ("bob@example.org", "pending", 0),
    ]
    pending = json.loads(run("list", "--status", "pending", "--json").stdout)
    assert [r["email"] for r in pending] == ["bob@example.org"]
    assert "with status paused" in run("list", "--status", "paused").stdout
    assert run("list", "--status", "nonsense").exit_code == 2


def test_show_has_settings_topics_consent_and_digests(run, cli_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    run("add", "ada@example.org", "--confirmed", "--topic", "author:bengio", "--tz", "Asia/Tokyo")
    with session_scope(cli_settings) as session:
        sub = subs.get_subscriber(session, "ada@example.org")
        assert sub is not None
        session.add(
            Digest(
                subscriber_id=sub.id,
                period="2026-11-28",
                status=DigestStatus.SENT,
                sent_at=utcnow(),
                paper_ids=[1, 2, 3],
            )
        )
    text = run("show", "ADA@example.org").stdout
    for expected in ("status:", "active", "Asia/Tokyo", "author:bengio", "consent:", "2026-11-28"):
        assert expected in text
    record = json.loads(run("show", "ada@example.org", "--json").stdout)
    assert record["status"] == "active" and record["timezone"] == "Asia/Tokyo"
    assert record["topics"][0]["query"] == "author:bengio"
    assert record["consent"]["source"] == "cli"
    assert record["digests"] == [
        {
            "period": "2026-11-28",
            "status": "sent",
            "planned_at": record["digests"][0]["planned_at"],
            "sent_at": record["digests"][0]["sent_at"],
            "papers": 3,
            "attempts": 0,
            "error": None,
        }
    ]
    assert record["suppression"] is None
    with session_scope(cli_settings) as session:
        session.add(
            Suppression(email_key="ada@example.org", reason="550 no such user", smtp_code=550)
        )
    assert (
        "suppressed:     refused at sending: 550 no such user"
        in run("show", "ada@example.org").stdout
    )
    assert (
        json.loads(run("show", "ada@example.org", "--json").stdout)["suppression"]["smtp_code"]
        == 550
    )
    assert one_line_error(run("show", "nobody@example.org")) == (
        "no subscriber with the address nobody@example.org"
    )


def test_pause_and_resume(run) -> None:  # type: ignore[no-untyped-def]
    run("add", "ada@example.org", "--confirmed")
    run("add", "bob@example.org")
    assert run("pause", "ada@example.org").stdout.strip() == "ada@example.org paused"
    assert run("pause", "ada@example.org").stdout.strip() == "ada@example.org was already paused"
    assert run("resume", "ada@example.org").stdout.strip() == "ada@example.org resumed"
    assert run("resume", "ada@example.org").stdout.strip() == "ada@example.org is already active"
    assert "has not confirmed" in one_line_error(run("pause", "bob@example.org"))
    assert one_line_error(run("resume", "carol@example.org")).startswith("no subscriber")


def test_remove_asks_unless_yes_and_keep_record_unsubscribes(run) -> None:  # type: ignore[no-untyped-def]
    run("add", "ada@example.org", "--confirmed", "--topic", "llm")
    run("add", "bob@example.org", "--confirmed")
    refused = run("remove", "ada@example.org", input="n\n")
    assert refused.exit_code == 1 and "Delete ada@example.org (active)" in refused.output
    assert run("show", "ada@example.org").exit_code == 0
    assert run("remove", "ada@example.org", input="y\n").exit_code == 0
    assert run("show", "ada@example.org").exit_code == 1
    kept = run("remove", "bob@example.org", "--keep-record")
    assert kept.stdout.strip() == "bob@example.org unsubscribed"
    record = json.loads(run("show", "bob@example.org", "--json").stdout)
    assert record["status"] == "unsubscribed" and record["unsubscribed_at"]
    assert record["consent"]["source"] == "cli"
    assert run("remove", "bob@example.org", "--yes").stdout.strip() == "removed bob@example.org"
    assert json.loads(run("list", "--json").stdout) == []


def test_import_mixed_rows_reports_each_bad_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("add", "stored@example.org", "--confirmed")
    path = tmp_path / "readers.csv"
    path.write_text(
        "email,topics,timezone,frequency,hour,max,notes\n"
        'ada@example.org,"llm; author:bengio",Europe/Paris,daily,8,10,vip\n'
        "x@,,,,,,\n"
        "bob@example.org,,,weekly,,,\n"
        'carol@example.org,"""machine unlearning",,,,,\n'
        "stored@example.org,,,,,,\n"
        "dan@example.org,,Mars/Base,,,,\n",
        encoding="utf-8",
    )
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "imported 2 of 6 rows (2 topics); 4 bad rows"
    assert lines[1].startswith('line 3: "x@": the email address is not valid: ')
    assert lines[2].startswith(f'line 5: "carol@example.org": bad topic query "{BAD_QUERY}"')
    assert lines[3] == (
        'line 6: "stored@example.org": already subscribed (status: active); '
        "an import with --update changes existing subscribers"
    )
    assert lines[4].startswith('line 7: "dan@example.org": unknown time zone "Mars/Base"')
    assert "warning: ignoring unknown column(s): notes" in result.stderr
    emails = [r["email"] for r in json.loads(run("list", "--json").stdout)]
    assert emails == ["stored@example.org", "ada@example.org", "bob@example.org"]
    ada = json.loads(run("show", "ada@example.org", "--json").stdout)
    assert ada["status"] == "active" and ada["consent"]["source"] == "import"
    assert "readers.csv" in ada["consent"]["detail"]

    # The same file again: every row is now bad or already there, nothing imported: exit 1.
    again = run("import", str(path), "--json")
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert (report["imported"], report["bad"]) == (0, 6)


def test_import_reports_an_unclosed_quote_and_reads_on(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "quote.csv"
    path.write_text('email,topics\n"unterminated@example.org,llm\nnext@example.org,x\n')
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "imported 1 of 2 rows (1 topic); 1 bad row",
        'line 2: ""unterminated@example.org,llm": unclosed quote: a quoted value must end on '
        "the line where it starts (the row is skipped; the next line is read as a row of its "
        "own)",
    ]
    assert [r["email"] for r in json.loads(run("list", "--json").stdout)] == ["next@example.org"]


def test_import_dry_run_and_file_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.csv"
    good.write_text("email\nada@example.org\n")
    result = run("import", str(good), "--dry-run")
    assert result.stdout.splitlines()[0] == "would import 1 of 1 rows (0 topics); 0 bad rows"
    assert json.loads(run("list", "--json").stdout) == []
    no_header = tmp_path / "no-header.csv"
    no_header.write_text("ada@example.org,llm\n")
    assert "the file has no header row" in one_line_error(run("import", str(no_header)))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email\nbj\xf6rn@example.org\n".encode("latin-1"))
    assert "is not UTF-8 text" in one_line_error(run("import", str(latin)))
    missing = run("import", str(tmp_path / "missing.csv"))
    assert "cannot read" in one_line_error(missing)


def test_export_import_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("add", "ada@example.org", "--confirmed", "--topic", '"a; b" OR c', "--topic", "llm",
        "--tz", "America/New_York", "--frequency", "weekly", "--weekday", "wed", "--hour", "6",
        "--max", "5")  # fmt: skip
    run("add", "bob@example.org", "--confirmed")
    run("pause", "bob@example.org")
    run("add", "pending@example.org")
    run("add", "gone@example.org", "--confirmed")
    run("remove", "gone@example.org", "--keep-record")

    exported = run("export").stdout
    assert exported.splitlines() == [
        "email,topics,timezone,frequency,weekday,hour,max,status,labels",
        'ada@example.org,"""a\\; b"" OR c; llm",America/New_York,weekly,wed,6,5,active,',
        "bob@example.org,,UTC,daily,mon,7,20,paused,",
    ]
    out = tmp_path / "export.csv"
    written = run("export", "-o", str(out))
    assert written.stdout.strip() == f"exported 2 subscribers to {out}"
    assert out.read_text() == exported
    everyone = json.loads(run("export", "--json", "--all").stdout)
    assert sorted(r["status"] for r in everyone) == ["active", "paused", "pending", "unsubscribed"]
    pending_only = json.loads(run("export", "--json", "--status", "pending").stdout)
    assert [r["email"] for r in pending_only] == ["pending@example.org"]

    for email in ("ada@example.org", "bob@example.org", "pending@example.org", "gone@example.org"):
        assert run("remove", email, "--yes").exit_code == 0
    imported = run("import", str(out))
    assert imported.stdout.splitlines()[0] == "imported 2 of 2 rows (2 topics); 0 bad rows"
    assert run("export").stdout == exported
