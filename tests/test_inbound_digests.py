"""Mail that comes back about real digests: replies that steer, bounces, complaints,
unsubscribe by mail. Digests go through the real send path (run_once, SMTP into the
sink); what comes back goes through a real `digest inbound` process."""

from __future__ import annotations

import email
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_settings
from sqlalchemy import select
from support.clikit import cli_env
from support.inboundkit import REQUEST, Listener, message, replies_to, settled, text_of, with_smtp
from support.services import settings_env
from support.smtpserver import SmtpSink

from digest import pipeline
from digest.cli import cli
from digest.config import Settings
from digest.store import db
from digest.store.models import (
    Bounce,
    Digest,
    InboundStatus,
    Paper,
    ReaderSignal,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from digest.subscriptions.lifecycle import add_subscriber
from digest.subscriptions.mailtokens import period_token

pytestmark = pytest.mark.integration

ADA = "ada@example.org"
T = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


@pytest.fixture
def inbound_settings(db_url: str, tmp_path: Path, smtp_server: SmtpSink) -> Settings:
    return with_smtp(make_settings(db_url, tmp_path), smtp_server)


def add_paper(
    settings: Settings, n: int, title: str, abstract: str, seen: datetime, authors: list[str]
) -> int:
    with db.session_scope(settings) as session:
        key = f"2511.{n:05d}"
        paper = Paper(
            key=f"arxiv:{key}",
            arxiv_id=key,
            version=1,
            title=title,
            abstract=abstract,
            authors=authors,
            categories=["cs.LG"],
            url=f"https://arxiv.org/abs/{key}",
            sources=["arxiv"],
            first_seen_at=seen,
            last_seen_at=seen,
        )
        session.add(paper)
        session.flush()
        return paper.id


def reader(settings: Settings, *topics: str, max_papers: int = 20) -> None:
    with db.session_scope(settings) as session:
        add_subscriber(
            session,
            ADA,
            topics=topics,
            confirmed=True,
            hour=7,
            max_papers=max_papers,
            now=T - timedelta(days=2),
        )


def send_digest(settings: Settings, sink: SmtpSink, now: datetime) -> tuple[Message, Digest]:
    before = len(sink.to(ADA))
    assert pipeline.run_once(settings, now, fetch=False).by_status == {"sent": 1}
    received = sink.to(ADA)[before]
    with db.session_scope(settings) as session:
        row = session.scalars(select(Digest).order_by(Digest.id.desc())).first()
        assert row is not None
    msg = email.message_from_bytes(received.data)
    msg["X-Test-Envelope-From"] = received.mail_from
    return msg, row


def card_number(text: str, title: str) -> int:
    match = re.search(rf"^\* (\d+)\. {re.escape(title)}", text, re.M)
    assert match, text
    return int(match.group(1))


def address_in(header: str) -> str:
    return email.utils.parseaddr(header)[1]


def test_replying_more_n_to_a_digest_changes_what_the_next_digest_holds(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    day1 = T - timedelta(hours=3)
    add_paper(
        inbound_settings,
        1,
        "Unlearning in diffusion models",
        "We study unlearning for image diffusion models.",
        day1,
        ["Ada Lovelace"],
    )
    add_paper(
        inbound_settings,
        2,
        "Unlearning for protein folding networks",
        "Protein folding networks forget data on request.",
        day1,
        ["Alan Turing"],
    )
    add_paper(
        inbound_settings,
        3,
        "Protein folding at scale with equivariant networks",
        "Structure prediction of proteins.",
        day1,
        ["Grace Hopper"],
    )
    add_paper(
        inbound_settings,
        4,
        "Graph transformers for traffic forecasting",
        "Traffic.",
        day1,
        ["Chen Wei"],
    )
    reader(inbound_settings, "unlearning")
    digest, row = send_digest(inbound_settings, smtp_server, T)
    text = text_of(digest)
    number = card_number(text, "Unlearning for protein folding networks")
    assert 'Reply to steer your digest: "more 3"' in text
    # The digest names itself: its Reply-To and return path are signed for it.
    reply_to = address_in(digest["Reply-To"])
    named = f"{row.subscriber_id}-{period_token(row.period)}-"
    assert reply_to.startswith(f"reply+{named}")
    assert digest["X-Test-Envelope-From"].startswith(f"bounce+{named}")
    listener.send(
        message(
            to=reply_to,
            subject="Re: " + digest["Subject"],
            body=f"more {number}\n\nThanks!\n\n> quoted digest",
        ),
        ADA,
        [reply_to],
    )
    [handled] = settled(inbound_settings, 1)
    assert handled.action == "steer" and handled.status is InboundStatus.DONE
    [answer] = replies_to(smtp_server, ADA)[1:]
    assert answer["In-Reply-To"] == handled.message_id
    assert address_in(answer["Reply-To"]) == reply_to  # answering the answer steers again
    answer_text = " ".join(text_of(answer).split())
    assert f'> more {number} done: added topic 2: "protein folding networks"' in answer_text
    with db.session_scope(inbound_settings) as session:
        assert list(session.scalars(select(Topic.query).order_by(Topic.id))) == [
            "unlearning",
            "protein folding networks",
        ]
    # The next day: a paper only the new topic finds, and one nobody asked for.
    day2 = T + timedelta(hours=6)
    antibody = add_paper(
        inbound_settings,
        5,
        "Protein folding networks for antibody design",
        "Antibodies.",
        day2,
        ["Yuki Tanaka"],
    )
    add_paper(
        inbound_settings, 6, "Graph transformers for power grids", "Grids.", day2, ["Chen Wei"]
    )
    second, row2 = send_digest(inbound_settings, smtp_server, T + timedelta(days=1))
    assert row2.paper_ids == [antibody]
    assert "Protein folding networks for antibody design" in text_of(second)


def test_mute_author_and_less_n_steer_the_next_digest(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    day1 = T - timedelta(hours=3)
    add_paper(
        inbound_settings,
        1,
        "Unlearning in diffusion models",
        "Unlearning for image diffusion models.",
        day1,
        ["Ada Lovelace"],
    )
    reader(inbound_settings, "unlearning")
    digest, _row = send_digest(inbound_settings, smtp_server, T)
    reply_to = address_in(digest["Reply-To"])
    listener.send(
        message(to=reply_to, subject="Re: digest", body="mute author Grace Hopper\nless 1\nless 7"),
        ADA,
        [reply_to],
    )
    settled(inbound_settings, 1)
    answer = " ".join(text_of(replies_to(smtp_server, ADA)[1]).split())
    assert "> mute author Grace Hopper done: muted: no more papers by Grace Hopper" in answer
    assert '> less 1 done: papers like "Unlearning in diffusion models" will rank lower' in answer
    assert "> less 7 not done: that digest has no paper 7: its papers are numbered 1 to 1" in answer
    assert "Muted authors: Grace Hopper" in answer
    day2 = T + timedelta(hours=6)
    # Like the disliked paper, and the better match on its own (title and twice in the abstract).
    alike = add_paper(
        inbound_settings, 2, "Unlearning in diffusion models, revisited",
        "Unlearning again: unlearning for diffusion models.", day2, ["Ola Nordmann"],
    )  # fmt: skip
    other = add_paper(
        inbound_settings,
        3,
        "Unlearning for recommender systems",
        "Recommenders.",
        day2,
        ["Chen Wei"],
    )
    add_paper(
        inbound_settings,
        4,
        "Unlearning, the strongest match: unlearning",
        "Unlearning unlearning.",
        day2,
        ["G. Hopper"],
    )
    _second, row2 = send_digest(inbound_settings, smtp_server, T + timedelta(days=1))
    assert row2.paper_ids == [other, alike]  # the muted author's paper is gone; "less" sank one
    with db.session_scope(inbound_settings) as session:
        kinds = sorted(s.kind for s in session.scalars(select(ReaderSignal)))
    assert kinds == ["less", "mute-author"]


def test_a_forwarded_digest_cannot_steer_someone_elses_subscription(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_paper(
        inbound_settings,
        1,
        "Unlearning in diffusion models",
        "Unlearning.",
        T - timedelta(hours=3),
        ["Ada Lovelace"],
    )
    reader(inbound_settings, "unlearning")
    digest, _row = send_digest(inbound_settings, smtp_server, T)
    reply_to = address_in(digest["Reply-To"])
    listener.send(
        message("eve@example.org", reply_to, "Re: x", "more 1\nunsubscribe"),
        "eve@example.org",
        [reply_to],
    )
    [row] = settled(inbound_settings, 1)
    assert row.action == "spoofed"
    [to_eve] = replies_to(smtp_server, "eve@example.org")
    assert "Nothing was changed" in text_of(to_eve) and ADA not in text_of(to_eve)
    assert len(replies_to(smtp_server, ADA)) == 1  # the digest only
    with db.session_scope(inbound_settings) as session:
        sub = session.scalars(select(Subscriber)).one()
        assert sub.status is SubscriberStatus.ACTIVE and len(sub.topics) == 1


def dsn(to: str, status: str, action: str = "failed", diagnostic: str = "") -> bytes:
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{abs(hash((to, status, action, diagnostic)))}@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.net.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {ADA}\r\nOriginal-Recipient: rfc822;{ADA}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic or status + ' something'}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"To: {ADA}\r\nSubject: digest\r\n\r\n--B--\r\n"
    ).encode()


def test_a_dsn_for_a_sent_digest_suppresses_its_reader(
    listener: Listener,
    inbound_settings: Settings,
    smtp_server: SmtpSink,
    db_url: str,
    tmp_path: Path,
) -> None:
    add_paper(
        inbound_settings,
        1,
        "Unlearning in diffusion models",
        "Unlearning.",
        T - timedelta(hours=3),
        ["Ada Lovelace"],
    )
    reader(inbound_settings, "unlearning")
    digest, row = send_digest(inbound_settings, smtp_server, T)
    verp = digest["X-Test-Envelope-From"]
    listener.send(
        dsn(verp, "5.1.1", diagnostic="550 5.1.1 <ada@example.org>: User unknown"), "", [verp]
    )
    [handled] = settled(inbound_settings, 1)
    assert handled.action == "bounce" and handled.digest_id == row.id
    assert len(smtp_server.messages) == 1  # a bounce is never answered
    with db.session_scope(inbound_settings) as session:
        sub = session.scalars(select(Subscriber)).one()
        assert sub.status is SubscriberStatus.BOUNCED
        suppression = session.scalars(select(Suppression)).one()
        assert suppression.reason.startswith(f"hard bounce 5.1.1 for digest {row.id}")
        bounce = session.scalars(select(Bounce)).one()
        assert (bounce.kind, bounce.status, bounce.digest_id, bounce.suppressed) == (
            "hard",
            "5.1.1",
            row.id,
            True,
        )
    # The next digest is not sent.
    add_paper(
        inbound_settings,
        2,
        "Unlearning for recommender systems",
        "Unlearning.",
        T + timedelta(hours=6),
        ["Chen Wei"],
    )
    pipeline.run_once(inbound_settings, T + timedelta(days=1), fetch=False)
    assert len(smtp_server.to(ADA)) == 1
    # What the operator sees.
    env = cli_env(inbound_settings.database_url, tmp_path)
    listed = CliRunner().invoke(cli, ["bounces", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert (entry["email"], entry["kind"], entry["digest_id"]) == (ADA, "hard", row.id)
    shown = CliRunner().invoke(cli, ["subscribers", "show", ADA], env=env).output
    assert "suppressed:     hard bounce: hard bounce 5.1.1" in shown and "hard" in shown
    stats = CliRunner().invoke(cli, ["stats"], env=env).output
    assert "suppressed addresses: 1 (1 hard bounce)" in stats
    assert "bounces, last 7 days: 1 hard" in stats


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_soft_bounces_add_up_to_the_threshold_and_delays_count_nothing(
    tmp_path: Path, db_url: str, smtp_server: SmtpSink
) -> None:
    settings = replace(
        with_smtp(make_settings(db_url, tmp_path), smtp_server), bounce_score_threshold=2.0
    )
    running = Listener(settings, tmp_path / "inbound.log").start()
    try:
        add_paper(
            settings,
            1,
            "Unlearning in diffusion models",
            "Unlearning.",
            T - timedelta(hours=3),
            ["Ada Lovelace"],
        )
        reader(settings, "unlearning")
        first, _ = send_digest(settings, smtp_server, T)
        verp = first["X-Test-Envelope-From"]
        running.send(dsn(verp, "4.4.7", action="delayed"), "", [verp])
        running.send(dsn(verp, "4.2.2", diagnostic="452 4.2.2 Mailbox full"), "", [verp])
        running.send(dsn(verp, "4.2.2", diagnostic="452 4.2.2 Mailbox full, again"), "", [verp])
        settled(settings, 3)
        with db.session_scope(settings) as session:
            assert session.scalars(select(Subscriber)).one().status is SubscriberStatus.ACTIVE
        add_paper(
            settings,
            2,
            "Unlearning for recommender systems",
            "Unlearning.",
            T + timedelta(hours=6),
            ["Chen Wei"],
        )
        second, _ = send_digest(settings, smtp_server, T + timedelta(days=1))
        verp2 = second["X-Test-Envelope-From"]
        assert verp2 != verp
        running.send(dsn(verp2, "4.2.2"), "", [verp2])
        found = settled(settings, 4)
        assert "suppressed (bounce score 2 reached 2" in (found[-1].result or "")
        with db.session_scope(settings) as session:
            assert session.scalars(select(Subscriber)).one().status is SubscriberStatus.BOUNCED
            kinds = [
                (b.kind, b.points) for b in session.scalars(select(Bounce).order_by(Bounce.id))
            ]
        assert kinds == [("delayed", 0.0), ("soft", 1.0), ("soft", 1.0), ("soft", 1.0)]
    finally:
        running.stop()


def arf(to: str, quoted_headers: str) -> bytes:
    return (
        f"From: Yahoo FBL <feedback@arf.mail.yahoo.example>\r\nTo: {to}\r\n"
        "Subject: FW: digest\r\nMessage-ID: <arf1@yahoo.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--A\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 1\r\n"
        "Original-Rcpt-To: redacted@yahoo.example\r\n\r\n"
        f"--A\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted_headers}\r\n\r\n--A--\r\n"
    ).encode()


@pytest.mark.parametrize("sent_to", ["verp", "request"])
def test_an_arf_complaint_unsubscribes_and_suppresses(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink, sent_to: str
) -> None:
    add_paper(
        inbound_settings,
        1,
        "Unlearning in diffusion models",
        "Unlearning.",
        T - timedelta(hours=3),
        ["Ada Lovelace"],
    )
    reader(inbound_settings, "unlearning")
    digest, row = send_digest(inbound_settings, smtp_server, T)
    if sent_to == "verp":
        to = digest["X-Test-Envelope-From"]
        quoted = "Subject: digest\r\nTo: redacted@yahoo.example"
    else:  # only the quoted Message-ID says which digest it was
        to = REQUEST
        quoted = (
            f"Subject: digest\r\nMessage-ID: {digest['Message-ID']}\r\nTo: redacted@yahoo.example"
        )
    listener.send(arf(to, quoted), "", [to])
    [handled] = settled(inbound_settings, 1)
    assert handled.action == "complaint", handled.result
    with db.session_scope(inbound_settings) as session:
        sub = session.scalars(select(Subscriber)).one()
        assert sub.status is SubscriberStatus.UNSUBSCRIBED
        assert (
            session.scalars(select(Suppression))
            .one()
            .reason.startswith("spam complaint (ARF abuse")
        )
        bounce = session.scalars(select(Bounce)).one()
        assert (bounce.kind, bounce.digest_id) == ("complaint", row.id)
    assert len(smtp_server.messages) == 1  # nobody is mailed about it


def test_mail_to_the_list_unsubscribe_address_unsubscribes_with_a_short_answer(
    listener: Listener, inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_paper(
        inbound_settings,
        1,
        "Unlearning in diffusion models",
        "Unlearning.",
        T - timedelta(hours=3),
        ["Ada Lovelace"],
    )
    reader(inbound_settings, "unlearning")
    digest, _row = send_digest(inbound_settings, smtp_server, T)
    header = " ".join(digest["List-Unsubscribe"].split())
    mailto = re.search(r"<mailto:([^?>]+)\?subject=unsubscribe>", header).group(1)  # type: ignore[union-attr]
    assert mailto.startswith("unsubscribe+")
    # What a mailbox provider's Unsubscribe button sends: no body to speak of.
    listener.send(message(to=mailto, subject="unsubscribe", body=""), ADA, [mailto])
    [handled] = settled(inbound_settings, 1)
    assert handled.action == "unsubscribe"
    with db.session_scope(inbound_settings) as session:
        assert session.scalars(select(Subscriber)).one().status is SubscriberStatus.UNSUBSCRIBED
    [goodbye] = replies_to(smtp_server, ADA)[1:]
    assert goodbye["Subject"] == "You're unsubscribed from Paper Digest"
    assert "List-Unsubscribe" not in goodbye
    # Again (a second click): nothing changes, nothing more is sent.
    listener.send(message(to=mailto, subject="unsubscribe"), ADA, [mailto])
    settled(inbound_settings, 2)
    assert len(replies_to(smtp_server, ADA)) == 2


def test_with_mail_in_off_digests_keep_the_from_address_everywhere(
    inbound_settings: Settings, smtp_server: SmtpSink
) -> None:
    settings = replace(inbound_settings, inbound=False)
    add_paper(
        settings,
        1,
        "Unlearning in diffusion models",
        "Unlearning.",
        T - timedelta(hours=3),
        ["Ada Lovelace"],
    )
    reader(settings, "unlearning")
    digest, _row = send_digest(settings, smtp_server, T)
    assert digest["X-Test-Envelope-From"] == "digest@digest.example.org"
    assert "Reply-To" not in digest
    assert "mailto:digest@digest.example.org?subject=unsubscribe" in digest["List-Unsubscribe"]
    assert "Reply to steer" not in text_of(digest)
    assert settings_env(settings)["DIGEST_INBOUND"] == "0"
