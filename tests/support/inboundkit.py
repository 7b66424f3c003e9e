"""A real `digest inbound` process on a free port, and messages to send it with smtplib."""

from __future__ import annotations

import email
import email.policy
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.config import Settings
from digest.store import db
from digest.store.models import InboundMessage, InboundStatus
from support.services import child_env, free_port, wait_until
from support.smtpserver import SmtpSink

DIGEST = Path(sys.executable).with_name("digest")
REQUEST = "papers-request@digest.example.org"


class Listener:
    """`digest inbound` as a subprocess: started, waited for, stopped, its log kept."""

    def __init__(self, settings: Settings, log: Path, *, lmtp: bool = False) -> None:
        self.settings = settings
        self.port = free_port()
        self.log = log
        self.lmtp = lmtp
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Listener:
        args = [str(DIGEST), "inbound", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.lmtp:
            args.append("--lmtp")
        self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            args, env=child_env(self.settings), stdout=self._log_file, stderr=subprocess.STDOUT
        )
        wait_until(
            lambda: b"digest inbound:" in self.log.read_bytes() or self.process.poll() is not None,  # type: ignore[union-attr]
            60,
            "digest inbound to start",
        )
        assert self.process.poll() is None, self.log.read_text(errors="replace")
        return self

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.terminate()
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log_file.close()
        self.process = None
        return code

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, raw: bytes, mail_from: str, rcpts: list[str]) -> dict[str, tuple[int, bytes]]:
        """smtplib.sendmail: the refused recipients (raises if all are refused)."""
        client: smtplib.SMTP = smtplib.LMTP if self.lmtp else smtplib.SMTP  # type: ignore[assignment]
        with client("127.0.0.1", self.port, timeout=30) as smtp:
            return smtp.sendmail(mail_from, rcpts, raw)


@pytest.fixture
def listener(
    tmp_path: Path, smtp_server: SmtpSink, inbound_settings: Settings
) -> Iterator[Listener]:
    running = Listener(inbound_settings, tmp_path / "inbound.log").start()
    try:
        yield running
    finally:
        running.stop()


def with_smtp(settings: Settings, sink: SmtpSink) -> Settings:
    return replace(settings, smtp_url=f"{sink.url}?timeout=10")


def message(
    from_: str | None = "Ada <ada@example.org>",
    to: str = REQUEST,
    subject: str = "",
    body: str = "",
    *,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    if from_ is not None:
        msg["From"] = from_
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.org")
    msg["Date"] = email.utils.formatdate()
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def rows(settings: Settings) -> list[InboundMessage]:
    with db.session_scope(settings) as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def settled(settings: Settings, count: int) -> list[InboundMessage]:
    """Wait until at least ``count`` messages are recorded and none is still open."""

    def check() -> list[InboundMessage] | None:
        found = rows(settings)
        if len(found) >= count and all(
            r.status not in (InboundStatus.RECEIVED, InboundStatus.ACTED) for r in found
        ):
            return found
        return None

    return wait_until(
        check,
        60,
        f"{count} inbound message(s) handled",
        details=lambda: "\n".join(f"{r.id} {r.status} {r.result}" for r in rows(settings)),
    )


def replies_to(sink: SmtpSink, address: str) -> list[Message]:
    return [email.message_from_bytes(m.data) for m in sink.to(address)]


def text_of(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")
