"""`digest topics …` through click's CliRunner against a real database (both kinds)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import TEST_SECRET
from support.clikit import cli_env, noun_runner, one_line_error
from support.factories import make_paper

from digest.config import Settings
from digest.core.clock import utcnow
from digest.store.db import session_scope
from digest.store.models import Subscriber, Topic

pytestmark = pytest.mark.integration


@pytest.fixture
def db(db_url: str) -> Settings:
    """The database with one subscriber and a few papers, new and old."""
    settings = Settings(database_url=db_url, secret_key=TEST_SECRET)
    now = utcnow()
    with session_scope(settings) as session:
        session.add(Subscriber(email="Ada@Example.org", email_key="ada@example.org"))
        papers = [
            ("Machine Unlearning for LLM Safety", "A study of forgetting in LLMs.", 1, 5),
            ("Corrective machine unlearning", "Forgetting manipulated data.", 2, 40),
            ("Diffusion models for audio", "Generative audio models.", 1, None),
            ("Old news: machine unlearning revisited", "Machine unlearning, again.", 30, 90),
        ]
        for i, (title, abstract, days_ago, upvotes) in enumerate(papers):
            make_paper(
                session,
                title,
                abstract=abstract,
                seen=now - timedelta(days=days_ago),
                arxiv_id=f"2401.0000{i}",
                upvotes=upvotes,
                last_seen_at=now,
            )
    return settings


@pytest.fixture
def run(db: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    return noun_runner("topics", cli_env(db.database_url, tmp_path))


def _topics(settings: Settings) -> list[tuple[str, str]]:
    with session_scope(settings) as session:
        return [(t.label, t.query) for t in session.query(Topic).order_by(Topic.id)]


def test_add_list_remove(run, db: Settings) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "add", "ADA@example.org", '"machine unlearning"  OR  forgetting', "--label", "Unlearning"
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.startswith("added topic ")
        and '"Unlearning" for Ada@Example.org' in result.stdout
    )
    assert run("add", "ada@example.org", "diffusion models").exit_code == 0
    assert _topics(db) == [
        ("Unlearning", '"machine unlearning" OR forgetting'),
        ("diffusion models", "diffusion models"),
    ]

    listed = json.loads(run("list", "ada@example.org", "--json").stdout)
    assert [t["label"] for t in listed] == ["Unlearning", "diffusion models"]
    table = run("list", "ada@example.org").stdout
    assert "Unlearning" in table and "diffusion models" in table

    result = run("remove", "ada@example.org", str(listed[0]["id"]))
    assert result.exit_code == 0, result.output
    assert _topics(db) == [("diffusion models", "diffusion models")]
    assert one_line_error(run("remove", "ada@example.org", str(listed[0]["id"]))) == (
        f"Ada@Example.org has no topic with id {listed[0]['id']}"
    )


def test_bad_query_is_one_line_saying_what_and_where(run, db: Settings) -> None:  # type: ignore[no-untyped-def]
    message = one_line_error(run("add", "ada@example.org", 'safety title:"machine unlearning'))
    assert (
        message == 'bad topic query "safety title:"machine unlearning": unclosed quote at column 14'
    )
    message = one_line_error(run("add", "ada@example.org", "tilte:unlearning"))
    assert "did you mean title:?" in message
    assert _topics(db) == []


def test_unknown_subscriber_and_duplicate_topic(run) -> None:  # type: ignore[no-untyped-def]
    assert one_line_error(run("add", "bob@example.org", "diffusion")) == (
        "no subscriber with address bob@example.org"
    )
    assert (
        one_line_error(run("list", "bob@example.org"))
        == "no subscriber with address bob@example.org"
    )
    assert run("add", "ada@example.org", "diffusion").exit_code == 0
    assert "already has the topic" in one_line_error(run("add", "ada@example.org", "diffusion"))


def test_backtest_lists_recent_matches_best_first_with_reasons(run) -> None:  # type: ignore[no-untyped-def]
    result = run("test", "machine unlearning", "--days", "7", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["papers_considered"] == 3  # the 30-day-old paper is outside the window
    assert data["matched"] == 2
    titles = [p["title"] for p in data["papers"]]
    # both have the phrase in the title; the upvotes decide
    assert titles == ["Corrective machine unlearning", "Machine Unlearning for LLM Safety"]
    assert data["papers"][0]["reason"] == 'title matches "machine unlearning"'
    assert {"machine", "unlearning"} <= set(data["papers"][0]["terms"])

    text = run("test", "machine unlearning", "--days", "60").stdout
    assert text.splitlines()[0] == "3 of 4 papers first seen in the last 60 days match:"
    assert "Old news" in text
    assert "matched words: machine, unlearning" in text


def test_backtest_refuses_a_bad_query(run) -> None:  # type: ignore[no-untyped-def]
    assert one_line_error(run("test", "--", "-survey")) == (
        'bad topic query "-survey": query matches nothing: only NOT terms; add a word to look for'
    )


def test_backtest_says_how_many_papers_mention_the_words_only_in_passing(run) -> None:  # type: ignore[no-untyped-def]
    # "forgetting" is said once in two abstracts and in no title: a passing mention
    data = json.loads(run("test", "forgetting", "--json").stdout)
    assert (data["matched"], data["in_passing"]) == (0, 2)
    hint = 'quote the word ("forgetting") to include them'
    assert data["hint"] == f"2 more papers mention it only in passing; {hint}"
    text = run("test", "forgetting").stdout.splitlines()
    assert text == [
        "0 of 3 papers first seen in the last 7 days match.",
        f"2 more papers mention it only in passing; {hint}",
    ]
    # quoting it does what the hint says; nothing is left to hint about
    data = json.loads(run("test", '"forgetting"', "--json").stdout)
    assert (data["matched"], data["in_passing"], data["hint"]) == (2, 0, None)
    assert "in passing" not in run("test", "machine unlearning").stdout


def test_a_query_may_start_with_a_minus(run, db: Settings) -> None:  # type: ignore[no-untyped-def]
    result = run("test", "-survey unlearning", "--days", "7", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["query"] == "-survey unlearning"
    # '-survey hallucination' has an h: not -h (help)
    assert run("test", "-survey hallucination").stdout.startswith("0 of 3 papers")
    result = run("add", "ada@example.org", "-survey agents", "--label", "-agents-")
    assert result.exit_code == 0, result.output
    assert run("add", "ada@example.org", "--label", "X", "-diffusion audio").exit_code == 0
    assert _topics(db) == [("-agents-", "-survey agents"), ("X", "-diffusion audio")]
    # real options still work, unknown ones still fail, an explicit -- still works
    assert "Backtest a query" in run("test", "-h").stdout
    assert "No such option '--dyas'" in run("test", "--dyas", "3", "x").output
    assert run("test", "--", "-survey unlearning").exit_code == 0
