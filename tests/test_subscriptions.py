"""Subscribers: validation, storage on both databases, status transitions, signed links."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.config import Settings
from digest.store import db
from digest.store.models import (
    AppMeta,
    Digest,
    Frequency,
    Subscriber,
    SubscriberStatus,
    Topic,
    utcnow,
)

# A query with an unclosed quote: invalid in the topic language whatever else it grows.
BAD_QUERY = '"machine unlearning'

# --- validation (no database) ---------------------------------------------------------


def test_normalise_email_keeps_the_address_and_lowercases_the_key() -> None:
    assert subs.normalise_email("  Ada.Lovelace@Example.ORG ") == (
        "Ada.Lovelace@example.org",
        "ada.lovelace@example.org",
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("x@", "something after the @-sign"),
        ("ada lovelace@example.org", "invalid characters"),
        ("ada@localhost", "should have a period"),
        ("Ada <ada@example.org>", "display name"),
        ("", "empty"),
        # We could never deliver to it: relays refuse non-ASCII mailbox names.
        ("jürgen@example.org", "Internationalized characters before the @-sign"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, detail: str) -> None:
    with pytest.raises(subs.InvalidEmail) as caught:
        subs.normalise_email(text)
    message = str(caught.value)
    assert message.startswith(f'"{text}": the email address is not valid: ')
    assert detail in message
    assert isinstance(caught.value, ValueError)


def test_time_zones_are_iana_names_with_forgiving_case() -> None:
    assert subs.validate_timezone("Europe/Paris") == "Europe/Paris"
    assert subs.validate_timezone("europe/paris") == "Europe/Paris"
    assert subs.validate_timezone("America/New York") == "America/New_York"
    assert subs.validate_timezone("UTC") == "UTC"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Europe/Pari", 'did you mean "Europe/Paris"'),
        ("Paris", 'did you mean "Europe/Paris"'),
        ("Amerca/Chicago", 'did you mean "America/Chicago"'),
        ("+02:00", "offsets do not follow daylight saving"),
        ("UTC+5:30", "offsets do not follow daylight saving"),
        ("Mars/Olympus_Mons", "use an IANA time zone name"),
        ("", "the time zone is empty"),
    ],
)
def test_unknown_time_zones_get_a_suggestion(text: str, expected: str) -> None:
    with pytest.raises(subs.SubscriptionError, match="time zone") as caught:
        subs.validate_timezone(text)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "text", ["Etc/GMT+5", "etc/gmt-2", "EST", "MST", "HST", "EST5EDT", "GMT", "Zulu", "Japan"]
)
def test_fixed_offsets_and_abbreviations_are_refused_for_a_city(text: str) -> None:
    """Etc/GMT+5 is UTC−5 and EST never has summer time: a reader's clock follows a place."""
    with pytest.raises(subs.SubscriptionError) as caught:
        subs.validate_timezone(text)
    message = str(caught.value)
    assert f'"{text}" is a fixed offset or an abbreviation, not a place' in message
    assert "use a city zone such as America/New_York" in message


def test_utc_and_places_stay_allowed_and_suggestions_are_places() -> None:
    for name in ("UTC", "Etc/UTC", "etc/utc", "America/New_York", "US/Eastern"):
        assert subs.validate_timezone(name) == name.replace("etc/utc", "Etc/UTC")
    with pytest.raises(subs.SubscriptionError) as caught:
        subs.validate_timezone("Etc/GMT+55")
    assert "Etc/GMT" not in str(caught.value).split(":", 1)[1]


def test_weekday_hour_max_and_frequency_are_checked() -> None:
    assert subs.parse_weekday("Fri") == 4
    assert subs.parse_weekday("sunday") == 6
    assert subs.parse_weekday(2) == 2
    assert subs.validate_hour("0") == 0 and subs.validate_hour(23) == 23
    assert subs.validate_max_papers("100") == 100
    assert subs.validate_frequency("Weekly") is Frequency.WEEKLY
    for call, arg, text in [
        (subs.parse_weekday, "fr", "weekday"),
        (subs.parse_weekday, 7, "weekday"),
        (subs.validate_hour, 24, "0 to 23"),
        (subs.validate_hour, "7am", "0 to 23"),
        (subs.validate_max_papers, 0, "1 to 100"),
        (subs.validate_max_papers, 101, "1 to 100"),
        (subs.validate_frequency, "monthly", "daily, weekly"),
    ]:
        with pytest.raises(subs.SubscriptionError, match=text):
            call(arg)


def test_bad_topic_query_names_the_query() -> None:
    with pytest.raises(subs.SubscriptionError, match="bad topic query") as caught:
        subs.validate_query(BAD_QUERY)
    assert BAD_QUERY in str(caught.value)
    assert subs.validate_query("  author:bengio  ") == "author:bengio"


def test_default_label_is_the_query_in_plain_words_shortened_at_a_word() -> None:
    assert subs.default_label('"machine unlearning"') == "machine unlearning"
    # Never raw syntax: no field names, quotes or upper-case operators.
    assert subs.default_label("cat:cs.CR AND jailbreak") == "cs.CR jailbreak"
    assert subs.default_label('"unlearning" OR title:forgetting') == "unlearning or forgetting"
    assert subs.default_label('author:"yoshua bengio" -survey') == "by yoshua bengio, not survey"
    assert subs.default_label("upvotes:>=10 source:hf") == "10+ upvotes from Hugging Face"
    assert subs.default_label("trending") == "Trending"
    # A label saved before labels were readable (the query itself) is shown readable.
    assert subs.shown_label("cat:cs.CR AND jailbreak", "cat:cs.CR AND jailbreak") == (
        "cs.CR jailbreak"
    )
    assert subs.shown_label("Security", "cat:cs.CR AND jailbreak") == "Security"
    long = "diffusion models for protein structure prediction OR folding OR molecular dynamics"
    label = subs.default_label(long)
    assert label.endswith("…") and len(label) <= subs.DEFAULT_LABEL_LENGTH
    assert label == "diffusion models for protein structure prediction…"
    assert not label[:-1].endswith(" ")


def test_topics_are_normalised_and_compared_without_case() -> None:
    assert subs.validate_query("llm\r\n  agents\t") == "llm agents"
    assert subs.topic_key('"Machine   Unlearning"') == subs.topic_key('"machine unlearning"')
    assert subs.dedupe_topics(["trending", "TRENDING", "x", "X ", "y"]) == ["trending", "x", "y"]


# --- subscribers on SQLite and PostgreSQL -----------------------------------------------


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_add_pending_subscriber_with_topics(session: Session) -> None:
    sub = subs.add_subscriber(
        session,
        "Ada@Example.org",
        topics=['"machine unlearning"', "author:bengio", "author:bengio"],
        timezone="europe/london",
        frequency="weekly",
        weekday="fri",
        hour=8,
        max_papers=10,
        consent_source="web",
        consent_ip="203.0.113.9",
        consent_detail="form on /subscribe",
    )
    session.commit()
    session.expire_all()
    stored = subs.get_subscriber(session, "ADA@example.ORG")
    assert stored is not None and stored.id == sub.id
    assert stored.email == "Ada@example.org" and stored.email_key == "ada@example.org"
    assert stored.status is SubscriberStatus.PENDING and stored.confirmed_at is None
    assert (stored.timezone, stored.frequency, stored.weekday) == ("Europe/London", "weekly", 4)
    assert (stored.send_hour, stored.max_papers) == (8, 10)
    assert [(t.label, t.query) for t in stored.topics] == [
        ("machine unlearning", '"machine unlearning"'),
        ("by bengio", "author:bengio"),
    ]
    assert (stored.consent_source, stored.consent_ip) == ("web", "203.0.113.9")
    assert stored.consent_at is not None and stored.consent_at.tzinfo is not None


def test_confirmed_subscriber_is_active_at_once(session: Session) -> None:
    sub = subs.add_subscriber(session, "bob@example.org", confirmed=True)
    assert sub.status is SubscriberStatus.ACTIVE and sub.confirmed_at is not None
    assert (sub.timezone, sub.frequency, sub.send_hour, sub.max_papers) == ("UTC", "daily", 7, 20)


def test_duplicate_address_is_refused_case_insensitively(session: Session) -> None:
    subs.add_subscriber(session, "ada@example.org", confirmed=True)
    session.commit()
    with pytest.raises(subs.SubscriptionError) as caught:
        subs.add_subscriber(session, "  ADA@EXAMPLE.org")
    assert str(caught.value) == "ada@example.org is already subscribed (status: active)"
    session.rollback()
    assert _count(session, Subscriber) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topics": ["llm", BAD_QUERY]}, "bad topic query"),
        ({"timezone": "Europe/Pari"}, "unknown time zone"),
        ({"hour": 24}, "send hour"),
        ({"max_papers": 500}, "maximum papers"),
        ({"frequency": "hourly"}, "frequency"),
        ({"consent_source": "scraped"}, "consent source"),
    ],
)
def test_invalid_settings_store_nothing(session: Session, kwargs: dict, message: str) -> None:
    with pytest.raises(subs.SubscriptionError, match=message):
        subs.add_subscriber(session, "ada@example.org", **kwargs)
    session.commit()
    assert _count(session, Subscriber) == 0
    assert _count(session, Topic) == 0


def test_status_transitions(session: Session, settings: Settings) -> None:
    sub = subs.add_subscriber(session, "ada@example.org")
    with pytest.raises(subs.SubscriptionError, match="has not confirmed"):
        subs.pause(session, sub)
    with pytest.raises(subs.SubscriptionError, match="has not confirmed"):
        subs.resume(session, sub)
    token = subs.make_token(settings, sub, "confirm")
    assert subs.confirm(session, token, settings=settings) is sub
    assert sub.status is SubscriberStatus.ACTIVE and sub.confirmed_at is not None
    first_confirmed = sub.confirmed_at
    subs.confirm(session, token, settings=settings)  # a second click changes nothing
    assert sub.confirmed_at == first_confirmed
    assert subs.resume(session, sub) is False
    assert subs.pause(session, sub) is True and sub.status is SubscriberStatus.PAUSED
    assert subs.pause(session, sub) is False
    subs.confirm(session, token, settings=settings)  # confirming does not un-pause
    assert sub.status is SubscriberStatus.PAUSED
    assert subs.resume(session, sub) is True and sub.status is SubscriberStatus.ACTIVE
    assert subs.unsubscribe(session, sub) is True
    assert sub.status is SubscriberStatus.UNSUBSCRIBED and sub.unsubscribed_at is not None
    with pytest.raises(subs.SubscriptionError, match="has unsubscribed"):
        subs.resume(session, sub)
    with pytest.raises(subs.SubscriptionError, match="subscribe again"):
        subs.confirm(session, token, settings=settings)


def test_unsubscribing_keeps_the_record_and_consent(session: Session) -> None:
    sub = subs.add_subscriber(
        session,
        "ada@example.org",
        topics=["diffusion"],
        confirmed=True,
        consent_source="web",
        consent_ip="198.51.100.7",
        consent_detail="double opt-in",
    )
    session.commit()
    consent_at = sub.consent_at
    assert subs.unsubscribe(session, sub) is True
    session.commit()
    first = sub.unsubscribed_at
    assert subs.unsubscribe(session, sub) is False  # second click: first time kept
    session.commit()
    session.expire_all()
    stored = subs.get_subscriber(session, "ada@example.org")
    assert stored is not None
    assert stored.status is SubscriberStatus.UNSUBSCRIBED and stored.unsubscribed_at == first
    assert (stored.consent_source, stored.consent_ip, stored.consent_detail) == (
        "web",
        "198.51.100.7",
        "double opt-in",
    )
    assert stored.consent_at == consent_at
    assert [t.query for t in stored.topics] == ["diffusion"]


def test_resubscribe_needs_a_new_confirmation(session: Session, settings: Settings) -> None:
    sub = subs.add_subscriber(session, "ada@example.org", confirmed=True, consent_source="cli")
    old_link = subs.make_token(settings, sub, "unsubscribe")
    old_manage = subs.make_token(settings, sub, "manage")
    with pytest.raises(subs.SubscriptionError, match=r"already subscribed \(status: active\)"):
        subs.resubscribe(session, sub, consent_source="web")
    subs.unsubscribe(session, sub)
    subs.resubscribe(
        session, sub, consent_source="web", consent_ip="192.0.2.4", consent_detail="form"
    )
    session.commit()
    assert sub.status is SubscriberStatus.PENDING
    assert sub.confirmed_at is None and sub.unsubscribed_at is None
    assert (sub.consent_source, sub.consent_ip) == ("web", "192.0.2.4")
    assert sub.consent_detail.startswith("form; previously cli consent at ")
    # Links from before are retired, except the way out.
    with pytest.raises(subs.TokenError, match="no longer valid"):
        subs.read_token(settings, old_manage, "manage")
    assert subs.read_token(settings, old_link, "unsubscribe") == sub.id
    subs.confirm(session, subs.make_token(settings, sub, "confirm"), settings=settings)
    assert sub.status is SubscriberStatus.ACTIVE


def test_adding_an_unsubscribed_address_says_when_they_left(session: Session) -> None:
    sub = subs.add_subscriber(session, "Ann@example.org", confirmed=True)
    subs.unsubscribe(session, sub)
    session.commit()
    with pytest.raises(subs.SubscriptionError) as caught:
        subs.add_subscriber(session, "ann@example.org", confirmed=True)
    assert str(caught.value) == (
        f"Ann@example.org unsubscribed on {sub.unsubscribed_at:%Y-%m-%d}: "
        "subscribing them again needs their fresh consent"
    )


def test_admin_resubscribes_with_fresh_consent_keeping_the_history(session: Session) -> None:
    sub = subs.add_subscriber(
        session,
        "ann@example.org",
        topics=["llm"],
        confirmed=True,
        timezone="Europe/Paris",
        hour=9,
        consent_source="web",
        consent_ip="192.0.2.4",
        consent_detail="signup form",
    )
    subs.unsubscribe(session, sub)
    session.commit()
    left, version = sub.unsubscribed_at, sub.token_version
    assert left is not None
    subs.resubscribe(
        session,
        sub,
        consent_source="cli",
        confirmed=True,
        consent_detail="by phone",
        topics=["LLM", "agents"],
        max_papers=5,
    )
    session.commit()
    session.expire_all()
    assert sub.status is SubscriberStatus.ACTIVE and sub.confirmed_at is not None
    assert (sub.consent_source, sub.consent_ip) == ("cli", None)
    assert sub.consent_detail == (
        f"by phone; previously web consent at {sub.created_at:%Y-%m-%d %H:%M} UTC from "
        f"192.0.2.4 (signup form), unsubscribed at {left:%Y-%m-%d %H:%M} UTC"
    )
    assert sub.unsubscribed_at is None and sub.token_version == version + 1
    # Their settings are kept unless given; topics are added, without repeats.
    assert (sub.timezone, sub.send_hour, sub.max_papers) == ("Europe/Paris", 9, 5)
    assert [t.query for t in sub.topics] == ["llm", "agents"]


def test_resubscribing_validates_before_changing_anything(session: Session) -> None:
    sub = subs.add_subscriber(session, "ann@example.org", confirmed=True)
    subs.unsubscribe(session, sub)
    session.commit()
    with pytest.raises(subs.SubscriptionError, match="unknown time zone"):
        subs.resubscribe(session, sub, consent_source="cli", topics=["x"], timezone="Nowhere")
    assert sub.status is SubscriberStatus.UNSUBSCRIBED and sub.topics == []


def test_bounced_and_suppressed_addresses_point_at_unsuppress(session: Session) -> None:
    from digest.store import suppression

    bounced = subs.add_subscriber(session, "bob@example.org", confirmed=True)
    bounced.status = SubscriberStatus.BOUNCED
    suppression.suppress(session, "bob@example.org", "550 no such user", 550)
    gone = subs.add_subscriber(session, "carol@example.org", confirmed=True)
    subs.unsubscribe(session, gone)
    suppression.suppress(session, "carol@example.org", "550 no such user", 550)
    suppression.suppress(session, "dan@example.org", "550 no such user", 550)
    session.commit()
    hint = "lift that with `digest subscribers unsuppress {}`"
    with pytest.raises(subs.SubscriptionError, match="is bounced: mail to it failed") as caught:
        subs.add_subscriber(session, "bob@example.org", confirmed=True)
    assert str(caught.value).endswith(hint.format("bob@example.org"))
    with pytest.raises(subs.SubscriptionError, match="is on the suppression list") as caught:
        subs.resubscribe(session, gone, consent_source="cli", confirmed=True)
    assert str(caught.value).endswith(hint.format("carol@example.org"))
    with pytest.raises(subs.SubscriptionError, match="is on the suppression list"):
        subs.add_subscriber(session, "Dan@example.org", confirmed=True)
    session.rollback()
    assert gone.status is SubscriberStatus.UNSUBSCRIBED
    assert subs.get_subscriber(session, "dan@example.org") is None


def test_bounced_subscriber_cannot_be_paused_or_resumed(session: Session) -> None:
    sub = subs.add_subscriber(session, "ada@example.org", confirmed=True)
    sub.status = SubscriberStatus.BOUNCED  # what delivery does on a permanent failure
    for action in (subs.pause, subs.resume):
        with pytest.raises(subs.SubscriptionError, match="bounced"):
            action(session, sub)
    assert subs.unsubscribe(session, sub) is True


def test_remove_deletes_topics_and_digests(session: Session) -> None:
    sub = subs.add_subscriber(session, "ada@example.org", topics=["llm"], confirmed=True)
    keep = subs.add_subscriber(session, "bob@example.org", topics=["rl"], confirmed=True)
    session.add(Digest(subscriber_id=sub.id, period="2026-11-29"))
    session.commit()
    subs.remove(session, sub)
    session.commit()
    assert subs.get_subscriber(session, "ada@example.org") is None
    assert session.scalars(select(Topic.subscriber_id)).all() == [keep.id]
    assert _count(session, Digest) == 0


def test_duplicate_topics_are_one_whatever_the_case_or_spacing(session: Session) -> None:
    sub = subs.add_subscriber(
        session, "h9@example.org", topics=["trending", "TRENDING", "x"], confirmed=True
    )
    assert [t.query for t in sub.topics] == ["trending", "x"]
    for again in ("X", " x ", "Trending"):
        with pytest.raises(subs.SubscriptionError, match="already has the topic") as caught:
            subs.add_topic(session, sub, again)
        assert str(caught.value).endswith(f'"{again.strip().lower()}"')  # the stored one
    spaced = subs.add_topic(session, sub, "llm\r\nagents", label="  LLM\n agents ")
    assert (spaced.query, spaced.label) == ("llm agents", "LLM agents")
    with pytest.raises(subs.SubscriptionError, match="already has the topic"):
        subs.add_topic(session, sub, "LLM   Agents")


def test_add_update_and_remove_topics(session: Session) -> None:
    sub = subs.add_subscriber(session, "ada@example.org", confirmed=True)
    topic = subs.add_topic(session, sub, '  "reasoning models"  ', label="  Reasoning   ")
    assert (topic.label, topic.query) == ("Reasoning", '"reasoning models"')
    auto = subs.add_topic(session, sub, "cat:cs.LG")
    assert auto.label == "cs.LG"
    with pytest.raises(subs.SubscriptionError, match="already has the topic"):
        subs.add_topic(session, sub, "cat:cs.LG")
    with pytest.raises(subs.SubscriptionError, match="bad topic query"):
        subs.add_topic(session, sub, BAD_QUERY)
    session.commit()
    other = subs.add_subscriber(session, "bob@example.org", topics=["rl"])
    with pytest.raises(subs.SubscriptionError, match="no topic with id"):
        subs.remove_topic(session, sub, other.topics[0].id)
    assert subs.remove_topic(session, sub, topic.id) is topic
    session.commit()
    session.expire_all()
    assert [t.query for t in sub.topics] == ["cat:cs.LG"]
    subs.update_subscriber(session, sub, timezone="asia/tokyo", hour=21, frequency="weekly")
    assert (sub.timezone, sub.send_hour, sub.frequency, sub.max_papers) == (
        "Asia/Tokyo",
        21,
        Frequency.WEEKLY,
        20,
    )
    with pytest.raises(subs.SubscriptionError, match="unknown time zone"):
        subs.update_subscriber(session, sub, timezone="Tokio")
    assert sub.timezone == "Asia/Tokyo"


# --- signed links -----------------------------------------------------------------------


def _subscriber(session: Session) -> Subscriber:
    sub = subs.add_subscriber(session, "ada@example.org", confirmed=True)
    session.commit()
    return sub


def test_tokens_round_trip_for_each_purpose(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    for purpose in subs.PURPOSES:
        token = subs.make_token(settings, sub, purpose)
        assert subs.read_token(settings, token, purpose) == sub.id
        # A session of our own when the caller has none.
        assert subs.read_token(settings, token, purpose, session=session) == sub.id
        assert all(c.isalnum() or c in "._-" for c in token)


def test_token_for_one_purpose_fails_for_another(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    token = subs.make_token(settings, sub, "confirm")
    with pytest.raises(subs.TokenError, match="not valid") as caught:
        subs.read_token(settings, token, "unsubscribe")
    assert caught.value.kind == "invalid"


def test_tampered_tokens_are_refused(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    other = subs.add_subscriber(session, "bob@example.org", confirmed=True)
    session.commit()
    token = subs.make_token(settings, sub, "manage")
    sub_id, version, issued, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in [
        f"{other.id}.{version}.{issued}.{mac}",  # someone else's id, our signature
        f"{sub_id}.{version}.{int(issued) + 86400}.{mac}",  # stretched issue time
        f"{sub_id}.{version}.{issued}.{flipped}",
        token[:-3],
        "",
        "../../etc/passwd",
        token + "x",
    ]:
        with pytest.raises(subs.TokenError, match="not valid"):
            subs.read_token(settings, forged, "manage")
    other_key = Settings(database_url=settings.database_url, secret_key="another-key-0123456789")
    with pytest.raises(subs.TokenError, match="not valid"):
        subs.read_token(other_key, token, "manage")


def test_tokens_expire_only_when_asked(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    issued = utcnow() - timedelta(days=8)
    token = subs.make_token(settings, sub, "confirm", now=issued)
    with pytest.raises(subs.TokenError, match="expired") as caught:
        subs.read_token(settings, token, "confirm", max_age=subs.CONFIRM_MAX_AGE)
    assert caught.value.kind == "expired"
    assert subs.read_token(settings, token, "confirm", max_age=9 * 86400) == sub.id
    unsubscribe = subs.make_token(settings, sub, "unsubscribe", now=issued - timedelta(days=900))
    assert subs.read_token(settings, unsubscribe, "unsubscribe") == sub.id
    with pytest.raises(subs.SubscriptionError, match="expired"):
        subs.confirm(session, token, settings=settings)
    future = subs.make_token(settings, sub, "manage", now=utcnow() + timedelta(days=1))
    with pytest.raises(subs.TokenError, match="future"):
        subs.read_token(settings, future, "manage")


def test_bumping_token_version_invalidates_old_links(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    old = subs.make_token(settings, sub, "manage")
    old_unsubscribe = subs.make_token(settings, sub, "unsubscribe")
    subs.rotate_tokens(session, sub)
    session.commit()
    with pytest.raises(subs.TokenError, match="no longer valid") as caught:
        subs.read_token(settings, old, "manage")
    assert caught.value.kind == "superseded"
    new = subs.make_token(settings, sub, "manage")
    assert subs.read_token(settings, new, "manage") == sub.id
    # The way out is never revoked: every unsubscribe link ever sent still works.
    assert subs.read_token(settings, old_unsubscribe, "unsubscribe") == sub.id


def test_token_for_a_deleted_subscriber_is_refused(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    token = subs.make_token(settings, sub, "manage")
    subs.remove(session, sub)
    session.commit()
    with pytest.raises(subs.TokenError, match="no longer exists"):
        subs.read_token(settings, token, "manage")


def test_urls_are_built_on_base_url(session: Session, settings: Settings) -> None:
    sub = _subscriber(session)
    for kind, build in [
        ("confirm", subs.confirm_url),
        ("manage", subs.manage_url),
        ("unsubscribe", subs.unsubscribe_url),
    ]:
        url = build(settings, sub)
        prefix = f"https://digest.example.org/{kind}/"
        assert url.startswith(prefix)
        assert subs.read_token(settings, url.removeprefix(prefix), kind) == sub.id


def test_generated_key_is_stored_once_and_survives_restarts(db_url: str, tmp_path: Path) -> None:
    keyless = make_settings(db_url, tmp_path, secret_key="")
    with db.session_scope(keyless) as s:
        sub = subs.add_subscriber(s, "ada@example.org", confirmed=True)
        token = subs.make_token(keyless, sub, "unsubscribe")
        assert subs.make_token(keyless, sub, "unsubscribe") == token  # same second, same key
    # A "restarted" process: new settings object, new session, no cache.
    with db.session_scope(make_settings(db_url, tmp_path, secret_key="")) as s:
        stored = s.get(AppMeta, subs.SECRET_KEY_META)
        assert stored is not None and len(stored.value) >= 32
        assert subs.read_token(keyless, token, "unsubscribe", session=s) == sub.id
        keys = select(func.count()).where(AppMeta.key == subs.SECRET_KEY_META)
        assert s.scalar(keys) == 1
    # The stored key is not a fallback for a configured one, nor the other way round.
    configured = make_settings(db_url, tmp_path)
    with pytest.raises(subs.TokenError):
        subs.read_token(configured, token, "unsubscribe")
