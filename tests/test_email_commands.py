"""`digest preview` and `digest send-test` against a real database and SMTP server."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session
from support.factories import make_paper, seed
from support.smtpserver import SmtpSink

from digest.cli.commands.preview import commands, preview, send_test
from digest.cli.group import DigestGroup
from digest.config import Settings
from digest.core.clock import utcnow
from digest.store.suppression import suppress
from digest.subscriptions.lifecycle import add_subscriber

pytestmark = pytest.mark.integration


def cli_for(settings: Settings) -> click.Group:
    @click.group(cls=DigestGroup)
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = SimpleNamespace(get=lambda: settings)

    for command in commands:
        root.add_command(command)
    return root


def add_papers(session: Session, n: int = 6) -> None:
    now = utcnow()
    for i, title in enumerate(list(seed())[:n]):
        make_paper(
            session,
            title,
            seen=now - timedelta(minutes=10 + i),
            arxiv_id=f"2411.{i:05d}",
            authors=["Ada Lovelace", "Alan Turing"],
            last_seen_at=now,
        )
    session.commit()


def test_commands_are_exported() -> None:
    assert [c.name for c in commands] == ["preview", "send-test"]
    assert preview.help and "Example:" in preview.help
    assert send_test.help and "Example:" in send_test.help


def test_preview_writes_html_eml_and_prints_text(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    add_papers(session)
    add_subscriber(session, "ada@example.org", topics=["safety", "language models"], confirmed=True)
    session.commit()
    html, eml = tmp_path / "ada.html", tmp_path / "ada.eml"
    result = CliRunner().invoke(
        cli_for(settings),
        ["preview", "ADA@example.org", "--html", str(html), "--eml", str(eml), "--text"],
    )
    assert result.exit_code == 0, result.output
    assert "Subject: " in result.output and "To:      ada@example.org" in result.output
    assert "<html" in html.read_text()
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["To"] == "ada@example.org"
    assert msg["List-Unsubscribe"].startswith("<https://digest.example.org/unsubscribe/")
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Manage your topics: https://digest.example.org/manage/" in text
    assert text.replace("\r\n", "\n").strip() in result.output.replace("\r\n", "\n")
    assert not settings.outbox.exists() or not any(settings.outbox.iterdir())  # nothing sent


def test_preview_unknown_subscriber(settings: Settings) -> None:
    result = CliRunner().invoke(cli_for(settings), ["preview", "nobody@example.org"])
    assert result.exit_code == 1
    assert "no subscriber with the address 'nobody@example.org'" in result.output
    assert "Traceback" not in result.output


def test_send_test_through_smtp(
    settings: Settings, session: Session, smtp_server: SmtpSink
) -> None:
    add_papers(session, 3)

    smtp_settings = replace(settings, smtp_url=smtp_server.url)
    result = CliRunner().invoke(cli_for(smtp_settings), ["send-test", "me@example.org"])
    assert result.exit_code == 0, result.output
    assert "Answer:     sent: 250 2.0.0 Queued" in result.output
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["me@example.org"]
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert msg["Subject"].startswith("[test] 3 new papers")


def test_send_test_reports_refusal(settings: Settings, smtp_server: SmtpSink) -> None:
    smtp_server.rcpt_replies["me@example.org"] = "550 5.1.1 No such user"
    result = CliRunner().invoke(
        cli_for(replace(settings, smtp_url=smtp_server.url)), ["send-test", "me@example.org"]
    )
    assert result.exit_code == 1
    assert "Answer:     permanent: 550 5.1.1 No such user" in result.output
    assert "not accepted" in result.output


def test_send_test_to_outbox_with_builtin_samples(settings: Settings) -> None:
    result = CliRunner().invoke(cli_for(settings), ["send-test", "me@example.org"])
    assert result.exit_code == 0, result.output
    assert "Via:        outbox" in result.output
    emls = list(settings.outbox.glob("*.eml"))
    assert len(emls) == 1 and emls[0].with_suffix(".html").exists()
    assert "Aegis2.0" in emls[0].with_suffix(".html").read_text()


def test_send_test_refuses_bad_or_suppressed_address(settings: Settings, session: Session) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli_for(settings), ["send-test", "me@example.org\r\nBcc: x@evil.example"])
    assert bad.exit_code == 1 and "not a plain email address" in bad.output
    suppress(session, "gone@example.org", "550 no such user", 550)
    session.commit()
    refused = runner.invoke(cli_for(settings), ["send-test", "gone@example.org"])
    assert refused.exit_code == 1 and "suppression list" in refused.output
