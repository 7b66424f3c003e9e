"""Unit tests for the operator's helpers: plain-words labels, the arXiv taxonomy, when the
next digests fall due (time zones and daylight saving), the link check, grammar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_settings

from digest.config import Settings
from digest.match import categories
from digest.match import query as q
from digest.match.backtest import passing_hint
from digest.match.describe import readable
from digest.pipeline.upcoming import in_, upcoming
from digest.store.db import session_scope
from digest.subscriptions.lifecycle import add_subscriber, pause
from workers.dispatch import safe_broker_url


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("machine unlearning", "machine unlearning"),
        ("cat:cs.CR AND jailbreak", "cs.CR jailbreak"),
        ("cat:cs.cr jailbreak", "cs.CR jailbreak"),  # arXiv's spelling
        ('"machine unlearning" OR title:forgetting', "machine unlearning or forgetting"),
        ('author:"yoshua bengio" -survey', "by yoshua bengio, not survey"),
        ("-survey agents", "agents, not survey"),
        ("title:(agents OR tools) cat:-cs.CV", "(agents or tools), not cs.CV"),
        ("upvotes:>=10 source:hf", "10+ upvotes from Hugging Face"),
        ("upvotes:<5 llm", "under 5 upvotes llm"),
        ("like:2401.00001 -cat:cs.CV", "like 2401.00001, not cs.CV"),
        ("trending", "Trending"),
        ("~safety of reasoning  models", "safety of reasoning models"),
        ('llm llm " a"', "llm llm a"),
        ("AEGIS: online moderation", "AEGIS: online moderation"),
    ],
)
def test_readable_form_of_a_query(query: str, words: str) -> None:
    assert readable(query) == words
    assert " AND " not in readable(query) and " OR " not in readable(query)


def test_readable_form_of_text_that_does_not_lex_is_the_text() -> None:
    assert readable('"unclosed   quote') == '"unclosed quote'


def test_arxiv_categories_and_wildcards() -> None:
    assert categories.canonical("CS.cr") == "cs.CR"
    assert categories.canonical("cond-mat.MES-HALL") == "cond-mat.mes-hall"
    for value, prefix in [("cs.cr", False), ("hep-th", False), ("cs", False), ("cmp-lg", False),
                          ("cs.", True), ("cs.l", True), ("math", True), ("q-bio.", True)]:  # fmt: skip
        assert categories.is_known(value, prefix), value
    for value, prefix in [("cs.zz", False), ("neuroscience", False), ("cs.q", True),
                          ("foo.", True)]:  # fmt: skip
        assert not categories.is_known(value, prefix), value
    assert categories.suggest("cs.lgg") == ("cs.LG",) or "cs.LG" in categories.suggest("cs.lgg")
    # Every category the parser accepts is in the form the checker reads.
    for code in categories.ARXIV_CATEGORIES:
        leaf = q.parse(f"cat:{code}").root
        assert isinstance(leaf, q.Category) and categories.is_known(leaf.value, leaf.prefix)


def test_passing_hint_grammar() -> None:
    parsed = q.parse("forgetting")
    assert passing_hint(parsed, 1) == (
        '1 more paper mentions it only in passing; quote the word ("forgetting") to include it'
    )
    assert passing_hint(parsed, 2) == (
        '2 more papers mention it only in passing; quote the word ("forgetting") to include them'
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "now"), (40, "in 40 s"), (59 * 60 + 1, "in 1 h"), (3 * 3600 + 11 * 60 + 30, "in 3 h 12 min"),
     (7200, "in 2 h"), (2 * 86400 + 5 * 3600, "in 2 d 5 h"), (86400, "in 1 d"), (61, "in 2 min")],
)  # fmt: skip
def test_durations(seconds: int, text: str) -> None:
    assert in_(timedelta(seconds=seconds)) == text


def _upcoming(settings: Settings, now: datetime):  # type: ignore[no-untyped-def]
    with session_scope(settings) as session:
        return upcoming(session, now)


def test_next_digests_across_time_zones_and_daylight_saving(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    created = datetime(2026, 3, 1, tzinfo=UTC)
    with session_scope(settings) as session:
        for i in range(3):
            add_subscriber(session, f"l{i}@example.org", confirmed=True, timezone="Europe/London",
                           hour=7, now=created)  # fmt: skip
        add_subscriber(session, "ny@example.org", confirmed=True, timezone="America/New_York",
                       hour=2, now=created)  # fmt: skip
        add_subscriber(session, "w@example.org", confirmed=True, timezone="Asia/Kolkata",
                       frequency="weekly", weekday="wed", hour=9, now=created)  # fmt: skip
        add_subscriber(session, "p@example.org", timezone="Europe/Paris", now=created)
        paused = add_subscriber(
            session, "z@example.org", confirmed=True, timezone="UTC", now=created
        )
        pause(session, paused)
    # Saturday 28 March 2026, 20:00 UTC: London moves to summer time in the night
    # (01:00 GMT -> 02:00 BST), so 07:00 London on Sunday is 06:00 UTC; New York has
    # been on summer time since 8 March: 02:00 EDT is 06:00 UTC too. Same moment.
    now = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)
    nxt = _upcoming(settings, now)
    assert (nxt.active, nxt.pending) == (5, 1)
    assert nxt.at == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert nxt.readers == 4
    assert [(z.timezone, z.readers, z.local.hour) for z in nxt.zones] == [
        ("Europe/London", 3, 7),
        ("America/New_York", 1, 2),
    ]
    assert nxt.describe() == (
        "next: 4 digests tomorrow at 07:00 Europe/London (and 1 other time zone), in 10 h"
    )
    # A week earlier (winter time in London) the same 07:00 is 07:00 UTC, New York's first.
    winter = _upcoming(settings, datetime(2026, 3, 21, 20, 0, tzinfo=UTC))
    assert winter.at == datetime(2026, 3, 22, 6, 0, tzinfo=UTC)
    assert [z.timezone for z in winter.zones] == ["America/New_York"]
    assert winter.describe() == "next: 1 digest tomorrow at 02:00 America/New_York, in 10 h"
    # After London's: New York's 02:00 EDT (US summer time began 8 March) = 06:00 UTC.
    later = _upcoming(settings, datetime(2026, 3, 29, 6, 0, tzinfo=UTC))
    assert later.at == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert later.readers == 4 and [(z.timezone, z.readers) for z in later.zones] == [
        ("Europe/London", 3),
        ("America/New_York", 1),
    ]
    assert later.describe() == (
        "next: 4 digests tomorrow at 07:00 Europe/London (and 1 other time zone), in 1 d"
    )
    # A weekly reader in a half-hour zone: Wednesday 09:00 IST = 03:30 UTC.
    with session_scope(settings) as session:
        from digest.subscriptions.lifecycle import get_subscriber

        for address in ("l0", "l1", "l2", "ny"):
            subscriber = get_subscriber(session, f"{address}@example.org")
            assert subscriber is not None
            pause(session, subscriber)
    weekly = _upcoming(settings, datetime(2026, 3, 30, 12, 0, tzinfo=UTC))  # a Monday
    assert weekly.at == datetime(2026, 4, 1, 3, 30, tzinfo=UTC)
    assert weekly.describe() == "next: 1 digest on Wed 1 Apr at 09:00 Asia/Kolkata, in 1 d 15 h"


def test_next_digests_with_no_active_readers(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    now = datetime(2026, 3, 28, tzinfo=UTC)
    assert _upcoming(settings, now).describe() == (
        "next: no digests: no active readers (add one with `digest subscribers add`)"
    )
    with session_scope(settings) as session:
        add_subscriber(session, "p@example.org", now=now)
    assert _upcoming(settings, now).describe() == (
        "next: no digests: no active readers (1 pending confirmation)"
    )


@pytest.mark.parametrize(
    ("base", "refused"),
    [
        ("https://digest.example.org", False),
        ("http://digest.example.org", True),
        ("http://localhost:8000", True),
        ("https://localhost", True),
        ("https://app.localhost", True),
        ("https://127.0.0.1:8443", True),
        ("https://[::1]", True),
        ("https://0.0.0.0", True),
        ("https://192.0.2.10", False),
    ],
)
def test_links_no_reader_can_open_are_refused_over_smtp_only(base: str, refused: bool) -> None:
    smtp = Settings(smtp_url="smtp://mail.example.org:587", base_url=base)
    assert (smtp.insecure_links() is not None) is refused
    assert Settings(base_url=base).insecure_links() is None  # the outbox is for looking
    allowed = Settings(smtp_url="smtp://mail.example.org", base_url=base, allow_insecure_links=True)
    assert allowed.insecure_links() is None
    env = Settings.from_env(
        {"DIGEST_SMTP_URL": "smtp://m.example.org", "DIGEST_BASE_URL": base,
         "DIGEST_ALLOW_INSECURE_LINKS": "1"}
    )  # fmt: skip
    assert env.allow_insecure_links and env.insecure_links() is None


def test_allow_insecure_links_is_parsed_with_a_clear_error() -> None:
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match="DIGEST_ALLOW_INSECURE_LINKS: expected true/false"):
        Settings.from_env({"DIGEST_ALLOW_INSECURE_LINKS": "maybe"})


def test_mail_destination_never_shows_the_password(tmp_path: Path) -> None:
    smtp = Settings(smtp_url="smtps://ada:pa55word@mail.example.org")
    assert smtp.mail_destination() == "SMTP server mail.example.org:465 (ssl)"
    assert Settings(outbox=tmp_path / "box").mail_destination() == (
        f"outbox folder {(tmp_path / 'box').resolve()}"
    )
    assert safe_broker_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert safe_broker_url("redis://127.0.0.1:1/0") == "redis://127.0.0.1:1/0"
