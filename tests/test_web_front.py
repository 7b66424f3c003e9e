"""The subscribe form from outside: bad input of every kind, enumeration, floods, forgery.

Flask's test client on SQLite and PostgreSQL, through the real CSRF protection and
rate limits (memory, and a real Redis shared by two apps as by two web processes).
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import func, select
from support.services import RedisServer
from support.webkit import (
    SIGNUP,
    Visitor,
    body_text,
    csrf_token,
    links_in,
    outbox_messages,
    path_of,
    text,
)

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.store import db, suppression
from digest.store.models import Consent, Notification, Subscriber, SubscriberStatus
from digest.subscriptions.validate import MAX_TOPICS

ADA = "ada@example.org"


def count(settings: Settings, model: type) -> int:
    with db.session_scope(settings) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def subscriber(settings: Settings, key: str) -> Subscriber | None:
    with db.session_scope(settings) as session:
        row = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()
        if row is not None:
            session.expunge(row)
        return row


def signup(**changes: str) -> dict[str, str]:
    return {**SIGNUP, **changes}


def field_errors(page: str) -> dict[str, str]:
    """Each error on the page by the field it is tied to (``<id>-error``)."""
    found = {}
    for name, message in re.findall(
        r'<div class="error" id="([\w-]+)-error">(.*?)</div>', page, re.S
    ):
        found[name] = html.unescape(re.sub(r"<[^>]+>", " ", message))
    return found


def assert_tied(page: str, field: str) -> None:
    """The field is marked invalid and points at its error (screen readers read it)."""
    tag = re.search(rf'<(?:input|textarea|select)[^>]*\bid="{field}"[^>]*>', page)
    assert tag, field
    assert 'aria-invalid="true"' in tag.group(0), tag.group(0)
    described = re.search(r'aria-describedby="([^"]+)"', tag.group(0))
    assert described and f"{field}-error" in described.group(1).split(), tag.group(0)


# --- bad input: a clear message next to the field, what was typed kept, nothing stored ----


BAD = {
    "line break in the address": (
        {"email": "ada@example.org\r\nBcc: victim@example.org"},
        "email",
        "contains a line break",
    ),
    "320 characters": ({"email": "a" * 308 + "@example.org"}, "email", "320 characters long"),
    "no @": ({"email": "ada.example.org"}, "email", "must have an @-sign"),
    "unknown time zone": ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Unknown time zone"),
    "fixed offset": ({"timezone": "UTC+2"}, "timezone", "not a place"),
    "hour 25": ({"hour": "25"}, "hour", 'hour "25" is not a whole hour from 0 to 23'),
    "weekday": ({"frequency": "weekly", "weekday": "someday"}, "weekday", "Monday to Sunday"),
    "frequency": ({"frequency": "hourly"}, "frequency", "not one of daily, weekly"),
    "60 topics": (
        {"topics": "\n".join(f"topic{i}" for i in range(60))},
        "topics",
        f"60 topics: the limit is {MAX_TOPICS}; remove 10 of them.",
    ),
    "10 KB query": (
        {"topics": "diffusion " * 1100},
        "topics",
        "10999 characters long; a topic has at most 1000",
    ),
    "unclosed quote": (
        {"topics": 'diffusion\nlanguage "reward hacking'},
        "topics",
        'Line 2 (“language "reward hacking”): unclosed quote at column 10.',
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_shown_next_to_its_field_and_kept(settings: Settings, case: str) -> None:
    changes, field, message = BAD[case]
    web = Visitor(settings)
    response = web.post("/subscribe", signup(**changes))
    page = text(response)
    assert response.status_code == 400
    errors = field_errors(page)
    assert list(errors) == [field], errors
    assert message in errors[field], errors[field]
    assert_tied(page, field)
    # The summary at the top links to the field.
    assert f'<a href="#{field}">' in page
    # Everything typed comes back (escaped), the bad value included.
    typed = signup(**changes)
    if field in ("email", "topics"):
        shown = typed[field].replace('"', "&#34;").replace("\r\n", "\n")
        assert shown[:2000] in page.replace("\r\n", "\n")
    elif field == "frequency":  # two radio buttons cannot hold "hourly": the message quotes it
        assert f'"{typed[field]}"' in errors[field]
    else:
        assert f'value="{typed[field]}"' in page
    assert 'value="ada@example.org"' in page or field == "email"
    # Nothing stored, nothing sent.
    assert count(settings, Subscriber) == 0
    assert outbox_messages(settings) == []


def test_an_idn_domain_is_accepted_and_stored_as_punycode(settings: Settings) -> None:
    web = Visitor(settings)
    response = web.post("/subscribe", signup(email="Ada@Bücher.example"))
    assert response.status_code == 200
    assert "Check your inbox" in text(response)
    row = subscriber(settings, "ada@xn--bcher-kva.example")
    assert row is not None and row.email == "Ada@xn--bcher-kva.example"
    (confirm,) = outbox_messages(settings)
    assert confirm["To"] == "Ada@xn--bcher-kva.example"
    # The same mailbox typed the other way is the same subscriber.
    assert web.post("/subscribe", signup(email="ada@xn--BCHER-kva.example")).status_code == 200
    assert count(settings, Subscriber) == 1


def test_the_honeypot_gets_the_same_answer_and_nothing_happens(settings: Settings) -> None:
    honest = Visitor(settings, ip="203.0.113.1").post("/subscribe", signup(email="bob@example.org"))
    bot = Visitor(settings, ip="203.0.113.2").post(
        "/subscribe", signup(email="bot@example.org", website="https://spam.example")
    )
    assert bot.status_code == honest.status_code == 200
    assert text(bot).replace("bot@", "X@") == text(honest).replace("bob@", "X@")
    assert subscriber(settings, "bot@example.org") is None
    assert [m["To"] for m in outbox_messages(settings)] == ["bob@example.org"]


def test_a_huge_body_is_refused_before_it_is_parsed(settings: Settings) -> None:
    web = Visitor(settings)
    response = web.post("/subscribe", signup(topics="x" * 300_000))
    assert response.status_code == 413
    assert "too much at once" in text(response)
    assert count(settings, Subscriber) == 0


def test_a_post_without_the_csrf_token_is_refused_and_keeps_the_form(settings: Settings) -> None:
    web = Visitor(settings)
    response = web.post_bare("/subscribe", data=signup(topics="agents"))
    page = text(response)
    assert response.status_code == 400
    assert "This form had expired" in page
    assert 'value="ada@example.org"' in page and ">agents</textarea>" in page
    # A fresh token is on the re-shown form: sending it again works.
    again = web.post_bare("/subscribe", data={**signup(), "csrf_token": csrf_token(page)})
    assert again.status_code == 200
    assert count(settings, Subscriber) == 1


def test_a_token_from_another_browser_is_refused(settings: Settings) -> None:
    mallory, ada = Visitor(settings), Visitor(settings)
    forged = {**signup(), "csrf_token": mallory.token()}
    assert ada.post_bare("/subscribe", data=forged).status_code == 400
    assert count(settings, Subscriber) == 0


def test_redirects_only_go_to_our_own_paths(settings: Settings) -> None:
    web = Visitor(settings)
    for path in ("/subscribe?next=https://evil.example/", "/subscribe?next=//evil.example"):
        response = web.get(path)
        assert response.status_code == 303
        assert response.headers["Location"] == "/#subscribe"


def test_every_page_sends_the_strict_policy_and_frames_get_their_own(settings: Settings) -> None:
    web = Visitor(settings)
    for path in ("/", "/link", "/no-such-page", "/static/digest.css"):
        policy = web.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    sample = web.get("/sample")
    policy = sample.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert "script-src" not in policy and "sandbox" in policy  # no script can run at all
    assert sample.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert '<base target="_blank">' in text(sample)


# --- the same answer whatever the address's state -------------------------------------------


def _states(settings: Settings) -> dict[str, str]:
    """One address in each state; returns state -> address."""
    with db.session_scope(settings) as session:
        subs.add_subscriber(session, "pending@example.org", topics=["llm"])
        subs.add_subscriber(session, "active@example.org", confirmed=True, topics=["llm"])
        paused = subs.add_subscriber(session, "paused@example.org", confirmed=True)
        subs.pause(session, paused)
        left = subs.add_subscriber(session, "left@example.org", confirmed=True)
        subs.unsubscribe(session, left)
        bounced = subs.add_subscriber(session, "bounced@example.org", confirmed=True)
        suppression.suppress(session, bounced.email, "550 no such user", 550)
        bounced.status = SubscriberStatus.BOUNCED
        suppression.suppress(session, "suppressed@example.org", "550 no such user", 550)
    return {
        "new": "new@example.org",
        "pending": "pending@example.org",
        "active": "active@example.org",
        "paused": "paused@example.org",
        "unsubscribed": "left@example.org",
        "bounced": "bounced@example.org",
        "suppressed": "suppressed@example.org",
    }


def _answer(response: object, address: str) -> tuple[int, str, str]:
    page = text(response)  # type: ignore[arg-type]
    page = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', page)
    return (
        response.status_code,  # type: ignore[attr-defined]
        response.headers["Content-Type"],  # type: ignore[attr-defined]
        page.replace(address, "ADDRESS"),
    )


def test_the_answer_is_byte_identical_whatever_state_the_address_is_in(
    settings: Settings,
) -> None:
    addresses = _states(settings)
    answers = {}
    for n, (state, address) in enumerate(addresses.items()):
        web = Visitor(settings, ip=f"198.51.100.{n + 1}")
        answers[state] = _answer(web.post("/subscribe", signup(email=address)), address)
    first = answers["new"]
    assert first[0] == 200 and "Check your inbox" in first[2]
    for state, answer in answers.items():
        assert answer == first, state
    # What was mailed depends on the state, and only the mailbox's owner sees it.
    sent = {m["To"]: m["Subject"] for m in outbox_messages(settings)}
    assert sent == {
        "new@example.org": "Confirm your subscription to Paper Digest",
        "pending@example.org": "Confirm your subscription to Paper Digest",
        "left@example.org": "Confirm your subscription to Paper Digest",
        "active@example.org": "Your link to your Paper Digest subscription",
        "paused@example.org": "Your link to your Paper Digest subscription",
    }
    # A stranger's form changed nobody's subscription.
    active = subscriber(settings, "active@example.org")
    assert active is not None and active.status is SubscriberStatus.ACTIVE
    assert active.timezone == "UTC"


def test_the_same_address_a_thousand_times(settings: Settings) -> None:
    """Rate-limited after a few, identically for a subscribed and an unknown address, and
    at most one email either way."""
    with db.session_scope(settings) as session:
        subs.add_subscriber(session, "active@example.org", confirmed=True)
    runs = {}
    for n, address in enumerate(("active@example.org", "nobody@example.org")):
        web = Visitor(settings, ip=f"192.0.2.{n + 1}")
        answers = [
            _answer(web.post("/subscribe", signup(email=address)), address) for _ in range(1000)
        ]
        runs[address] = answers
        statuses = [a[0] for a in answers]
        assert statuses[:5] == [200] * 5
        assert set(statuses[5:]) == {429}
        limited = answers[-1][2]
        assert "Too many attempts" in limited and 'value="ADDRESS"' in limited
    assert runs["active@example.org"] == runs["nobody@example.org"]
    sent = [m["To"] for m in outbox_messages(settings)]
    assert sorted(sent) == ["active@example.org", "nobody@example.org"]


def test_one_ip_is_limited_across_addresses(settings: Settings) -> None:
    web = Visitor(settings, ip="192.0.2.50")
    statuses = [
        web.post("/subscribe", signup(email=f"reader{i}@example.org")).status_code
        for i in range(25)
    ]
    assert statuses[:20] == [200] * 20 and set(statuses[20:]) == {429}
    # Someone else is not held back.
    assert Visitor(settings, ip="192.0.2.51").post("/subscribe", signup()).status_code == 200


@pytest.mark.integration
def test_limits_are_shared_through_redis_by_every_web_process(
    db_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = make_settings(db_url, tmp_path, broker_url=redis_server.url)
    one, two = Visitor(settings, ip="192.0.2.7"), Visitor(settings, ip="192.0.2.8")
    statuses = [v.post("/subscribe", signup()).status_code for v in (one, two) * 3]
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert any(k.startswith(b"LIMITS") for k in redis_server.client().keys("*"))
    # With a broker the web never sends mail itself: the row waits for beat's task.
    with db.session_scope(settings) as session:
        (row,) = session.scalars(select(Notification)).all()
        assert row.kind == "confirm" and row.status.value == "pending"
    assert outbox_messages(settings) == []


def test_a_confirmation_at_most_once_a_day_per_address(settings: Settings) -> None:
    web = Visitor(settings)
    for _ in range(3):
        assert web.post("/subscribe", signup(topics="agents")).status_code == 200
    assert len(outbox_messages(settings)) == 1
    # The latest form's topics are what the pending subscription holds.
    assert web.post("/subscribe", signup(topics="robots")).status_code == 200
    row = subscriber(settings, ADA)
    assert row is not None
    with db.session_scope(settings) as session:
        stored = session.get(Subscriber, row.id)
        assert stored is not None and [t.query for t in stored.topics] == ["robots"]
        stored.notified_at = utcnow() - timedelta(hours=25)  # a day later
    assert web.post("/subscribe", signup()).status_code == 200
    assert len(outbox_messages(settings)) == 2


def test_an_unsubscribed_reader_goes_through_confirmation_again(settings: Settings) -> None:
    with db.session_scope(settings) as session:
        old = subs.add_subscriber(session, ADA, confirmed=True, topics=["diffusion"])
        old_manage = f"/manage/{subs.make_token(settings, old, 'manage', session=session)}"
        subs.unsubscribe(session, old)
    web = Visitor(settings, agent="Firefox/200")
    assert web.post("/subscribe", signup(topics="robots\nagents")).status_code == 200
    row = subscriber(settings, ADA)
    assert row is not None and row.status is SubscriberStatus.PENDING
    assert row.unsubscribed_at is None and row.confirmed_at is None
    (confirm,) = outbox_messages(settings)
    assert "Confirm your subscription" in confirm["Subject"]
    assert "- robots" in body_text(confirm) and "diffusion" not in body_text(confirm)
    # Earlier links are retired; nothing is sent until the new confirmation.
    assert web.get(old_manage).status_code == 400
    (link,) = links_in(confirm, "confirm")
    done = web.post(path_of(settings, link))
    assert done.status_code == 200 and "You're subscribed" in text(done)
    with db.session_scope(settings) as session:
        consents = session.scalars(select(Consent).order_by(Consent.id)).all()
        stored = session.get(Subscriber, row.id)
        assert stored is not None and stored.status is SubscriberStatus.ACTIVE
        assert [c.action.value for c in consents] == ["resubscribe", "confirm"]
        assert {c.ip for c in consents} == {"203.0.113.7"}
        assert {c.user_agent for c in consents} == {"Firefox/200"}
        assert all(c.wording and c.wording.startswith("2026-") for c in consents)
        assert stored.consent_source == "web" and stored.consent_ip == "203.0.113.7"
        assert "Firefox/200" in (stored.consent_detail or "")
