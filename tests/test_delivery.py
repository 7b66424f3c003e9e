"""Delivery: SMTP outcomes against a real aiosmtpd server, the outbox, suppression, rate."""

from __future__ import annotations

import email
import email.policy
import os
import re
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from support.emailkit import context, email_settings, seed_papers
from support.smtpserver import SmtpSink, start_sink

from digest.config import parse_smtp_url
from digest.deliver import smtp, transport_from_settings
from digest.deliver.message import build_message, make_message_id
from digest.deliver.outbox import OutboxTransport, outbox_paths
from digest.deliver.smtp import SmtpTransport
from digest.deliver.transport import (
    BACKOFF_CAP,
    Envelope,
    Outcome,
    RateLimiter,
    backoff_seconds,
)
from digest.errors import ConfigError
from digest.render.emails import render_digest
from digest.store.suppression import get_suppression, is_suppressed, suppress, unsuppress

SIMPLE = b"From: digest@digest.example.org\r\nSubject: test\r\n\r\n.leading dot\r\nbody\r\n"


def send_all(transport: SmtpTransport, recipients: list[str]) -> dict[str, Outcome]:
    return {
        to: transport.send("digest@digest.example.org", to, SIMPLE, f"<{i}@x>")
        for i, to in enumerate(recipients)
    }


# --- SMTP against a real server ----------------------------------------------------------


def send_all_many(transport: SmtpTransport, recipients: list[str]) -> dict[str, Outcome]:
    """The same messages through send_many, each built only when the transport asks."""
    built: list[str] = []

    def messages() -> Iterator[tuple[str, Envelope]]:
        for i, to in enumerate(recipients):
            built.append(to)
            yield to, Envelope("digest@digest.example.org", to, SIMPLE, f"<{i}@x>")

    out = {}
    for to, outcome in transport.send_many(messages()):
        out[to] = outcome
        # A message whose content went out has its answer read only after the next
        # message was taken (built while the server stores this one); never two ahead.
        ahead = outcome.stage == "message" and to != recipients[-1]
        assert len(built) == len(out) + ahead, (to, outcome)
    return out


@pytest.mark.integration
@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
@pytest.mark.parametrize("pipelining", [False, True])
def test_outcomes_message_by_message(smtp_server: SmtpSink, pipelining: bool, many: bool) -> None:
    smtp_server.pipelining = pipelining
    smtp_server.rcpt_replies.update(
        {
            "closing@example.org": "421 4.3.2 Service shutting down",
            "full@example.org": "452 4.2.2 Mailbox full",
            "gone@example.org": "550 5.1.1 No such user here",
        }
    )
    smtp_server.data_replies.update(
        {
            "greylisted@example.org": "451 4.7.1 Greylisted, try again later",
            "spam@example.org": "554 5.7.1 Message rejected as spam",
        }
    )
    smtp_server.drop_after_data.add("lost@example.org")
    before = datetime.now(UTC)
    order = [
        "ok1@example.org",
        "closing@example.org",
        "ok2@example.org",
        "greylisted@example.org",
        "full@example.org",
        "gone@example.org",
        "spam@example.org",
        "lost@example.org",
        "ok3@example.org",
    ]
    with SmtpTransport(smtp_server.url) as transport:
        out = (send_all_many if many else send_all)(transport, order)
        # Pipelined exactly when offered, one write per transaction.
        assert transport.pipelined == (len(order) if pipelining else 0)
    expect = {
        "ok1@example.org": ("sent", 250, "rcpt?"),
        "closing@example.org": ("transient", 421, "rcpt"),
        "ok2@example.org": ("sent", 250, ""),
        "greylisted@example.org": ("transient", 451, "message"),
        "full@example.org": ("transient", 452, "rcpt"),
        "gone@example.org": ("permanent", 550, "rcpt"),
        "spam@example.org": ("permanent", 554, "message"),
        "lost@example.org": ("unknown", None, "message"),
        "ok3@example.org": ("sent", 250, ""),
    }
    for to, (status, code, stage) in expect.items():
        assert out[to].status == status, (to, out[to])
        assert out[to].code == code, (to, out[to])
        if stage in ("rcpt", "message"):
            assert out[to].stage == stage
    assert "No such user here" in out["gone@example.org"].message
    assert "rejected as spam" in out["spam@example.org"].message
    assert "may have been delivered" in out["lost@example.org"].message
    for to in ("closing@example.org", "greylisted@example.org", "full@example.org"):
        retry_at = out[to].retry_at
        assert retry_at is not None and before + timedelta(seconds=29) <= retry_at
        assert retry_at <= datetime.now(UTC) + timedelta(seconds=61)
    assert out["gone@example.org"].should_suppress
    assert not out["spam@example.org"].should_suppress  # content policy, not the address
    assert all(out[t].retry_at is None for t in ("gone@example.org", "lost@example.org"))
    # The server has what it said it had, plus the one it stored before dropping.
    received = [m.rcpt_tos[0] for m in smtp_server.messages]
    assert received == ["ok1@example.org", "ok2@example.org", "lost@example.org", "ok3@example.org"]
    assert smtp_server.messages[0].data == SIMPLE  # dot-stuffing undone by the server


@pytest.mark.integration
@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
@pytest.mark.parametrize("pipelining", [False, True])
def test_many_messages_over_one_connection(
    smtp_server: SmtpSink, pipelining: bool, many: bool
) -> None:
    smtp_server.pipelining = pipelining
    recipients = [f"reader{i}@example.org" for i in range(25)]
    with SmtpTransport(smtp_server.url) as transport:
        outcomes = (send_all_many if many else send_all)(transport, recipients)
        assert transport.connections == 1
        assert transport.pipelined == (25 if pipelining else 0)
    assert all(o.status == "sent" for o in outcomes.values())
    assert smtp_server.connections == 1
    assert {m.connection for m in smtp_server.messages} == {1}
    assert len(smtp_server.messages) == 25


@pytest.mark.integration
@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
@pytest.mark.parametrize("pipelining", [False, True])
def test_reconnects_when_server_closes_connection(
    smtp_server: SmtpSink, pipelining: bool, many: bool
) -> None:
    smtp_server.pipelining = pipelining
    smtp_server.close_after = 3
    recipients = [f"reader{i}@example.org" for i in range(8)]
    with SmtpTransport(smtp_server.url) as transport:
        outcomes = (send_all_many if many else send_all)(transport, recipients)
    assert [o.status for o in outcomes.values()] == ["sent"] * 8
    assert smtp_server.connections == 3
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == recipients  # none twice


class _AcceptsDataAnyway(socketserver.StreamRequestHandler):
    """A real SMTP server that offers PIPELINING and answers 354 to DATA even when it
    refused every recipient (RFC 2920 says a client must cope: send a lone dot)."""

    def handle(self) -> None:
        server: _Scripted = self.server  # type: ignore[assignment]
        self.wfile.write(b"220 scripted\r\n")
        recipients = 0
        while line := self.rfile.readline():
            server.lines.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-scripted\r\n250-PIPELINING\r\n250 HELP\r\n")
            elif verb == b"RCPT":
                refused = b"gone@" in line
                recipients += not refused
                self.wfile.write(b"550 5.1.1 No such user\r\n" if refused else b"250 OK\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                server.bodies.append(body)
                self.wfile.write(
                    b"250 queued\r\n" if recipients else b"554 no valid recipients\r\n"
                )
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # MAIL, RSET
                if verb == b"RSET":
                    recipients = 0
                self.wfile.write(b"250 OK\r\n")


class _Scripted(socketserver.ThreadingTCPServer):
    daemon_threads = True
    lines: list[bytes]
    bodies: list[bytes]


@pytest.mark.integration
@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
def test_pipelined_refusal_with_data_accepted_anyway(many: bool) -> None:
    server = _Scripted(("127.0.0.1", 0), _AcceptsDataAnyway)
    server.lines, server.bodies = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"smtp://127.0.0.1:{server.server_address[1]}?timeout=10"
        with SmtpTransport(url) as transport:
            out = (send_all_many if many else send_all)(
                transport, ["gone@example.org", "ok@example.org"]
            )
            assert transport.pipelined == 2 and transport.connections == 1
    finally:
        server.shutdown()
        server.server_close()
    gone = out["gone@example.org"]
    assert (gone.status, gone.code, gone.stage) == ("permanent", 550, "rcpt")
    assert gone.should_suppress
    assert out["ok@example.org"].status == "sent"
    # The refused transaction got an empty message, then RSET; the next one the message.
    assert server.bodies == [b"", SIMPLE.replace(b"\r\n.", b"\r\n..")]
    assert b"RSET\r\n" in [line.upper() for line in server.lines]


@pytest.mark.integration
@pytest.mark.parametrize("pipelining", [False, True])
def test_send_many_gives_the_last_outcome_before_the_callers_error(
    smtp_server: SmtpSink, pipelining: bool
) -> None:
    smtp_server.pipelining = pipelining

    def messages() -> Iterator[tuple[int, Envelope]]:
        yield 1, Envelope("d@digest.example.org", "ada@example.org", SIMPLE, "<1@x>")
        raise RuntimeError("the template tripped")

    got = []
    with (
        SmtpTransport(smtp_server.url) as transport,
        pytest.raises(RuntimeError, match="tripped"),
    ):
        for key, outcome in transport.send_many(messages()):
            got.append((key, outcome.status))
    assert got == [(1, "sent")]
    assert len(smtp_server.to("ada@example.org")) == 1


@pytest.mark.integration
@pytest.mark.parametrize("pipelining", [False, True])
def test_lost_after_data_is_not_retried(smtp_server: SmtpSink, pipelining: bool) -> None:
    smtp_server.pipelining = pipelining
    smtp_server.drop_after_data.add("lost@example.org")
    with SmtpTransport(smtp_server.url) as transport:
        first = transport.send("d@digest.example.org", "lost@example.org", SIMPLE, "<1@x>")
        after = transport.send("d@digest.example.org", "next@example.org", SIMPLE, "<2@x>")
    assert first.status == "unknown" and after.status == "sent"
    assert len(smtp_server.to("lost@example.org")) == 1
    assert smtp_server.connections == 2


@pytest.mark.integration
@pytest.mark.parametrize("pipelining", [False, True])
def test_sender_refused_is_permanent_but_not_the_readers_fault(
    smtp_server: SmtpSink, pipelining: bool
) -> None:
    smtp_server.pipelining = pipelining
    smtp_server.mail_reply = "553 5.7.1 Sender address rejected"
    with SmtpTransport(smtp_server.url) as transport:
        outcome = transport.send("d@digest.example.org", "ada@example.org", SIMPLE, "<1@x>")
    assert outcome.status == "permanent" and outcome.stage == "mail"
    assert not outcome.should_suppress


@pytest.mark.integration
def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SmtpTransport(f"smtp://127.0.0.1:{port}?timeout=5") as transport:
        outcome = transport.send(
            "d@digest.example.org", "ada@example.org", SIMPLE, "<1@x>", attempt=3
        )
    assert outcome.status == "transient" and outcome.stage == "connect"
    assert "cannot connect" in outcome.message
    assert outcome.retry_at is not None
    assert outcome.retry_at >= datetime.now(UTC) + timedelta(seconds=100)  # attempt 3: >= 120 s


@pytest.mark.integration
def test_auth_credentials_are_percent_decoded(smtp_server: SmtpSink) -> None:
    smtp_server.users = {"user@example.org": "p@ss:w/rd"}
    url = f"smtp://user%40example.org:p%40ss%3Aw%2Frd@127.0.0.1:{smtp_server.port}"
    with SmtpTransport(url) as transport:
        assert transport.send("d@x.org", "a@example.org", SIMPLE, "<1@x>").status == "sent"
    assert smtp_server.logins == [("user@example.org", "p@ss:w/rd")]
    wrong = f"smtp://user%40example.org:nope@127.0.0.1:{smtp_server.port}?timeout=5"
    with SmtpTransport(wrong) as transport:
        outcome = transport.send("d@x.org", "a@example.org", SIMPLE, "<2@x>")
    assert outcome.status == "transient" and "authentication failed" in outcome.message
    assert "nope" not in outcome.message


@pytest.mark.integration
def test_real_digest_through_smtp_parses_back(smtp_server: SmtpSink) -> None:
    settings = email_settings(smtp_url=smtp_server.url)
    rendered = render_digest(context(settings, seed_papers(8)))
    built = build_message(
        settings,
        rendered,
        to="ada@example.org",
        message_id=make_message_id(7, settings.from_domain),
        unsubscribe_url="https://digest.example.org/unsubscribe/tok",
    )
    with transport_from_settings(settings) as transport:
        assert isinstance(transport, SmtpTransport)
        outcome = transport.send(built.envelope_from, built.to, built.data, built.message_id)
    assert outcome.status == "sent"
    (received,) = smtp_server.messages
    assert received.mail_from == "digest@digest.example.org"
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert msg["Message-ID"] == built.message_id
    assert msg["Subject"] == rendered.subject
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.replace("\r\n", "\n") == rendered.html
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.integration
def test_permanent_failure_suppresses_the_address(smtp_server: SmtpSink, session: Session) -> None:
    smtp_server.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user"
    with SmtpTransport(smtp_server.url) as transport:
        for to in ("Gone@Example.org", "fine@example.org"):
            outcome = transport.send("d@x.org", to, SIMPLE, "<1@x>")
            if outcome.should_suppress:
                suppress(session, to, outcome.message, outcome.code)
    session.commit()
    assert is_suppressed(session, "gone@example.org")
    assert not is_suppressed(session, "fine@example.org")
    row = get_suppression(session, " GONE@example.org ")
    assert row is not None and row.smtp_code == 550 and "No such user" in row.reason
    suppress(session, "gone@example.org", "550 again", 550)  # twice is fine
    session.commit()
    assert unsuppress(session, "gone@example.org")
    session.commit()
    assert not is_suppressed(session, "gone@example.org")
    assert not unsuppress(session, "gone@example.org")


# --- rate limit, backoff, URLs (units) ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limit_spaces_sends(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    with OutboxTransport(tmp_path, limiter=limiter) as transport:
        for i in range(9):
            assert transport.send("a@x.org", "b@x.org", SIMPLE, f"<{i}@x>").status == "sent"
    assert len(clock.sleeps) == 8
    assert clock.sleeps == pytest.approx([0.25] * 8)
    assert clock.now == pytest.approx(102.0)  # 9 sends at 4/s span 2 s


def test_rate_limit_does_not_sleep_when_sends_are_slow_anyway() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.wait()
        clock.now += 1.0  # each send itself takes longer than the interval
    assert clock.sleeps == []


def test_unlimited_rate_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.wait()
    assert clock.sleeps == []


def test_backoff_grows_caps_and_jitters() -> None:
    low = [backoff_seconds(n, rng=lambda: 0.0) for n in range(1, 20)]
    high = [backoff_seconds(n, rng=lambda: 1.0) for n in range(1, 20)]
    assert low[0] == 30 and high[0] == 60
    assert low[1] == 60 and high[1] == 120
    assert low == sorted(low) and high == sorted(high)
    assert max(high) == BACKOFF_CAP and max(low) == BACKOFF_CAP / 2
    assert backoff_seconds(10_000) <= BACKOFF_CAP


@pytest.mark.parametrize(
    ("url", "host", "port", "security", "user", "password"),
    [
        ("smtp://mail.example.org", "mail.example.org", 25, "none", "", ""),
        ("smtp://mail.example.org:2525", "mail.example.org", 2525, "none", "", ""),
        ("smtp://u:p@mail.example.org:587", "mail.example.org", 587, "starttls", "u", "p"),
        ("smtp://mail.example.org:587?starttls=0", "mail.example.org", 587, "none", "", ""),
        ("smtp://mail.example.org?starttls=1", "mail.example.org", 25, "starttls", "", ""),
        (
            "smtps://a%40b.org:x%2Fy%3Az@mail.example.org",
            "mail.example.org",
            465,
            "ssl",
            "a@b.org",
            "x/y:z",
        ),
        ("smtps://mail.example.org:2465", "mail.example.org", 2465, "ssl", "", ""),
    ],
)
def test_smtp_url_forms(
    url: str, host: str, port: int, security: str, user: str, password: str
) -> None:
    config = parse_smtp_url(url)
    assert (config.host, config.port, config.security) == (host, port, security)
    assert (config.username, config.password) == (user, password)
    assert "password" not in repr(config)


def test_smtp_url_options() -> None:
    config = parse_smtp_url("smtp://h?timeout=5&verify=0&helo=sender.example.org")
    assert (config.timeout, config.verify, config.helo) == (5.0, False, "sender.example.org")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.example.org", "smtp://"),
        ("smtp://", "no host"),
        ("smtp://h:99999", "DIGEST_SMTP_URL"),
        ("smtp://h?starttls=maybe", "starttls"),
        ("smtps://h?starttls=1", "already TLS"),
        ("smtp://h?timeout=soon", "timeout"),
        ("smtp://h?tls=1", "unknown option"),
    ],
)
def test_bad_smtp_urls(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_smtp_url(url)


def test_should_suppress() -> None:
    assert Outcome("permanent", 550, "5.1.1 no such user", stage="rcpt").should_suppress
    assert Outcome("permanent", 550, "5.1.1 no such user", stage="message").should_suppress
    assert Outcome("permanent", 550, "no such user", stage="message").should_suppress
    assert not Outcome("permanent", 554, "5.7.1 spam", stage="message").should_suppress
    assert not Outcome("permanent", 553, "sender", stage="mail").should_suppress
    assert not Outcome("transient", 452, "full", stage="rcpt").should_suppress
    assert not Outcome("unknown", None, "lost", stage="message").should_suppress


def test_transport_from_settings_defaults_to_outbox(tmp_path: Path) -> None:
    transport = transport_from_settings(email_settings(tmp_path))
    assert isinstance(transport, OutboxTransport) and transport.outbox == tmp_path / "outbox"


# --- outbox ------------------------------------------------------------------------------


def test_outbox_writes_eml_and_html(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    rendered = render_digest(context(settings, seed_papers(3)))
    message_id = make_message_id(5, settings.from_domain)
    built = build_message(
        settings,
        rendered,
        to="ada@example.org",
        message_id=message_id,
        unsubscribe_url="https://digest.example.org/unsubscribe/tok",
    )
    with transport_from_settings(settings) as transport:
        outcome = transport.send(built.envelope_from, built.to, built.data, message_id)
        again = transport.send(built.envelope_from, built.to, built.data, message_id)
    eml, html = outbox_paths(settings.outbox, message_id)
    assert outcome.status == again.status == "sent" and str(eml) in outcome.message
    assert eml.read_bytes() == built.data
    assert html.read_text() == rendered.html
    assert sorted(p.name for p in settings.outbox.iterdir()) == sorted([eml.name, html.name])
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == message_id


def test_outbox_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with OutboxTransport(tmp_path / "out") as transport:
        outcome = transport.send("a@x.org", "b@x.org", SIMPLE, "<1@x>")
    assert outcome.status == "transient" and "disk full" in outcome.message
    assert list((tmp_path / "out").iterdir()) == []  # no half-written or temp files


def test_outbox_names_are_safe(tmp_path: Path) -> None:
    eml, html = outbox_paths(tmp_path, "<../../etc/passwd\r\n@x>")
    assert eml.parent == tmp_path and html.parent == tmp_path
    assert "/" not in eml.name and "\n" not in eml.name


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.integration
def test_starttls(tls_context: ssl.SSLContext) -> None:
    sink, controller = start_sink(tls_context=tls_context, require_starttls=True)
    try:
        url = f"smtp://u%40x.org:pw@127.0.0.1:{sink.port}?starttls=1&verify=0&timeout=10"
        with SmtpTransport(url) as transport:
            for i in range(3):
                assert transport.send("d@x.org", f"r{i}@example.org", SIMPLE, "<1@x>").ok
        assert len(sink.messages) == 3 and sink.connections == 1
        assert sink.logins == [("u@x.org", "pw")]
        # Without STARTTLS this server refuses to go on.
        with SmtpTransport(f"smtp://127.0.0.1:{sink.port}?timeout=10") as plain:
            refused = plain.send("d@x.org", "r@example.org", SIMPLE, "<2@x>")
        assert refused.status == "permanent" and refused.code == 530
        assert not refused.should_suppress  # a 5xx to MAIL FROM is about us
        # Verification is on by default: a self-signed certificate is refused.
        with SmtpTransport(f"smtp://127.0.0.1:{sink.port}?starttls=1&timeout=10") as strict:
            unverified = strict.send("d@x.org", "r@example.org", SIMPLE, "<3@x>")
        assert unverified.status == "transient" and unverified.stage == "connect"
        assert "CERTIFICATE_VERIFY_FAILED" in unverified.message
    finally:
        controller.stop()


@pytest.mark.integration
def test_implicit_tls(tls_context: ssl.SSLContext) -> None:
    sink, controller = start_sink(ssl_context=tls_context)
    try:
        with SmtpTransport(f"smtps://127.0.0.1:{sink.port}?verify=0&timeout=10") as transport:
            assert transport.send("d@x.org", "r@example.org", SIMPLE, "<1@x>").ok
        assert len(sink.messages) == 1
    finally:
        controller.stop()


@pytest.mark.parametrize(
    "data",
    [
        SIMPLE,
        b".a\r\n.b\r\n..c\r\nd.\r\n",
        b"bare\nline\nends\n.dot\n",
        b"old\rmac\r.dot\r",
        b"mixed\r\n.\n.\r..\r\n",
        b"no final line end",
        b"",
    ],
)
def test_dot_stuffing_is_the_regex_one_without_the_regex(data: bytes) -> None:
    """The fast path (CRLF-normalised input) and the normalising one give the same bytes
    as normalising every line end with a regex first."""
    reference = re.sub(rb"(?:\r\n|\n|\r)", b"\r\n", data)
    reference = (b"." if reference.startswith(b".") else b"") + reference
    reference = reference.replace(b"\r\n.", b"\r\n..")
    reference += b"" if reference.endswith(b"\r\n") else b"\r\n"
    assert smtp._dot_stuff(data) == reference + b".\r\n"
