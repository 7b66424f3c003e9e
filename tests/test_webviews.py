"""The pages behind our emails' links: /unsubscribe, /confirm, /manage.

Flask's test client on SQLite and PostgreSQL, then the whole path for real: gunicorn,
headless Chromium fetching the pages, a mail provider's RFC 8058 one-click POST over
HTTP, the welcome email through the outbox and a real SMTP server.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.browser import dump_dom, requires_chromium
from support.smtpserver import SmtpSink
from support.webkit import SIGNUP, Visitor, csrf_token
from test_web import assert_security_headers, fetch, gunicorn, gunicorn_env

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.store import db
from digest.store.models import (
    Frequency,
    Notification,
    NotificationStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.web import wording as webviews
from digest.web.app import create_app

ADA = "ada@example.org"


def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def path_of(settings: Settings, url: str) -> str:
    """The path of one of our links (the test client has no host)."""
    assert url.startswith(settings.base_url + "/"), url
    return url[len(settings.base_url) :]


def add(session: Session, address: str = ADA, **kwargs: object) -> Subscriber:
    kwargs.setdefault("topics", ["diffusion", "title:transformer"])
    kwargs.setdefault("confirmed", True)
    subscriber = subs.add_subscriber(session, address, **kwargs)  # type: ignore[arg-type]
    session.commit()
    return subscriber


def state(settings: Settings, subscriber_id: int) -> tuple[SubscriberStatus, object, object]:
    """Status, confirmed_at and unsubscribed_at as the database has them now."""
    with db.session_scope(settings) as s:
        row = s.get(Subscriber, subscriber_id)
        assert row is not None
        return row.status, row.confirmed_at, row.unsubscribed_at


def link(settings: Settings, session: Session, sub: Subscriber, purpose: str, **kw: object) -> str:
    return f"/{purpose}/{subs.make_token(settings, sub, purpose, session=session, **kw)}"  # type: ignore[arg-type]


def outbox_messages(settings: Settings) -> list[email.message.EmailMessage]:
    files = sorted(Path(settings.outbox).glob("*.eml"))
    return [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for f in files
    ]


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined]


# --- unsubscribe ----------------------------------------------------------------------


def test_unsubscribe_get_shows_a_button_and_changes_nothing(
    settings: Settings, session: Session
) -> None:
    sub = add(session)
    path = path_of(settings, subs.unsubscribe_url(settings, sub, session=session))
    session.commit()
    web = client(settings)
    before = state(settings, sub.id)
    for method in (web.get, web.head, web.get):  # scanners fetch links, some twice
        response = method(path)
        assert response.status_code == 200
    page = text(web.get(path))
    assert "Unsubscribe <strong>ada@example.org</strong> from Paper Digest?" in page
    # One form posting back to the same URL; no CSRF field, no script.
    assert page.count("<form") == 1
    assert f'<form method="post" action="{path}">' in page
    assert "csrf" not in page.lower() and "<script" not in page
    assert state(settings, sub.id) == before
    assert before[0] is SubscriberStatus.ACTIVE
    assert_security_headers(response.headers)
    assert response.headers["Cache-Control"] == "no-store"


def test_unsubscribe_post_is_idempotent_and_sends_nothing(
    settings: Settings, session: Session
) -> None:
    sub = add(session)
    path = path_of(settings, subs.unsubscribe_url(settings, sub, session=session))
    session.commit()
    web = client(settings)

    first = web.post(path)
    assert first.status_code == 200
    assert "You are unsubscribed" in text(first)
    assert "ada@example.org will get no more digests" in text(first)
    status, _, unsubscribed_at = state(settings, sub.id)
    assert status is SubscriberStatus.UNSUBSCRIBED and unsubscribed_at is not None

    again = web.post(path)
    assert again.status_code == 200
    assert "You are unsubscribed" in text(again)
    assert state(settings, sub.id)[2] == unsubscribed_at  # the first time is kept

    page = web.get(path)
    assert page.status_code == 200
    assert "You are already unsubscribed" in text(page)
    assert "<form" not in text(page)
    # No goodbye email: the reader asked for no more mail.
    assert outbox_messages(settings) == []


def test_rfc8058_one_click_post_without_cookies(settings: Settings, session: Session) -> None:
    """What Gmail or Yahoo do with our List-Unsubscribe-Post header."""
    sub = add(session, confirmed=False)  # even before confirming, leaving must work
    other = add(session, "bob@example.org")
    path = path_of(settings, subs.unsubscribe_url(settings, sub, session=session))
    session.commit()
    web = client(settings)
    response = web.post(
        path,
        data={"List-Unsubscribe": "One-Click"},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert state(settings, sub.id)[0] is SubscriberStatus.UNSUBSCRIBED
    assert state(settings, other.id)[0] is SubscriberStatus.ACTIVE
    assert outbox_messages(settings) == []


def test_bad_links_get_a_400_page_and_change_nothing(settings: Settings, session: Session) -> None:
    sub = add(session, confirmed=False)
    gone = add(session, "gone@example.org")
    gone_link = link(settings, session, gone, "unsubscribe")
    subs.remove(session, gone)
    unsub = link(settings, session, sub, "unsubscribe")
    old_unsub, old_manage, old_confirm = (
        link(settings, session, sub, p) for p in ("unsubscribe", "manage", "confirm")
    )
    subs.rotate_tokens(session, sub)  # every link made so far is superseded
    fresh_unsub = link(settings, session, sub, "unsubscribe")
    fresh_confirm = link(settings, session, sub, "confirm")
    fresh_manage = link(settings, session, sub, "manage")
    session.commit()
    mac_flipped = fresh_unsub[:-1] + ("A" if fresh_unsub[-1] != "A" else "B")
    other_id = fresh_unsub.replace(f"/{sub.id}.", f"/{sub.id + 1000}.", 1)

    invalid = {
        "tampered signature": mac_flipped,
        "tampered id": other_id,
        "cut short": fresh_unsub[:-5],
        "garbage": "/unsubscribe/not-a-token",
        "hostile": "/unsubscribe/%3Cscript%3Ealert(1)%3C%5Cscript%3E",
        "manage token on unsubscribe": "/unsubscribe/" + fresh_manage.rsplit("/", 1)[1],
        "confirm token on unsubscribe": "/unsubscribe/" + fresh_confirm.rsplit("/", 1)[1],
        "unsubscribe token on confirm": "/confirm/" + fresh_unsub.rsplit("/", 1)[1],
        "unsubscribe token on manage": "/manage/" + fresh_unsub.rsplit("/", 1)[1],
        "deleted subscriber": gone_link,
    }
    superseded = {
        "old manage": old_manage,
        "old confirm": old_confirm,
    }
    assert unsub == old_unsub
    web = Visitor(settings)
    before = state(settings, sub.id)
    for cases, heading in (
        (invalid, "This link is not valid"),
        (superseded, "This link is not valid anymore"),
    ):
        for name, path in cases.items():
            # Confirm posts carry the page's CSRF token; the unsubscribe POST never does.
            post = web.post_bare if path.startswith("/unsubscribe/") else web.post
            methods = [web.get] if path.startswith("/manage/") else [web.get, post]
            for method in methods:
                response = method(path)
                page = text(response)
                assert response.status_code == 400, (name, method)
                assert f"<h1>{heading}</h1>" in page, (name, page)
                assert "<script>" not in page
                # The only form offered: "email me a new link" (never for leaving).
                forms = re.findall(r'<form method="post" action="([^"]+)"', page)
                assert forms == ([] if path.startswith("/unsubscribe/") else ["/link"]), name
                assert response.headers["Cache-Control"] == "no-store"
    # What to do about it is on the page.
    assert "most recent" in text(web.get(old_manage))
    assert "Copy the whole link" in text(web.get(mac_flipped))
    assert state(settings, sub.id) == before
    assert before[0] is SubscriberStatus.PENDING
    # An unsubscribe link from an older email still works after the rotation.
    assert web.post_bare(old_unsub).status_code == 200
    assert state(settings, sub.id)[0] is SubscriberStatus.UNSUBSCRIBED


# --- confirm --------------------------------------------------------------------------


def test_confirm_get_asks_then_post_activates_and_welcomes(
    settings: Settings, session: Session
) -> None:
    sub = add(session, confirmed=False, timezone="Europe/Paris", hour=8)
    path = path_of(settings, subs.confirm_url(settings, sub, session=session))
    session.commit()
    web = Visitor(settings)

    page = web.get(path)
    assert page.status_code == 200
    body = text(page)
    assert "<h1>Confirm your subscription</h1>" in body
    assert "Send Paper Digest to <strong>ada@example.org</strong>?" in body
    assert "Every day at 08:00 (Europe/Paris)" in body
    # Topics by their label: the query in plain words, not its syntax.
    assert "<li>transformer</li>" in body and "title:" not in body
    assert f'<form method="post" action="{path}">' in body
    assert 'name="csrf_token"' in body
    assert web.head(path).status_code == 200
    assert state(settings, sub.id)[0] is SubscriberStatus.PENDING
    assert outbox_messages(settings) == []

    done = web.post(path)
    assert done.status_code == 200
    body = text(done)
    assert "<h1>You're subscribed</h1>" in body
    assert re.search(r"Your first digest arrives \w+day \d+ \w+ at 08:00 \(Europe/Paris\)", body)
    status, confirmed_at, _ = state(settings, sub.id)
    assert status is SubscriberStatus.ACTIVE and confirmed_at is not None
    manage_link = re.search(r'<a class="button" href="(/manage/[^"]+)">', body)
    assert manage_link and web.get(manage_link.group(1)).status_code == 200

    (welcome,) = outbox_messages(settings)
    assert welcome["To"] == ADA
    assert welcome["Subject"] == "You're subscribed to Paper Digest"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.search(r"<(https://[^>]+)>", welcome["List-Unsubscribe"])
    assert unsubscribe is not None
    assert welcome.get_body(("plain",)) is not None

    # A second click: same answer, no second email.
    again = web.post(path)
    assert again.status_code == 200
    assert "already confirmed" in text(again)
    assert web.get(path).status_code == 200
    assert "already confirmed" in text(web.get(path))
    assert len(outbox_messages(settings)) == 1
    assert state(settings, sub.id)[1] == confirmed_at

    # Without the page's CSRF token a POST changes nothing (and says the form expired).
    forged = Visitor(settings).post_bare(path)
    assert forged.status_code == 400 and "This form has expired" in text(forged)

    # The welcome email's one-click link works on this app.
    web.post_bare(path_of(settings, unsubscribe.group(1)), data={"List-Unsubscribe": "One-Click"})
    assert state(settings, sub.id)[0] is SubscriberStatus.UNSUBSCRIBED


def test_confirm_links_expire_after_72_hours(settings: Settings, session: Session) -> None:
    sub = add(session, confirmed=False)
    now = utcnow()
    expired = link(settings, session, sub, "confirm", now=now - timedelta(hours=72, minutes=5))
    fresh = link(settings, session, sub, "confirm", now=now - timedelta(hours=71, minutes=55))
    session.commit()
    web = Visitor(settings)
    for method in (web.get, web.post):
        response = method(expired)
        assert response.status_code == 400
        assert "<h1>This link has expired</h1>" in text(response)
        assert "Confirmation links work for 72 hours" in text(response)
        # What to do about it is on the page: a form that emails a new link.
        assert '<form method="post" action="/link"' in text(response)
        assert 'name="email"' in text(response)
    assert state(settings, sub.id)[0] is SubscriberStatus.PENDING
    assert web.post(fresh).status_code == 200
    assert state(settings, sub.id)[0] is SubscriberStatus.ACTIVE
    # Once confirmed, last month's link says so instead of "expired".
    for method in (web.get, web.post):
        response = method(expired)
        assert response.status_code == 200
        assert "Your subscription is already confirmed" in text(response)


def test_confirm_cannot_bring_back_someone_who_left(settings: Settings, session: Session) -> None:
    sub = add(session, confirmed=False)
    confirm = link(settings, session, sub, "confirm")
    subs.unsubscribe(session, sub)
    session.commit()
    web = Visitor(settings)
    for method in (web.get, web.post):
        response = method(confirm)
        assert response.status_code == 409
        assert "This address has unsubscribed" in text(response)
        assert "<form" not in text(response)
    assert state(settings, sub.id)[0] is SubscriberStatus.UNSUBSCRIBED
    assert outbox_messages(settings) == []


@pytest.mark.integration
def test_welcome_email_through_smtp_and_a_failing_server(
    db_url: str, tmp_path: Path, smtp_server: SmtpSink
) -> None:
    settings = make_settings(db_url, tmp_path, smtp_url=smtp_server.url)
    with db.session_scope(settings) as session:
        ada = subs.add_subscriber(session, ADA, confirmed=False)
        bob = subs.add_subscriber(session, "bob@example.org", confirmed=False)
        ada_link, bob_link = (link(settings, session, s, "confirm") for s in (ada, bob))
    smtp_server.data_replies["bob@example.org"] = "451 4.3.0 try again later"
    web = Visitor(settings)
    assert web.post(ada_link).status_code == 200
    (message,) = smtp_server.to(ADA)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in message.data
    # The mail server refuses Bob's welcome: his confirmation still counts and shows.
    response = web.post(bob_link)
    assert response.status_code == 200
    assert "You're subscribed" in text(response)
    assert state(settings, bob.id)[0] is SubscriberStatus.ACTIVE
    assert smtp_server.to("bob@example.org") == []
    # Bob's welcome stays queued for a retry (``digest run`` or beat sends it later).
    with db.session_scope(settings) as session:
        (row,) = session.scalars(
            select(Notification).where(Notification.subscriber_id == bob.id)
        ).all()
        assert row.kind == "welcome" and row.status is NotificationStatus.RETRY
        assert "451" in (row.outcome or "")


def test_welcome_email_failure_never_fails_the_page(
    settings: Settings, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = add(session, confirmed=False)
    path = link(settings, session, sub, "confirm")
    session.commit()

    def broken(_settings: Settings) -> object:
        raise OSError("mail server unreachable")

    monkeypatch.setattr("digest.pipeline.notify.transport_from_settings", broken)
    response = Visitor(settings).post(path)
    assert response.status_code == 200
    assert "You're subscribed" in text(response)
    assert state(settings, sub.id)[0] is SubscriberStatus.ACTIVE


# --- manage ---------------------------------------------------------------------------


def test_manage_page_lists_the_subscription_and_escapes_labels(
    settings: Settings, session: Session
) -> None:
    sub = add(session, frequency="weekly", weekday="wed", hour=9, timezone="America/New_York")
    subs.add_topic(session, sub, '"diffusion model"', label="<script>alert(1)</script>")
    path = link(settings, session, sub, "manage")
    session.commit()
    web = Visitor(settings)
    before = state(settings, sub.id)
    response = web.get(path)
    assert response.status_code == 200
    page = text(response)
    assert "<dd>ada@example.org</dd>" in page
    assert "Active: you get digests." in page
    assert "Every Wednesday at 09:00 (America/New_York)" in page
    assert 'value="diffusion"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page
    assert "&#34;diffusion model&#34;" in page  # the query, escaped too
    assert state(settings, sub.id) == before
    assert response.headers["Cache-Control"] == "no-store"
    assert_security_headers(response.headers)

    # Its button posts to a working unsubscribe link.
    action = re.search(r'<form method="post" action="(/unsubscribe/[^"]+)">', page)
    assert action is not None
    assert web.post_bare(action.group(1)).status_code == 200
    assert state(settings, sub.id)[0] is SubscriberStatus.UNSUBSCRIBED
    after = text(web.get(path))
    assert "Unsubscribed: you get no digests." in after
    assert "/unsubscribe/" not in after
    assert "Subscribe again" in after


def test_a_database_failure_is_a_503_page(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", tmp_path)
    # Correctly signed (the key is in the settings): the request gets as far as the database.
    token = subs.make_token(
        settings, Subscriber(id=1, token_version=0, link_secret="s"), "unsubscribe"
    )
    confirm = subs.make_token(
        settings, Subscriber(id=1, token_version=0, link_secret="s"), "confirm"
    )
    manage = subs.make_token(settings, Subscriber(id=1, token_version=0, link_secret="s"), "manage")
    web = Visitor(settings)
    for method, path in (
        (web.get, f"/unsubscribe/{token}"),
        (web.post_bare, f"/unsubscribe/{token}"),
        (web.get, f"/confirm/{confirm}"),
        (web.post, f"/confirm/{confirm}"),
        (web.get, f"/manage/{manage}"),
        (web.post, f"/manage/{manage}/topics"),
        (lambda p: web.post(p, SIGNUP), "/subscribe"),
    ):
        response = method(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "120"
        page = text(response)
        assert "Please try again in a few minutes" in page
        assert "Traceback" not in page and "sqlite" not in page.lower()


# --- wording --------------------------------------------------------------------------


def _reader(**kw: object) -> Subscriber:
    values: dict[str, object] = {
        "timezone": "UTC",
        "frequency": Frequency.DAILY,
        "weekday": 0,
        "send_hour": 7,
    }
    values.update(kw)
    return Subscriber(**values)


@pytest.mark.parametrize(
    ("reader", "now", "expected"),
    [
        # Before today's hour: today; after it: tomorrow.
        (_reader(), datetime(2026, 11, 29, 6, 59, tzinfo=UTC), "2026-11-29 07:00+00:00"),
        (_reader(), datetime(2026, 11, 29, 7, 0, tzinfo=UTC), "2026-11-30 07:00+00:00"),
        # Local time, across the spring-forward night in Paris (UTC+1 -> UTC+2).
        (
            _reader(timezone="Europe/Paris", send_hour=8),
            datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
            "2026-03-29 08:00+02:00",
        ),
        # Weekly on Wednesday, asked on Sunday 29 November 2026, and on a Wednesday too late.
        (
            _reader(frequency=Frequency.WEEKLY, weekday=2, timezone="America/New_York"),
            datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
            "2026-12-02 07:00-05:00",
        ),
        (
            _reader(frequency=Frequency.WEEKLY, weekday=2),
            datetime(2026, 12, 2, 8, 0, tzinfo=UTC),
            "2026-12-09 07:00+00:00",
        ),
    ],
)
def test_next_send(reader: Subscriber, now: datetime, expected: str) -> None:
    assert webviews.next_send(reader, now).isoformat(" ", "minutes") == expected


def test_describe_next_and_schedule() -> None:
    reader = _reader(timezone="Europe/Paris", send_hour=8)
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert webviews.describe_next(reader, now) == "Monday 30 November at 08:00 (Europe/Paris)"
    assert webviews.describe_schedule(reader) == "Every day at 08:00 (Europe/Paris)"
    weekly = _reader(frequency=Frequency.WEEKLY, weekday=6, send_hour=18)
    assert webviews.describe_schedule(weekly) == "Every Sunday at 18:00 (UTC)"


# --- for real: gunicorn, Chromium, a mail provider's one-click POST ---------------------


def form_post(url: str, fields: dict[str, str]) -> tuple[int, str]:
    """What a browser does with a page's form on our https site: GET it (cookie, token),
    then POST it with the cookie and a same-origin Referer. gunicorn runs behind a
    TLS-terminating proxy here (DIGEST_TRUSTED_PROXIES=1, X-Forwarded-Proto: https), so
    the session cookie is Secure and comes back by hand, as the browser would send it."""
    host = urllib.parse.urlsplit(url).netloc
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=proxy), timeout=30) as page:
        token = csrf_token(page.read().decode())
        cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    headers = {**proxy, "Cookie": cookie.split(";", 1)[0], "Referer": f"https://{host}/"}
    body = urllib.parse.urlencode({"csrf_token": token, **fields}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as done:
        return done.status, done.read().decode()


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


@pytest.mark.integration
@requires_chromium
def test_gunicorn_confirm_then_one_click_unsubscribe_from_the_email(
    tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "digest.db"
    shutil.copy(sqlite_template, database)
    settings = make_settings(f"sqlite:///{database}", tmp_path)
    with db.session_scope(settings) as session:
        sub = subs.add_subscriber(session, ADA, topics=["diffusion"])
        confirm = subs.confirm_url(settings, sub, session=session)
    env = gunicorn_env(
        tmp_path,
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        base_url=settings.base_url,
        outbox=str(settings.outbox),
        trusted_proxies="1",
    )
    with gunicorn(tmp_path, env) as base:

        def local(url: str) -> str:
            return base + path_of(settings, url)

        # A browser opens the confirmation link: a page with a button, still pending.
        dom = dump_dom(local(confirm), tmp_path)
        assert "<h1>Confirm your subscription</h1>" in dom
        assert '<form method="post"' in dom
        assert state(settings, sub.id)[0] is SubscriberStatus.PENDING
        # The button's POST, with the cookie and CSRF token of the page it is on.
        status, page = form_post(local(confirm), {})
        assert status == 200 and "You're subscribed" in page
        assert state(settings, sub.id)[0] is SubscriberStatus.ACTIVE

        # The welcome email, as a mail provider gets it.
        (welcome,) = outbox_messages(settings)
        assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        found = re.search(r"<(https?://[^>]+)>", welcome["List-Unsubscribe"])
        assert found is not None
        unsubscribe = local(found.group(1))

        # The reader clicks the footer link: Chromium renders the page with its form.
        dom = dump_dom(unsubscribe, tmp_path)
        assert "Unsubscribe <strong>ada@example.org</strong> from Paper Digest?" in dom
        assert f'<form method="post" action="{path_of(settings, found.group(1))}">' in dom
        code, headers, _ = fetch(unsubscribe)
        assert code == 200
        assert_security_headers(headers)
        assert state(settings, sub.id)[0] is SubscriberStatus.ACTIVE  # GETs changed nothing

        # The provider's RFC 8058 POST: no cookies, no CSRF token, no JavaScript.
        status, page = post(unsubscribe, b"List-Unsubscribe=One-Click")
        assert status == 200 and "You are unsubscribed" in page
        assert post(unsubscribe, b"List-Unsubscribe=One-Click")[0] == 200

    assert state(settings, sub.id)[0] is SubscriberStatus.UNSUBSCRIBED
    assert len(outbox_messages(settings)) == 1  # no goodbye email
    access_log = (tmp_path / "gunicorn.log").read_text()
    assert '"GET /static/digest.css HTTP/1.1" 200' in access_log, access_log
    assert access_log.count('"POST /unsubscribe/') == 2
