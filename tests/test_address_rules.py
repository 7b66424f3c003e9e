"""One rule for every address that comes in (issue 9, item 9).

A local part over 64 octets (RFC 5321 §4.5.3.1.1) is refused, the whole address over
254; ``ada@example.org.`` (the domain written with the DNS root's dot) is
``ada@example.org``. Checked where addresses come in: the CLI (add, set, import,
send-test), the web subscribe form, mail commands to the real `digest inbound`, and
addresses named by bounces (the suppression list).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_settings
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.clikit import cli_env, noun_runner, one_line_error
from support.inboundkit import REQUEST, Listener, message, settled, with_smtp
from support.smtpserver import SmtpSink
from support.webkit import SIGNUP, Visitor, text

from digest import subscriptions as subs
from digest.cli import cli
from digest.config import Settings
from digest.core.addresses import email_key
from digest.errors import InvalidEmail
from digest.store import db, suppression
from digest.store.models import Subscriber, SubscriberStatus
from digest.subscriptions.validate import normalise_email

ADA = "ada@example.org"
LONG = "a" * 65 + "@example.org"  # one octet too many before the @


def _count(settings: Settings) -> int:
    with db.session_scope(settings) as s:
        return int(s.scalar(select(func.count()).select_from(Subscriber)) or 0)


def _get(settings: Settings, address: str) -> Subscriber | None:
    with db.session_scope(settings) as s:
        found = subs.get_subscriber(s, address)
        if found is not None:
            s.expunge(found)
        return found


def test_the_rule_itself() -> None:
    assert normalise_email("a" * 64 + "@example.org")[1] == "a" * 64 + "@example.org"
    with pytest.raises(InvalidEmail, match="too long before the @-sign"):
        normalise_email(LONG)
    # 250 characters as typed, over 254 octets in the IDNA form mail goes out with.
    idn = "a" * 60 + "@" + ".".join(["bücher" * 5] * 6) + ".org"
    with pytest.raises(InvalidEmail, match="too long"):
        normalise_email(idn)
    assert normalise_email("Ada@Example.org.") == normalise_email("Ada@Example.org")
    assert normalise_email("Ada@Bücher.example.")[1] == "ada@xn--bcher-kva.example"
    with pytest.raises(InvalidEmail):
        normalise_email("ada@example.org..")
    assert email_key("Ada@Example.ORG.") == email_key("ada@example.org") == ADA


def test_a_bounce_naming_the_address_with_a_dot_suppresses_the_mailbox(session: Session) -> None:
    suppression.suppress(session, "Ada@Example.org.", "550 5.1.1 no such user", 550)
    session.commit()
    assert suppression.is_suppressed(session, ADA)
    with pytest.raises(subs.SubscriptionError, match="suppression list"):
        subs.add_subscriber(session, ADA, confirmed=True)


def test_the_cli_applies_the_rule_to_add_set_import_and_send_test(
    db_url: str, tmp_path: Path
) -> None:
    env = cli_env(db_url, tmp_path, DIGEST_BASE_URL="https://digest.example.org")
    run = noun_runner("subscribers", env)
    assert "too long before the @-sign" in one_line_error(run("add", LONG, "--confirmed"))
    assert run("add", ADA, "--confirmed").exit_code == 0
    assert "already subscribed" in one_line_error(run("add", "ada@example.org.", "--confirmed"))
    moved = run("set", "ADA@example.org.", "--hour", "9")
    assert moved.exit_code == 0, moved.output
    settings = Settings(database_url=db_url)
    found = _get(settings, ADA)
    assert found is not None and found.send_hour == 9 and found.email == ADA
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"email\n{LONG}\nada@example.org.\nbob@example.org.\n")
    imported = run("import", str(csv_file), "--json")
    assert imported.exit_code == 0, imported.output
    assert '"imported": 1' in imported.stdout
    assert "too long before the @-sign" in imported.stdout
    assert "already subscribed" in imported.stdout
    bob = _get(settings, "bob@example.org")
    assert bob is not None and bob.email == "bob@example.org"
    assert _count(settings) == 2
    assert "too long before the @-sign" in one_line_error(
        CliRunner().invoke(cli, ["send-test", LONG], env=env)
    )


def test_the_subscribe_form_applies_the_rule(settings: Settings) -> None:
    web = Visitor(settings)
    refused = web.post("/subscribe", {**SIGNUP, "email": LONG})
    assert refused.status_code == 400 and "too long before the @-sign" in text(refused)
    assert _count(settings) == 0
    assert web.post("/subscribe", {**SIGNUP, "email": "Ada@Example.org."}).status_code == 200
    assert web.post("/subscribe", {**SIGNUP, "email": "ada@example.org"}).status_code == 200
    assert _count(settings) == 1
    found = _get(settings, ADA)
    assert found is not None and found.email == "Ada@example.org"


@pytest.mark.integration
def test_mail_commands_apply_the_rule(
    tmp_path: Path, smtp_server: SmtpSink, inbound_settings: Settings
) -> None:
    with db.session_scope(inbound_settings) as session:
        subs.add_subscriber(session, ADA, topics=["diffusion"], confirmed=True)
    listener = Listener(inbound_settings, tmp_path / "inbound.log").start()
    try:
        # The reader's own mail program wrote the domain with its root dot: still them.
        listener.send(message(from_="Ada <ada@example.org.>", body="pause"), ADA, [REQUEST])
        listener.send(message(from_=LONG, body="subscribe diffusion"), LONG, [REQUEST])
        settled(inbound_settings, 2)
    finally:
        listener.stop()
    found = _get(inbound_settings, ADA)
    assert found is not None and found.status is SubscriberStatus.PAUSED
    assert _count(inbound_settings) == 1  # no subscription for the over-long address


@pytest.fixture
def inbound_settings(db_url: str, tmp_path: Path, smtp_server: SmtpSink) -> Settings:
    return with_smtp(make_settings(db_url, tmp_path), smtp_server)
