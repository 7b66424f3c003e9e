"""The pieces of mail in, one at a time: signed addresses, reading commands, reading
mail, bounce and complaint reports, the bounce score, steering, the new headers and
settings. The listener itself is tested end to end in test_inbound*.py."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session
from support.emailkit import email_settings

from digest.config import Settings
from digest.deliver.message import build_message
from digest.errors import ConfigError, MessageError
from digest.inbound import actions, bounces, commands, complaints, mail, replies
from digest.match import build_index, steer
from digest.match.rank import TopicSpec
from digest.render.emails import RenderedEmail
from digest.store.models import Bounce, Digest, Subscriber
from digest.subscriptions.lifecycle import add_subscriber
from digest.subscriptions.mailtokens import (
    AddressError,
    confirm_address,
    parse_address,
    reply_address,
    resolve,
    unsubscribe_address,
    verp_address,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# --- signed addresses ---------------------------------------------------------------


def _digest(session: Session, address: str = "ada@example.org") -> Digest:
    sub = add_subscriber(session, address, confirmed=True)
    digest = Digest(subscriber_id=sub.id, period="2026-12-01")
    session.add(digest)
    session.flush()
    return digest


def test_signed_addresses_name_one_digest_and_reader(settings: Settings, session: Session) -> None:
    digest = _digest(session)
    for make, kind in ((verp_address, "bounce"), (reply_address, "reply")):
        address = make(settings, session, digest.subscriber, digest.period)
        assert address.endswith("@digest.example.org") and len(address.split("@")[0]) <= 64
        for form in (address, address.upper()):  # mail systems may change the case
            parsed = parse_address(settings, form)
            assert parsed is not None and parsed.kind == kind
            resolved = resolve(settings, session, parsed)
            assert resolved.digest is digest and resolved.subscriber is digest.subscriber
    mailto = unsubscribe_address(settings, session, digest.subscriber)
    resolved = resolve(settings, session, parse_address(settings, mailto))  # type: ignore[arg-type]
    assert resolved.kind == "unsubscribe" and resolved.subscriber is digest.subscriber


def test_a_signed_address_fails_when_forged_or_when_its_row_names_someone_else(
    settings: Settings, session: Session
) -> None:
    digest = _digest(session)
    address = verp_address(settings, session, digest.subscriber, digest.period)
    local, domain = address.split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    with pytest.raises(AddressError):
        resolve(settings, session, parse_address(settings, forged))  # type: ignore[arg-type]
    # Another reader's id, or another period, with this one's signature.
    other = _digest(session, "bob@example.org")
    for swapped in (
        address.replace(f"+{digest.subscriber_id}-", f"+{other.subscriber_id}-"),
        address.replace("-20261201-", "-20261202-"),
    ):
        with pytest.raises(AddressError):
            resolve(settings, session, parse_address(settings, swapped))  # type: ignore[arg-type]
    # The row re-used for another person (SQLite can re-use the highest id).
    digest.subscriber.email_key = "mallory@example.org"
    with pytest.raises(AddressError):
        resolve(settings, session, parse_address(settings, address))  # type: ignore[arg-type]
    for wrong in (
        "bounce+1-abc@digest.example.org",
        address.replace("digest.example.org", "x.org"),
        "confirm+1-aaaaaaaaaaaaaaaa@digest.example.org",
        "",
    ):
        assert parse_address(settings, wrong) is None


def test_a_confirm_address_expires_and_dies_with_the_token_version(
    settings: Settings, session: Session
) -> None:
    sub = add_subscriber(session, "ada@example.org")
    old = confirm_address(settings, session, sub, NOW - timedelta(days=8))
    fresh = confirm_address(settings, session, sub, NOW)
    assert resolve(settings, session, parse_address(settings, old), NOW).expired  # type: ignore[arg-type]
    assert not resolve(settings, session, parse_address(settings, fresh), NOW).expired  # type: ignore[arg-type]
    sub.token_version += 1
    with pytest.raises(AddressError):
        resolve(settings, session, parse_address(settings, fresh), NOW)  # type: ignore[arg-type]


# --- reading commands ---------------------------------------------------------------


def words(lines: list[commands.Line]) -> list[str]:
    return [f"{line.word} {line.arg}".strip() if line.word else "?" for line in lines]


def test_commands_are_read_line_by_line_and_stop_where_a_reply_quotes() -> None:
    for stop in (
        "-- ",
        "On Mon, 30 Nov 2026 at 07:00, Paper Digest <d@x.org> wrote:",
        "-----Original Message-----",
        "From: Paper Digest <d@x.org>",
        "end",
        "________________",
    ):
        lines, notes = commands.read_lines(
            "Re: [digest] Fwd: HELP me", f"Add x\n> add quoted\n\nmax 3\n{stop}\nadd after\n"
        )
        assert words(lines) == ["help me", "add x", "max 3"], stop
        assert notes == []
    lines, notes = commands.read_lines(
        "5 new papers · agents — 29 Nov", "thanks!\nnice\nhello\nadd x"
    )
    assert words(lines) == ["?", "?", "?"]
    assert "the rest was not read" in notes[0]
    lines, notes = commands.read_lines("", "")
    assert lines == [] and notes == ['no commands found: send "help" for the list']


def test_reading_commands_is_bounded() -> None:
    lines, notes = commands.read_lines("", "list\n" * 500)
    assert len(lines) == commands.MAX_COMMANDS and any("20 commands" in n for n in notes)
    lines, notes = commands.read_lines("", "\n" * 150 + "list")
    assert lines == [] and any("first 100 lines" in n for n in notes)
    lines, _ = commands.read_lines("", "add " + "x" * 5000 + "\nlist")
    assert lines[0].problem.startswith("the line is over 1000") and words(lines[1:]) == ["list"]
    assert len(lines[0].shown) <= 61


# --- reading mail ---------------------------------------------------------------------


def test_mail_is_read_whatever_it_holds() -> None:
    parsed = mail.parse(
        b"From: =?utf-8?q?J=C3=BCrgen?= <Ada@Example.org>\r\nSubject: =?utf-8?b?w6k=?= x\r\nMessage-ID: <a@b>\r\n\r\nlist\r\n"
    )
    assert (parsed.from_addr, parsed.subject, parsed.message_id, parsed.text) == (
        "Ada@example.org",
        "é x",
        "<a@b>",
        "list",
    )
    assert mail.parse(b"Subject: x\r\n\r\n").from_problem == "the message has no From address"
    assert "more than one" in mail.parse(b"From: a@x.org\r\nFrom: b@x.org\r\n\r\n").from_problem
    assert "not valid" in mail.parse(b"From: <nobody@>\r\n\r\n").from_problem
    eight_bit = mail.parse(b"From: a@example.org\r\nSubject: Gr\xfc\xdfe \xe2\x80\x94\r\n\r\n")
    assert eight_bit.subject == "Grüße —" or "Gr" in eight_bit.subject
    html = mail.parse(
        b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n<p>list</p><blockquote>add no</blockquote>&lt;3"
    )
    assert html.text.split() == ["list", "<3"]
    report = mail.parse(
        b"From: a@example.org\r\nContent-Type: multipart/report; report-type=Delivery-Status; boundary=x\r\n\r\n--x--\r\n"
    )
    assert report.report_type == "delivery-status"


def test_hostile_mime_is_read_in_bounded_time() -> None:
    nested = b"From: a@example.org\r\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(5000)
    )
    parsed = mail.parse(nested)  # headers only: the stdlib would recurse 5,000 deep
    assert parsed.from_addr == "a@example.org" and parsed.message is None
    for bomb in (b"<script ", b"<a href='", b"<<<<", b"&#", b"\r\n"):
        raw = b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n" + bomb * (
            200_000 // len(bomb)
        )
        assert len(mail.parse(raw).text) <= mail.TEXT_MAX


# --- bounces and complaints --------------------------------------------------------------


def _report(blocks: str, report_type: str = "delivery-status") -> mail.Mail:
    return mail.parse(
        (
            "From: MAILER-DAEMON@mx.example.net\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type={report_type}; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nsorry\r\n"
            f"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n{blocks}\r\n--B--\r\n"
        ).encode()
    )


@pytest.mark.parametrize(
    "blocks, kind, status, points",
    [
        (
            "Final-Recipient: rfc822; a@x.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 no\r\n",
            "hard",
            "5.1.1",
            0.0,
        ),
        (
            "Final-Recipient: rfc822; a@x.org\r\nAction: failed\r\nStatus: 4.2.2\r\n",
            "soft",
            "4.2.2",
            1.0,
        ),
        (
            "Final-Recipient: rfc822; a@x.org\r\nAction: delayed (queued)\r\nStatus: 4.4.7\r\n",
            "delayed",
            "4.4.7",
            0.0,
        ),
        (
            "Final-Recipient: rfc822; a@x.org\r\nAction: relayed\r\nStatus: 2.0.0\r\n",
            "unrecognised",
            "2.0.0",
            0.0,
        ),
        (  # several recipients: the worst one counts
            "Final-Recipient: rfc822; a@x.org\r\nAction: delayed\r\nStatus: 4.4.7\r\n\r\n"
            "Final-Recipient: rfc822; b@x.org\r\nAction: failed\r\nStatus: 5.7.1\r\n",
            "hard",
            "5.7.1",
            0.0,
        ),
    ],
)
def test_dsns_are_read_by_action_and_status(
    blocks: str, kind: str, status: str, points: float
) -> None:
    report = bounces.read_bounce(_report(blocks))
    assert (report.kind, report.status, report.points, report.detector) == (
        kind,
        status,
        points,
        "dsn",
    )


def test_non_standard_bounces_go_through_mailmans_detectors() -> None:
    qmail = mail.parse(
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\n"
        b"Hi. This is the qmail-send program at mx.example.net.\n"
        b"I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        b"This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        b"<ada@example.org>:\nRemote host said: 550 5.1.1 User unknown\n\n"
        b"--- Below this line is a copy of the message.\n"
    )
    report = bounces.read_bounce(qmail)
    assert report.detector == "flufl.bounce" and report.recipients == ["ada@example.org"]
    assert (report.kind, report.status) == ("hard", "5.1.1")
    vacation = mail.parse(b"From: ada@example.org\r\nSubject: Out of office\r\n\r\nAway.\r\n")
    assert bounces.read_bounce(vacation).kind == "unrecognised"
    assert replies.automatic(vacation) == "an automatic reply (its subject says so)"


def test_the_bounce_score_counts_one_per_digest_and_goes_stale(
    settings: Settings, session: Session
) -> None:
    key = "ada@example.org"

    def bounce(days_ago: float, digest_id: int | None, points: float = 1.0) -> None:
        session.add(
            Bounce(
                email_key=key,
                kind="soft",
                points=points,
                digest_id=digest_id,
                received_at=NOW - timedelta(days=days_ago),
            )
        )
        session.flush()

    digests = [_digest(session, f"r{i}@example.org").id for i in range(4)]
    stale = timedelta(days=7)
    bounce(20, digests[0])  # long before a quiet gap: stale
    bounce(10, digests[1])
    bounce(5, digests[2])
    bounce(5, digests[2])  # the same digest twice counts once
    bounce(1, digests[3], 0.5)
    assert bounces.score(session, key, stale, NOW) == (2.5, 3)
    assert bounces.score(session, key, stale, NOW + timedelta(days=8)) == (0.0, 0)
    session.execute(delete(Bounce))


def test_arf_reports_are_read_with_what_survives_redaction() -> None:
    raw = (
        b"From: fbl@example.net\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        b"--A\r\nContent-Type: text/plain\r\n\r\nabuse report\r\n"
        b"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: Abuse\r\nUser-Agent: FBL/1\r\nVersion: 1\r\n\r\n"
        b"--A\r\nContent-Type: message/rfc822\r\n\r\nFrom: d@x.org\r\nMessage-ID: <digest-1.abc@x.org>\r\n\r\nbody\r\n--A--\r\n"
    )
    report = complaints.read_report(email.message_from_bytes(raw, policy=email.policy.compat32))
    assert report is not None
    assert (report.feedback_type, report.user_agent, report.original_message_id) == (
        "abuse",
        "FBL/1",
        "<digest-1.abc@x.org>",
    )


# --- steering ---------------------------------------------------------------------------


def _papers() -> list[SimpleNamespace]:
    rows = [
        ("Diffusion models for protein design", "We use diffusion models.", ["Ada Lovelace"], 3),
        ("Diffusion language models at scale", "Diffusion for text.", ["Alan Turing"], 5),
        ("Graph neural networks for chemistry", "GNN chemistry.", ["Ada Lovelace"], 0),
        ("Protein folding with transformers", "protein structure design", ["Grace Hopper"], 1),
    ]
    return [
        SimpleNamespace(
            id=i,
            title=t,
            abstract=a,
            authors=au,
            categories=["cs.LG"],
            sources=["arxiv"],
            upvotes=u,
            first_seen_at=NOW,
            published_at=NOW,
            embedding=None,
        )
        for i, (t, a, au, u) in enumerate(rows)
    ]


def test_muted_authors_are_left_out_of_topics_and_of_the_trending_papers() -> None:
    index = build_index(_papers())
    diffusion = [TopicSpec(1, "d", "diffusion")]
    mute = steer.Steering(muted=("A. Lovelace",))
    assert [m.paper.id for m in steer.match_steered(index, diffusion, 10, steer.NO_STEERING)] == [
        1,
        0,
    ]
    assert [m.paper.id for m in steer.match_steered(index, diffusion, 10, mute)] == [1]
    assert [m.paper.id for m in steer.match_steered(index, [], 10, mute)] == [1, 3]
    assert steer.count_steered(index, diffusion, mute) == 1


def test_less_demotes_papers_like_the_disliked_one_without_hiding_them() -> None:
    index = build_index(_papers())
    topics = [TopicSpec(1, "d", "diffusion OR protein")]
    plain = steer.match_steered(index, topics, 10, steer.NO_STEERING)
    top = plain[0].paper
    disliked = steer.Dislike(steer.title_terms(top.title))
    steered = steer.match_steered(index, topics, 10, steer.Steering(dislikes=(disliked,)))
    assert [m.score for m in steered if m.paper is top] == [round(plain[0].score / 2, 4)]
    assert [m.score for m in steered] == sorted((m.score for m in steered), reverse=True)
    assert sorted(m.paper.id for m in plain) == sorted(m.paper.id for m in steered)


def test_more_builds_a_keyword_topic_from_the_title_that_finds_other_papers() -> None:
    papers = _papers()
    assert steer.keyword_query(papers[0], papers) == "diffusion models"
    # The reader's own topic words come last: "more like it" is about the rest.
    assert steer.keyword_query(papers[0], papers, ["diffusion"]) == "models"
    assert steer.keyword_query(papers[2], papers) == "networks chemistry"  # found nowhere else


# --- headers and settings --------------------------------------------------------------


def test_answers_and_digests_carry_the_mail_in_headers() -> None:
    settings = email_settings()
    rendered = RenderedEmail("Subject", "<p>x</p>", "x")
    built = build_message(
        settings,
        rendered,
        to="ada@example.org",
        message_id="<digest-1.x@digest.example.org>",
        unsubscribe_url="https://digest.example.org/unsubscribe/t",
        return_path="bounce+1-abcdefghijklmnop@digest.example.org",
        reply_to="reply+1-abcdefghijklmnop@digest.example.org",
        unsubscribe_mailto="unsubscribe+1-abcdefghijklmnop@digest.example.org",
        in_reply_to="<theirs@example.org>",
        auto_submitted="auto-replied",
    )
    msg = email.message_from_bytes(built.data)
    assert built.envelope_from == "bounce+1-abcdefghijklmnop@digest.example.org"
    assert msg["Reply-To"] == "Paper Digest <reply+1-abcdefghijklmnop@digest.example.org>"
    assert msg["In-Reply-To"] == msg["References"] == "<theirs@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert (
        "mailto:unsubscribe+1-abcdefghijklmnop@digest.example.org?subject=unsubscribe"
        in " ".join(msg["List-Unsubscribe"].split())
    )
    for hostile in ("<a@b>\r\nBcc: x@evil.example", "not an id", "<" + "a" * 500 + "@b>"):
        built = build_message(
            settings,
            rendered,
            to="ada@example.org",
            message_id="<m@x.org>",
            unsubscribe_url=None,
            in_reply_to=hostile,
        )
        assert b"In-Reply-To" not in built.data and b"Bcc" not in built.data
    with pytest.raises(MessageError):
        build_message(
            settings,
            rendered,
            to="a@x.org",
            message_id="<m@x.org>",
            unsubscribe_url=None,
            auto_submitted="no",
        )


def test_mail_in_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "DIGEST_FROM": "Papers <papers@example.org>",
            "DIGEST_INBOUND_DOMAIN": "Mail.Example.org",
            "DIGEST_BOUNCE_SCORE_THRESHOLD": "3.5",
            "DIGEST_BOUNCE_STALE_DAYS": "10",
            "DIGEST_INBOUND_REPLIES_PER_HOUR": "2",
            "DIGEST_INBOUND_MAX_BYTES": "2097152",
            "DIGEST_INBOUND": "no",
        }
    )
    assert (settings.mail_domain, settings.request_addr) == (
        "mail.example.org",
        "papers-request@mail.example.org",
    )
    assert (
        settings.bounce_score_threshold,
        settings.bounce_stale_days,
        settings.inbound_replies_per_hour,
    ) == (3.5, 10, 2)
    assert settings.inbound_max_bytes == 2097152 and settings.inbound is False
    assert (
        Settings.from_env({"DIGEST_REQUEST_ADDRESS": "Req@Lists.Example.org"}).request_addr
        == "Req@Lists.Example.org"
    )
    for name, value, message in [
        ("DIGEST_INBOUND_DOMAIN", "not a domain", "not a domain name"),
        ("DIGEST_REQUEST_ADDRESS", "nobody", "not an email address"),
        ("DIGEST_REQUEST_ADDRESS", "a+b@x.org", "no '\\+'"),
        ("DIGEST_BOUNCE_SCORE_THRESHOLD", "inf", "expected a number"),
        ("DIGEST_BOUNCE_SCORE_THRESHOLD", "0.5", "at least 1"),
        ("DIGEST_INBOUND_MAX_BYTES", "1000", "at least 65536"),
        ("DIGEST_INBOUND", "maybe", "expected true/false"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Settings.from_env({name: value})


def test_answers_are_never_sent_to_machine_mail() -> None:
    def automatic(headers: str) -> str | None:
        return replies.automatic(
            mail.parse(f"From: a@example.org\r\n{headers}\r\n\r\nlist".encode())
        )

    assert automatic("Auto-Submitted: auto-generated") == "Auto-Submitted: auto-generated"
    assert automatic("Auto-Submitted: no") is None
    assert automatic("Precedence: junk") == "Precedence: junk"
    assert automatic("List-Id: <x.example.org>") == "mailing-list traffic (List-Id)"
    assert automatic("X-Auto-Response-Suppress: OOF") is not None
    assert automatic("Subject: Automatic reply: your digest") is not None
    assert automatic("Subject: Re: your digest") is None


def test_unused_subscriber_model_fields_stay_consistent(session: Session) -> None:
    # The summary of an answer reads the steering signals of a reader who has none.
    sub = Subscriber(email="z@example.org", email_key="z@example.org")
    session.add(sub)
    session.flush()
    assert actions.signals(session, sub) == ([], 0)
