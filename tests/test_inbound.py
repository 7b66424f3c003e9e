"""`digest inbound` end to end: a real listener process, real SMTP in, answers caught by
the aiosmtpd sink it is configured to send through, both databases.

Commands by email and their answers, the confirm reply, unsubscribe by mail,
loops that must produce no mail, and bad mail of every kind. Digests, bounces and
complaints for real sent digests are in test_inbound_digests.py.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import select
from support.inboundkit import (
    REQUEST,
    Listener,
    message,
    replies_to,
    rows,
    settled,
    text_of,
    with_smtp,
)
from support.smtpserver import SmtpSink

from digest.config import Settings
from digest.inbound import record
from digest.inbound.addresses import classify
from digest.store import db
from digest.store.models import InboundStatus, Subscriber, SubscriberStatus, Topic
from digest.subscriptions.lifecycle import add_subscriber, get_subscriber
from digest.subscriptions.mailtokens import unsubscribe_address

pytestmark = pytest.mark.integration

ADA = "ada@example.org"


@pytest.fixture
def inbound_settings(db_url: str, tmp_path: Path, smtp_server: SmtpSink) -> Settings:
    return with_smtp(make_settings(db_url, tmp_path), smtp_server)


def subscriber(settings: Settings, address: str = ADA) -> Subscriber | None:
    with db.session_scope(settings) as session:
        found = get_subscriber(session, address)
        if found is not None:
            list(found.topics)  # loaded while the session is open
        return found


def one_reply(sink: SmtpSink, address: str = ADA) -> tuple[email.message.Message, str]:
    found = replies_to(sink, address)
    assert len(found) == 1, [m["Subject"] for m in found]
    return found[0], text_of(found[0])


def test_every_command_is_carried_out_and_answered(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    body = "\n".join(
        [
            "Hello!",  # not a command: said so, the rest still read
            "add diffusion models",
            "add bad (query",
            "ADD author:bengio",
            "hour 9",
            "hour 25",
            "timezone Europe/Parsi",
            "timezone europe/paris",
            "max 5",
            "max lots",
            "weekly fri",
            "daily",
            "remove 2",
            "remove 9",
            "list",
            "help",
            "",
            "> add quoted lines are ignored",
            "-- ",
            "add signature lines are ignored",
        ]
    )
    listener.send(message(subject="subscribe", body=body), ADA, [REQUEST])
    [row] = settled(inbound_settings, 1)
    assert row.status is InboundStatus.DONE and row.action == "commands"
    reply, text = one_reply(smtp_server)
    assert reply["Subject"] == "Confirm your subscription to Paper Digest"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == row.message_id
    assert reply["Reply-To"].split("<")[1].startswith("confirm+")
    expected = [
        ("> subscribe", "done: subscription started"),
        ("> Hello!", "not done: not a command"),
        ("> add diffusion models", 'done: added topic 1: "diffusion models"'),
        ("> add bad (query", 'not done: bad topic query "bad (query": unbalanced parenthesis'),
        ("> ADD author:bengio", 'done: added topic 2: "author:bengio"'),
        ("> hour 9", "done: digests at 09:00 UTC"),
        ("> hour 25", 'not done: the send hour "25" is not a whole hour from 0 to 23'),
        (
            "> timezone Europe/Parsi",
            'not done: unknown time zone "Europe/Parsi": did you mean "Europe/Paris"',
        ),
        ("> timezone europe/paris", "done: time zone Europe/Paris"),
        ("> max 5", "done: at most 5 papers per digest"),
        (
            "> max lots",
            'not done: the maximum papers per digest "lots" is not a number from 1 to 100',
        ),
        ("> weekly fri", "done: one digest a week, on Friday"),
        ("> daily", "done: one digest a day"),
        ("> remove 2", 'done: removed topic 2: "author:bengio"'),
        ("> remove 9", "not done: there is no topic 9: you have 1 topic"),
        ("> list", "done: your subscription is below"),
        ("> help", "done: the commands are listed below"),
    ]
    flat = " ".join(text.split())
    for command, outcome in expected:
        assert f"{command} {outcome}" in flat, (command, text)
    assert "quoted lines" not in text and "signature lines" not in text
    assert "Confirm your subscription: https://digest.example.org/confirm/" in text
    assert "mute author NAME" in text  # the help
    assert "pending, every day at 09:00 (Europe/Paris), up to 5 papers" in flat
    found = subscriber(inbound_settings)
    assert found is not None and found.status is SubscriberStatus.PENDING
    assert [t.query for t in found.topics] == ["diffusion models"]
    assert (found.send_hour, found.timezone, found.max_papers) == (9, "Europe/Paris", 5)
    assert found.consent_source == "email" and row.message_id in (found.consent_detail or "")


def test_replying_to_the_confirmation_confirms_and_nobody_else_can(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    listener.send(message(subject="subscribe diffusion models"), ADA, [REQUEST])
    settled(inbound_settings, 1)
    first, _ = one_reply(smtp_server)
    confirm_to = email.utils.parseaddr(first["Reply-To"])[1]
    assert classify(inbound_settings, confirm_to).kind == "confirm"  # type: ignore[union-attr]
    # A stranger replying (a forwarded confirmation) confirms nothing, and is told so.
    listener.send(
        message("Eve <eve@example.org>", confirm_to, "Re: " + first["Subject"], "yes"),
        "eve@example.org",
        [confirm_to],
    )
    settled(inbound_settings, 2)
    assert subscriber(inbound_settings).status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    _, eve_text = one_reply(smtp_server, "eve@example.org")
    assert "was sent to another address" in eve_text and ADA not in eve_text
    # The reader's own reply (quoting ours) confirms.
    quoted = "\n".join("> " + line for line in text_of(first).splitlines())
    listener.send(
        message(to=confirm_to, subject="Re: " + first["Subject"], body=f"Yes please\n\n{quoted}"),
        ADA,
        [confirm_to],
    )
    settled(inbound_settings, 3)
    found = subscriber(inbound_settings)
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    answers = replies_to(smtp_server, ADA)
    assert len(answers) == 2
    assert "subscription confirmed" in text_of(answers[1])


def test_pause_resume_stop_and_unsubscribe_aliases(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    with db.session_scope(inbound_settings) as session:
        add_subscriber(session, ADA, topics=["a b", "c d", "e f"], confirmed=True)
    listener.send(message(body="pause\npause\nresume\nstop 2\nstop topic c d\n"), ADA, [REQUEST])
    settled(inbound_settings, 1)
    _, text = one_reply(smtp_server)
    flat = " ".join(text.split())
    assert "> pause done: paused: no digests until you send resume" in flat
    assert "> pause done: already paused" in flat
    assert "> resume done: resumed" in flat
    assert '> stop 2 done: removed topic 2: "c d"' in flat
    assert "> stop topic c d not done: remove which topic?" in flat
    assert [t.query for t in subscriber(inbound_settings).topics] == ["a b", "e f"]  # type: ignore[union-attr]
    listener.send(message(subject="CANCEL", body="add x y\n"), ADA, [REQUEST])
    settled(inbound_settings, 2)
    texts = [text_of(m) for m in replies_to(smtp_server, ADA)]
    flat = " ".join(texts[1].split())
    assert "> CANCEL done: unsubscribed" in flat
    assert "1 more command(s) not carried out: you unsubscribed" in flat
    assert subscriber(inbound_settings).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_commands_for_someone_not_subscribed_say_how_to_start(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    listener.send(message(body="add diffusion\nmore 3\nfrobnicate\n"), ADA, [REQUEST])
    settled(inbound_settings, 1)
    _, text = one_reply(smtp_server)
    flat = " ".join(text.split())
    assert '> add diffusion not done: you are not subscribed: send "subscribe" first' in flat
    assert "> more 3 not done: you are not subscribed" in flat
    assert "> frobnicate not done: not a command" in flat
    assert subscriber(inbound_settings) is None


# --- loops and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, mail_from",
    [
        ({"Auto-Submitted": "auto-replied"}, ADA),
        ({"Precedence": "bulk"}, ADA),
        ({"List-Id": "Some list <some.list.example.org>"}, ADA),
        ({"X-Autoreply": "yes"}, ADA),
        ({}, ""),  # a null envelope sender: a bounce
        ({}, "MAILER-DAEMON@mx.example.org"),
    ],
)
def test_machine_mail_is_neither_answered_nor_acted_on(
    listener: Listener,
    inbound_settings: Settings,
    smtp_server: SmtpSink,
    headers: dict[str, str],
    mail_from: str,
) -> None:
    listener.send(message(subject="subscribe", headers=headers), mail_from, [REQUEST])
    [row] = settled(inbound_settings, 1)
    assert row.status in (InboundStatus.IGNORED, InboundStatus.DONE)
    assert "not" in (row.result or "") or row.action == "bounce-of-answer"
    assert smtp_server.messages == []
    assert subscriber(inbound_settings) is None


def test_an_auto_reply_to_our_answer_and_a_bounce_of_it_produce_no_mail(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    listener.send(message(subject="help"), ADA, [REQUEST])
    settled(inbound_settings, 1)
    answer = smtp_server.messages[0]
    ours = email.message_from_bytes(answer.data)
    # The reader's vacation responder answers our answer (to its Reply-To) ...
    vacation = message(
        to=REQUEST,
        subject="Out of office: " + ours["Subject"],
        body="I am away until Monday.",
        headers={"Auto-Submitted": "auto-replied", "In-Reply-To": ours["Message-ID"]},
    )
    listener.send(vacation, ADA, [REQUEST])
    # ... and a mail server bounces it to its envelope sender, with a null sender.
    dsn = (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: " + answer.mail_from + "\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mx.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; ada@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {ours['Message-ID']}\r\n\r\n--B--\r\n"
    ).encode()
    assert answer.mail_from == REQUEST  # the answers' envelope sender
    listener.send(dsn, "", [answer.mail_from])
    # And a copy of our own answer, forwarded back to us.
    listener.send(answer.data, ADA, [REQUEST])
    found = settled(inbound_settings, 4)
    assert len(smtp_server.messages) == 1, [m.rcpt_tos for m in smtp_server.messages]
    assert [r.status for r in found[1:]] == [InboundStatus.IGNORED] * 3
    assert "Auto-Submitted" in (found[1].result or "")


def test_at_most_a_few_answers_per_address_per_hour(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    limit = inbound_settings.inbound_replies_per_hour
    for i in range(limit + 2):
        listener.send(message(subject="help", body=f"list {i}"), ADA, [REQUEST])
    found = settled(inbound_settings, limit + 2)
    assert len(replies_to(smtp_server, ADA)) == limit
    refused = [r for r in found if r.status is InboundStatus.IGNORED]
    assert len(refused) == 2 and "in an hour" in (refused[0].result or "")


# --- the conversation ----------------------------------------------------------------


def test_unknown_recipients_and_forged_signed_addresses_are_refused_at_rcpt(
    listener: Listener, inbound_settings: Settings
) -> None:
    raw = message(subject="help")
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail(ADA)
        for address in (
            "nobody@digest.example.org",
            "papers-request@elsewhere.example.org",
            "bounce+1-20261201-aaaaaaaaaaaaaaaa@digest.example.org",  # forged VERP address
            "bounce+1-aaaaaaaaaaaaaaaa@digest.example.org",
            "bounce+99999-aaaaaaaaaaaaaaaa@digest.example.org",
            "reply+1@digest.example.org",
            "unsubscribe+1-" + "a" * 200 + "@digest.example.org",
        ):
            code, text = smtp.rcpt(address)
            assert code == 550 and b"no such mailbox" in text, (address, code, text)
        assert smtp.rcpt(REQUEST)[0] == 250
        assert smtp.data(raw)[0] == 250
    assert len(settled(inbound_settings, 1)) == 1


def test_size_cap_is_refused_at_data_and_nothing_is_recorded(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ADA, REQUEST, "help"
    msg.set_content("help")
    msg.add_attachment(b"\x00" * (5 * 1024 * 1024), maintype="application", subtype="octet-stream")
    raw = msg.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size")
        # Announced: refused at MAIL FROM. Not announced: refused at the end of DATA.
        code, _ = smtp.mail(ADA, [f"SIZE={len(raw)}"])
        assert code == 552
        smtp.rset()
        smtp.mail(ADA)
        smtp.rcpt(REQUEST)
        code, text = smtp.data(raw)
        assert code == 552, text
    assert rows(inbound_settings) == [] and smtp_server.messages == []


def test_lines_over_the_limit_are_refused_raw_and_reported_when_encoded(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    long_line = "add " + "word " * 20_000  # 100 KB
    raw = (
        f"From: {ADA}\r\nTo: {REQUEST}\r\nSubject: x\r\nMessage-ID: <long@example.org>\r\n\r\n"
        f"{long_line}\r\nlist\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail(ADA)
        smtp.rcpt(REQUEST)
        code, _ = smtp.data(raw)
        assert code == 500  # RFC 5321 4.5.3.1.6: no line over 1,000 characters
    # The same line quoted-printable encoded, as a mail program sends it: read, refused.
    listener.send(message(body=long_line + "\nlist"), ADA, [REQUEST])
    settled(inbound_settings, 1)
    _, text = one_reply(smtp_server)
    assert "the line is over 1000 characters long: not read" in " ".join(text.split())
    assert "> list" in text


def test_the_same_message_twice_is_handled_once(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    raw = message(subject="subscribe", message_id="<twice@example.org>")
    listener.send(raw, ADA, [REQUEST])
    settled(inbound_settings, 1)
    listener.send(raw, ADA, [REQUEST])  # a retry by the MTA after a timeout
    # A copy with other trace headers but the same Message-ID: the same message too.
    listener.send(b"Received: from elsewhere\r\n" + raw, ADA, [REQUEST])
    assert len(settled(inbound_settings, 1)) == 1
    assert len(replies_to(smtp_server, ADA)) == 1
    with db.session_scope(inbound_settings) as session:
        assert len(list(session.scalars(select(Subscriber)))) == 1


@pytest.mark.parametrize(
    "raw, problem",
    [
        (
            b"To: papers-request@digest.example.org\r\nSubject: subscribe\r\n\r\nsubscribe\r\n",
            "no From",
        ),
        (
            b"From: ada@example.org\r\nTo: papers-request@digest.example.org\r\nSubject: help\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
            b"--never-closed\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nbGlzdA==!!!not base64\r\n"
            b"--never-closed\r\nContent-Type: multipart/alternative\r\n\r\n",
            "malformed",
        ),
        (
            (
                "From: J\u00fcrgen <ada@example.org>\r\nTo: papers-request@digest.example.org\r\n"
                "Subject: Gr\u00fc\u00dfe \u2014 help\r\nContent-Type: text/plain\r\n\r\nlist\r\n"
            ).encode("utf-8"),
            "8-bit",
        ),
    ],
    ids=["no-from", "malformed-mime", "8bit-headers"],
)
def test_bad_mail_is_recorded_and_handled_without_harm(
    listener: Listener,
    inbound_settings: Settings,
    smtp_server: SmtpSink,
    raw: bytes,
    problem: str,
) -> None:
    listener.send(raw, ADA, [REQUEST])
    [row] = settled(inbound_settings, 1)
    assert row.status in (InboundStatus.DONE, InboundStatus.IGNORED), row.result
    if problem == "no From":
        assert row.status is InboundStatus.IGNORED
        assert "no From" in (row.result or "")
        assert smtp_server.messages == []
        assert subscriber(inbound_settings) is None
    else:
        _, text = one_reply(smtp_server)
        assert "Your commands" in text or "Commands" in text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_lmtp_answers_each_recipient_and_messages_left_open_are_finished_at_start(
    tmp_path: Path, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    # A message recorded (the 250 given) just before a crash: the next start finishes it.
    [left] = record.store(
        inbound_settings,
        ADA,
        [classify(inbound_settings, REQUEST)],
        message(subject="help"),  # type: ignore[list-item]
    )
    lmtp = Listener(inbound_settings, tmp_path / "lmtp.log", lmtp=True).start()
    try:
        settled(inbound_settings, 1)
        assert "Commands" in text_of(replies_to(smtp_server, ADA)[0])
        with db.session_scope(inbound_settings) as session:
            add_subscriber(session, "bob@example.org", confirmed=True)
        with smtplib.LMTP("127.0.0.1", lmtp.port, timeout=30) as client:
            refused = client.sendmail(
                "bob@example.org",
                [REQUEST, "nobody@digest.example.org"],
                message("bob@example.org", subject="list"),
            )
        assert list(refused) == ["nobody@digest.example.org"]
        settled(inbound_settings, 2)
        assert len(replies_to(smtp_server, "bob@example.org")) == 1
        # Two recipients accepted: LMTP answers DATA once for each (RFC 2033 4.2).
        # smtplib reads one answer only, so this conversation is typed by hand.
        with db.session_scope(inbound_settings) as session:
            bob = get_subscriber(session, "bob@example.org")
            mailto = unsubscribe_address(inbound_settings, session, bob)  # type: ignore[arg-type]
        forged = mailto[: mailto.index("-") + 1] + "a" * 16 + "@digest.example.org"
        with socket.create_connection(("127.0.0.1", lmtp.port), timeout=30) as raw:
            stream = raw.makefile("rwb")

            def say(line: bytes) -> bytes:
                stream.write(line + b"\r\n")
                stream.flush()
                return stream.readline()

            stream.readline()  # the greeting
            assert say(b"LHLO mta.example.org").startswith(b"250")
            while not stream.readline().startswith(b"250 "):
                pass
            assert say(b"MAIL FROM:<bob@example.org>").startswith(b"250")
            assert say(b"RCPT TO:<" + REQUEST.encode() + b">").startswith(b"250")
            assert say(b"RCPT TO:<" + forged.encode() + b">").startswith(b"550")
            assert say(b"RCPT TO:<" + mailto.encode() + b">").startswith(b"250")
            assert say(b"DATA").startswith(b"354")
            body = message("bob@example.org", subject="help", message_id="<two@example.org>")
            stream.write(body.replace(b"\n.", b"\n..") + b".\r\n")
            stream.flush()
            answers = [stream.readline(), stream.readline()]
            assert all(a.startswith(b"250 ") for a in answers), answers
            assert say(b"QUIT").startswith(b"221")
        settled(inbound_settings, 4)
        assert (
            subscriber(inbound_settings, "bob@example.org").status is SubscriberStatus.UNSUBSCRIBED
        )  # type: ignore[union-attr]
    finally:
        assert lmtp.stop() == 0
    assert left.new


def test_topic_queries_keep_their_case_and_commands_do_not(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    with db.session_scope(inbound_settings) as session:
        add_subscriber(session, ADA, confirmed=True)
    listener.send(message(body="Add diffusion OR flow\nLIST"), ADA, [REQUEST])
    settled(inbound_settings, 1)
    with db.session_scope(inbound_settings) as session:
        assert list(session.scalars(select(Topic.query))) == ["diffusion OR flow"]
