"""Behind the links of our emails: manage (topics with their 7-day counts, delivery,
pause, subscribe again), per-topic stop, the digest in the browser, the reader's data
and its erasure. Flask's test client on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.factories import T, all_titles, make_papers, make_subscriber, seed_titles
from support.services import wait_until
from support.webkit import SIGNUP, Visitor, links_in, outbox_messages, path_of, text

from digest import pipeline
from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.match.backtest import Backtest
from digest.store import db, suppression
from digest.store.models import Digest, DigestStatus, Subscriber, SubscriberStatus, Topic
from digest.subscriptions import links
from digest.web import counts

ADA = "ada@example.org"


def manage_link(settings: Settings, session: Session, sub: Subscriber, **kw: object) -> str:
    return f"/manage/{subs.make_token(settings, sub, 'manage', session=session, **kw)}"  # type: ignore[arg-type]


def reader(settings: Settings) -> Subscriber:
    with db.session_scope(settings) as session:
        row = session.scalars(select(Subscriber)).one()
        row.topics  # noqa: B018 - loaded before the session closes
        session.expunge_all()
        return row


@pytest.fixture
def ada(settings: Settings, session: Session) -> tuple[Subscriber, str]:
    make_papers(session, all_titles(), utcnow() - timedelta(hours=5))
    sub = subs.add_subscriber(session, ADA, confirmed=True, topics=["language model", "reasoning"])
    path = manage_link(settings, session, sub)
    session.commit()
    return sub, path


def week_indexed(settings: Settings) -> None:
    """Wait for the counts' index: a loaded machine may take longer than a page waits."""
    wait_until(lambda: counts.WEEK.get(settings, wait=1) is not None, 120, "the week's index")


def counts_in(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"Would have matched <strong>(\d+)</strong>", page)]


# --- topics ---------------------------------------------------------------------------------


def test_each_topic_shows_what_it_would_have_matched_in_seven_days(
    settings: Settings, session: Session, ada: tuple[Subscriber, str]
) -> None:
    _, path = ada
    week_indexed(settings)
    page = text(Visitor(settings).get(path))
    expected = [Backtest(session, 7).count(q) for q in ("language model", "reasoning")]
    assert counts_in(page) == expected and all(expected)


def test_a_big_week_is_counted_in_the_background_not_in_the_request(
    settings: Settings, ada: tuple[Subscriber, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = ada
    release = threading.Event()
    real = counts.Backtest.count

    def slow(self: Backtest, query: object) -> int:
        release.wait(30)  # a week of many thousand papers takes this long to index
        return real(self, query)  # type: ignore[arg-type]

    monkeypatch.setattr(counts.Backtest, "count", slow)
    monkeypatch.setattr(counts, "WAIT", 0.2)
    web = Visitor(settings)
    first = text(web.get(path))
    # The page answered while the index was still being built (it waits on `release`).
    assert counts.WEEK.get(settings, wait=0) is None
    assert "Counting the last 7 days' papers" in first and counts_in(first) == []
    release.set()
    wait_until(lambda: counts.WEEK.get(settings, wait=0) is not None, 30, "the index")
    monkeypatch.setattr(counts.Backtest, "count", real)
    assert len(counts_in(text(web.get(path)))) == 2


def test_add_edit_and_remove_topics_in_one_form(
    settings: Settings, ada: tuple[Subscriber, str]
) -> None:
    sub, path = ada
    ids = [t.id for t in sub.topics]
    web = Visitor(settings)
    response = web.post(
        f"{path}/topics",
        {
            f"query-{ids[0]}": "language model -survey",
            f"label-{ids[0]}": "LLMs",
            f"query-{ids[1]}": "reasoning",
            f"label-{ids[1]}": "",
            f"remove-{ids[1]}": "1",
            "query-new": "agent",
            "label-new": "Agents",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/manage/")
    assert response.headers["Location"].endswith("?saved=topics")
    stored = reader(settings)
    assert [(t.query, t.label) for t in stored.topics] == [
        ("language model -survey", "LLMs"),
        ("agent", "Agents"),
    ]
    week_indexed(settings)
    page = text(web.get(response.headers["Location"]))
    assert "Your topics are saved." in page
    assert len(counts_in(page)) == 2


def test_bad_topics_are_shown_in_place_and_nothing_is_saved(
    settings: Settings, ada: tuple[Subscriber, str]
) -> None:
    sub, path = ada
    ids = [t.id for t in sub.topics]
    response = Visitor(settings).post(
        f"{path}/topics",
        {
            f"query-{ids[0]}": '"unclosed',
            f"label-{ids[0]}": "Mine",
            f"query-{ids[1]}": "reasoning",
            f"label-{ids[1]}": "x" * 300,
            "query-new": "Reasoning",  # the same topic twice
            "label-new": "",
        },
    )
    page = text(response)
    assert response.status_code == 400
    assert "Nothing was saved" in page
    first = re.search(rf'id="query-{ids[0]}-error">(.*?)</div>', page, re.S)
    assert first and "Unclosed quote at column 1." in first.group(1)
    assert f'id="label-{ids[1]}-error"' in page and "300 characters long" in page
    assert 'id="query-new-error">You already have this topic.' in page
    assert 'value="&#34;unclosed"' in page and 'value="Mine"' in page  # typed, kept
    assert f'aria-describedby="query-{ids[0]}-error"' in page
    assert [t.query for t in reader(settings).topics] == ["language model", "reasoning"]


def test_delivery_settings_are_checked_field_by_field(
    settings: Settings, ada: tuple[Subscriber, str]
) -> None:
    _, path = ada
    web = Visitor(settings)
    bad = {
        "frequency": "weekly",
        "weekday": "wed",
        "hour": "25",
        "timezone": "Nowhere/City",
        "max_papers": "0",
    }
    page = text(web.post(f"{path}/settings", bad))
    for field in ("hour", "timezone", "max_papers"):
        assert f'id="{field}-error"' in page, field
    assert 'value="Nowhere/City" selected' in page
    assert reader(settings).send_hour == 7
    good = {**bad, "hour": "18", "timezone": "europe/paris", "max_papers": "5"}
    assert web.post(f"{path}/settings", good).status_code == 303
    stored = reader(settings)
    assert (stored.frequency.value, stored.weekday, stored.send_hour, stored.timezone) == (
        "weekly",
        2,
        18,
        "Europe/Paris",
    )
    assert stored.max_papers == 5


def test_pause_resume_and_subscribe_again(settings: Settings, ada: tuple[Subscriber, str]) -> None:
    sub, path = ada
    web = Visitor(settings)
    paused = web.post(f"{path}/pause")
    assert paused.status_code == 303 and reader(settings).status is SubscriberStatus.PAUSED
    assert "Paused: no digests" in text(web.get(paused.headers["Location"]))
    assert web.post(f"{path}/resume").status_code == 303
    assert reader(settings).status is SubscriberStatus.ACTIVE
    # Unsubscribe, then come back from the manage page: a confirmation first.
    with db.session_scope(settings) as session:
        subs.unsubscribe(session, session.get(Subscriber, sub.id))  # type: ignore[arg-type]
    back = web.post(f"{path}/resubscribe")
    assert back.status_code == 303
    assert reader(settings).status is SubscriberStatus.PENDING
    assert "we sent you a confirmation email" in text(web.get(back.headers["Location"]))
    (confirm,) = outbox_messages(settings)
    (link,) = links_in(confirm, "confirm")
    assert web.post(path_of(settings, link)).status_code == 200
    assert reader(settings).status is SubscriberStatus.ACTIVE
    # The old manage link was retired when subscribing again.
    assert web.get(path).status_code == 400


def test_manage_links_work_for_sixty_days_and_expire_at_ninety(
    settings: Settings, session: Session, ada: tuple[Subscriber, str]
) -> None:
    sub, _ = ada
    now = utcnow()
    two_months = manage_link(settings, session, sub, now=now - timedelta(days=61))
    old = manage_link(settings, session, sub, now=now - timedelta(days=91))
    web = Visitor(settings)
    assert web.get(two_months).status_code == 200
    expired = web.get(old)
    assert expired.status_code == 400
    assert "This link has expired" in text(expired)
    assert '<form method="post" action="/link"' in text(expired)


# --- stop one topic -------------------------------------------------------------------------


def test_a_stop_link_removes_just_that_topic(
    settings: Settings, session: Session, ada: tuple[Subscriber, str]
) -> None:
    sub, _ = ada
    topic = sub.topics[1]
    url = links.topic_stop_url(settings, sub, topic.id, session=session)
    session.commit()
    web = Visitor(settings)
    page = web.get(path_of(settings, url))
    assert page.status_code == 200
    assert "Remove <strong>“reasoning”</strong>" in text(page)
    assert len(reader(settings).topics) == 2  # the GET changed nothing
    done = web.post(path_of(settings, url))
    assert done.status_code == 200 and "Topic stopped" in text(done)
    assert [t.query for t in reader(settings).topics] == ["language model"]
    again = web.post(path_of(settings, url))
    assert "already gone" in text(again)
    # Someone else's topic id on this reader's stop link is just "gone".
    with db.session_scope(settings) as s:
        other = subs.add_subscriber(s, "bob@example.org", confirmed=True, topics=["robots"])
        other_topic = other.topics[0].id
    assert "already gone" in text(
        web.post(path_of(settings, url).rsplit("/", 1)[0] + f"/{other_topic}")
    )
    with db.session_scope(settings) as s:
        assert s.get(Topic, other_topic) is not None


# --- the digest in the browser --------------------------------------------------------------


def _send_digest(settings: Settings, session: Session, max_papers: int, at: object = None) -> None:
    now = at or T
    make_papers(session, all_titles(), T - timedelta(hours=3))
    make_subscriber(
        session, ADA, "language model", "reasoning", "agent", "safety", max_papers=max_papers
    )
    session.commit()
    summary = pipeline.run_once(settings, now, fetch=False)  # type: ignore[arg-type]
    assert summary.by_status == {"sent": 1}, summary


def test_the_browser_view_has_every_matched_paper_and_is_linked_from_the_email(
    settings: Settings, session: Session
) -> None:
    _send_digest(settings, session, max_papers=5)
    (message,) = outbox_messages(settings)
    body = re.sub(r"\s+", " ", text_of(message))
    view = re.search(r"View in a browser: (\S+)", body)
    assert view and "See them all:" in body
    web = Visitor(settings)
    page = web.get(path_of(settings, view.group(1)))
    assert page.status_code == 200
    assert "the email carried 5 papers" in text(page)
    frame = re.search(r'<iframe class="email-frame full" src="([^"]+)"', text(page))
    assert frame
    email_page = web.get(frame.group(1))
    assert email_page.status_code == 200
    assert email_page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    cards = text(email_page).count('class="t"')
    with db.session_scope(settings) as s:
        row = s.scalars(select(Digest)).one()
        assert len(row.paper_ids) == 5
    assert cards > 5, cards  # the papers beyond the reader's maximum are laid out too
    # The reader's latest digest without a date in the link; a made-up date is no digest.
    token = view.group(1).split("/d/", 1)[1].split("/")[0]
    assert web.get(f"/d/{token}").status_code == 200
    assert web.get(f"/d/{token}/20200101T0700Z").status_code == 404
    assert web.get(f"/d/{token}/not-a-date").status_code == 404


def test_the_view_lays_out_papers_cut_for_size(settings: Settings, session: Session) -> None:
    """A huge day: the email has room for only some as cards (the rest become lines, or
    are left out); the page lays every one out as a card."""
    long_abstract = "A careful study of language model reasoning. " * 60
    titles = [f"Language model study {n}" for n in range(100)]
    make_papers(session, titles, T - timedelta(hours=3), abstract=long_abstract)
    make_subscriber(session, ADA, "language model", max_papers=100)
    session.commit()
    assert pipeline.run_once(settings, T, fetch=False).by_status == {"sent": 1}
    with db.session_scope(settings) as s:
        row = s.scalars(select(Digest)).one()
        sub = row.subscriber
        url = links.view_url(settings, sub, row.due_at, session=s)
    (message,) = outbox_messages(settings)
    html_part = message.get_body(("html",))
    assert html_part is not None
    cards_in_email = html_part.get_content().count('class="t"')
    web = Visitor(settings)
    page = text(web.get(path_of(settings, url)))
    frame = re.search(r'<iframe class="email-frame full" src="([^"]+)"', page)
    assert frame
    html = text(web.get(frame.group(1)))
    assert html.count('class="t"') == 100
    assert cards_in_email < 100, cards_in_email  # Gmail's size budget cut the email


def test_earlier_digests_are_listed_for_sixty_days(settings: Settings, session: Session) -> None:
    make_papers(session, seed_titles("language model"), T - timedelta(days=80))
    sub = make_subscriber(session, ADA, "language model", now=T - timedelta(days=90))
    for days in (70, 50, 30, 1):
        session.add(
            Digest(
                subscriber_id=sub.id,
                period=f"p{days}",
                status=DigestStatus.SENT,
                due_at=utcnow() - timedelta(days=days),
                window_start=T - timedelta(days=90),
                window_end=T - timedelta(days=days),
                paper_ids=[],
                message_id=f"<{days}@x>",
            )
        )
    url = links.view_url(settings, sub, session=session)
    session.commit()
    page = text(Visitor(settings).get(path_of(settings, url)))
    assert "Your digests of the last 60 days (3)" in page
    assert page.count("<li>") >= 3


def text_of(message: object) -> str:
    part = message.get_body(("plain",))  # type: ignore[attr-defined]
    return part.get_content()  # type: ignore[no-any-return]


# --- the reader's data ----------------------------------------------------------------------


def test_download_my_data(settings: Settings, session: Session) -> None:
    _send_digest(settings, session, max_papers=3)
    with db.session_scope(settings) as s:
        sub = s.scalars(select(Subscriber)).one()
        path = manage_link(settings, s, sub)
    response = Visitor(settings).get(f"{path}/data.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data(as_text=True))
    assert data["subscriber"]["email"] == ADA
    assert [t["query"] for t in data["subscriber"]["topics"]][:2] == ["language model", "reasoning"]
    assert data["subscriber"]["consent"]["source"] == "cli"
    (digest,) = data["digests"]
    assert digest["status"] == "sent" and len(digest["papers"]) == 3
    assert all(p["title"] and p["url"].startswith("https://") for p in digest["papers"])


def test_delete_everything_keeps_only_a_fingerprint(settings: Settings, session: Session) -> None:
    _send_digest(settings, session, max_papers=3)
    with db.session_scope(settings) as s:
        sub = s.scalars(select(Subscriber)).one()
        path = manage_link(settings, s, sub)
    web = Visitor(settings)
    ask = text(web.get(f"{path}/delete"))
    assert "one-way fingerprint (SHA‑256)" in ask
    refused = web.post(f"{path}/delete", {})
    assert refused.status_code == 400 and 'id="understood-error"' in text(refused)
    done = web.post(f"{path}/delete", {"understood": "yes"})
    assert done.status_code == 200 and "Everything is deleted" in text(done)
    with db.session_scope(settings) as s:
        assert s.scalars(select(Subscriber)).all() == []
        assert s.scalars(select(Digest)).all() == []
        keys = [row.email_key for row in s.scalars(select(suppression.Suppression))]  # type: ignore[attr-defined]
    assert keys == [suppression.erased_key(ADA)] and ADA not in str(keys)
    with db.session_scope(settings) as s:
        # Suppressed for every path that sends: digests, imports, the CLI.
        assert suppression.is_suppressed(s, ADA)
        assert suppression.suppressed_keys(s, [ADA, "bob@example.org"]) == {ADA}
        with pytest.raises(subs.SubscriptionError, match="erased at the reader's request"):
            subs.add_subscriber(s, ADA, confirmed=True)
    # The old link is gone with the data.
    assert web.get(path).status_code == 400
    # The reader may come back themselves: the double opt-in reaches them and lifts it.
    assert web.post("/subscribe", {**SIGNUP, "email": ADA}).status_code == 200
    confirm = outbox_messages(settings)[-1]
    assert "Confirm your subscription" in confirm["Subject"]
    (link,) = links_in(confirm, "confirm")
    assert web.post(path_of(settings, link)).status_code == 200
    with db.session_scope(settings) as s:
        assert not suppression.is_suppressed(s, ADA)
        assert s.scalars(select(Subscriber)).one().status is SubscriberStatus.ACTIVE
