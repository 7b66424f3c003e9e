"""The library under the front door: form validation, signup decisions, the once-a-day
claim, link purposes and ages, the erasure fingerprint (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.addresses import email_key
from digest.core.clock import utcnow
from digest.errors import TokenError
from digest.store import db, suppression
from digest.store.models import Subscriber, SubscriberStatus
from digest.subscriptions import links, signup
from digest.subscriptions.validate import FormError, validate_signup, validate_topic_lines

CONTEXT = signup.ConsentContext(ip="192.0.2.1", user_agent="Test/1", wording="2026-12-01.x")
FORM = {
    "email": "ada@example.org",
    "topics": "agents",
    "frequency": "daily",
    "weekday": "mon",
    "hour": "7",
    "timezone": "UTC",
}


def test_validate_signup_reports_every_bad_field_at_once() -> None:
    with pytest.raises(FormError) as caught:
        validate_signup(
            email="x\n@example.org",
            topics='ok\n"bad\n' + "y" * 1001,
            frequency="often",
            weekday="mon",
            hour="-1",
            timezone="Europe/Pariss",
        )
    errors = caught.value.errors
    assert set(errors) == {"email", "topics", "frequency", "hour", "timezone"}
    assert errors["topics"] == [
        'Line 2 (“"bad”): unclosed quote at column 1.',
        "Line 3 (“" + "y" * 59 + "…”): it is 1001 characters long; a topic has at most 1000.",
    ]
    assert 'did you mean "Europe/Paris"' in errors["timezone"][0]


def test_topic_lines_skip_blanks_merge_repeats_and_count_the_limit() -> None:
    assert validate_topic_lines("\n  diffusion  models \n\nDiffusion models\nllm\n") == [
        "diffusion models",
        "llm",
    ]
    assert validate_topic_lines("") == []
    with pytest.raises(FormError, match="51 topics: the limit is 50; remove 1"):
        validate_topic_lines("\n".join(f"t{i}" for i in range(51)))


def test_work_on_a_huge_field_is_bounded() -> None:
    # A megabyte address is refused on its length, before the parser sees it.
    with pytest.raises(FormError) as caught:
        validate_signup(**{**FORM, "email": "a" * 1_000_000 + "@example.org"})
    assert "1000012 characters long" in caught.value.errors["email"][0]


def test_idn_domains_are_one_mailbox_however_typed() -> None:
    assert subs.normalise_email("Ada@Bücher.Example") == (
        "Ada@xn--bcher-kva.example",
        "ada@xn--bcher-kva.example",
    )
    assert email_key("ada@BÜCHER.example") == "ada@xn--bcher-kva.example"


def _signup(session: Session, email: str, **form: str) -> signup.Decision:
    request = validate_signup(**{**FORM, **form, "email": email})
    return signup.request_signup(session, request, CONTEXT)


def test_what_a_signup_mails_in_each_state(session: Session) -> None:
    subs.add_subscriber(session, "active@example.org", confirmed=True)
    subs.unsubscribe(session, subs.add_subscriber(session, "left@example.org", confirmed=True))
    suppression.suppress(session, "gone@example.org", "550", 550)
    decisions = {
        email: _signup(session, email).email
        for email in (
            "new@example.org",
            "active@example.org",
            "left@example.org",
            "gone@example.org",
        )
    }
    assert decisions == {
        "new@example.org": "confirm",
        "active@example.org": "link",
        "left@example.org": "confirm",
        "gone@example.org": None,
    }
    # Within the day, nothing more for anyone; the states are as they should be.
    assert {e: _signup(session, e).email for e in decisions} == dict.fromkeys(decisions)
    left = subs.get_subscriber(session, "left@example.org")
    assert left is not None and left.status is SubscriberStatus.PENDING
    assert subs.get_subscriber(session, "gone@example.org") is None


def test_one_claim_wins_when_two_requests_race(settings: Settings) -> None:
    with db.session_scope(settings) as session:
        sub_id = subs.add_subscriber(session, "ada@example.org", confirmed=True).id
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        # All four start together; on SQLite BEGIN IMMEDIATE then lets one in at a time,
        # on PostgreSQL they really race: either way exactly one claim may win.
        barrier.wait()
        with db.session_scope(settings) as session:
            sub = session.get(Subscriber, sub_id)
            assert sub is not None
            wins.append(signup.claim_notice(session, sub, utcnow(), signup.SIGNUP_EMAIL_INTERVAL))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == [False, False, False, True]


def test_confirming_records_consent_and_lifts_an_erasure(session: Session) -> None:
    sub = subs.add_subscriber(session, "ada@example.org")
    suppression.suppress_erased(session, "ada@example.org")
    assert signup.confirm_subscription(session, sub, CONTEXT)
    assert not signup.confirm_subscription(session, sub, CONTEXT)  # once
    assert sub.status is SubscriberStatus.ACTIVE and sub.consent_ip == "192.0.2.1"
    assert "wording 2026-12-01.x" in (sub.consent_detail or "")
    assert not suppression.is_suppressed(session, "ada@example.org")


def test_link_purposes_do_not_stand_in_for_each_other(settings: Settings, session: Session) -> None:
    sub = subs.add_subscriber(session, "ada@example.org", confirmed=True)
    for made in ("stop", "view"):
        token = subs.make_token(settings, sub, made, session=session)
        for other in ("manage", "unsubscribe", "confirm", "stop", "view"):
            if other == made:
                assert links.read_link(settings, token, other, session=session) == sub.id
            else:
                with pytest.raises(TokenError):
                    links.read_link(settings, token, other, session=session)
    old = subs.make_token(settings, sub, "view", session=session, now=utcnow() - timedelta(days=91))
    with pytest.raises(TokenError, match="expired"):
        links.read_link(settings, old, "view", session=session)
    confirm = subs.make_token(
        settings, sub, "confirm", session=session, now=utcnow() - timedelta(hours=73)
    )
    with pytest.raises(TokenError, match="expired"):
        links.read_link(settings, confirm, "confirm", session=session)
    # Unsubscribe links never expire.
    ancient = subs.make_token(
        settings, sub, "unsubscribe", session=session, now=utcnow() - timedelta(days=3000)
    )
    assert links.read_link(settings, ancient, "unsubscribe", session=session) == sub.id


def test_digest_stamps_round_trip() -> None:
    due = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert links.digest_stamp(due) == "20261130T0600Z"
    assert links.parse_stamp("20261130T0600Z") == due
    for bad in ("", "2026-11-30", "20261330T0600Z", "20261130T0600Z/../x", "x" * 14):
        assert links.parse_stamp(bad) is None


def test_the_erasure_fingerprint_is_not_the_address() -> None:
    key = suppression.erased_key("Ada@Example.org ")
    assert key.startswith("sha256:") and "ada" not in key and len(key) == 71
    assert key == suppression.erased_key("ada@example.org")
