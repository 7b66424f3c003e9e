"""`digest feeds` and `digest fetch` against a real HTTP server, on SQLite and PostgreSQL.

The done-criterion of the foundation: papers from all four feed kinds are stored
deduplicated, a second fetch costs a 304, and every bad feed ends in a recorded
error with nothing already stored lost or changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from support.feedserver import FeedServer

from digest.cli import cli
from digest.config import Settings
from digest.store import db
from digest.store.models import Feed, Paper

pytestmark = pytest.mark.integration

GOOD_FEEDS = {
    "arxiv_rss_cs_lg.xml": "arxiv-rss",
    "arxiv_api_query.xml": "arxiv-api",
    "hf_daily.json": "hf-daily",
    "biorxiv.rdf": "rss",
    "blog_atom.xml": "rss",
}


def digest_cli(settings: Settings, *args: str, **env: str) -> Result:
    environ = {
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_ALLOW_PRIVATE_FEEDS": "1",
        "DIGEST_FETCH_DELAY": "0",
        "DIGEST_FETCH_TIMEOUT": "2",
        "DIGEST_FETCH_MAX_BYTES": str(2 * 1024 * 1024),
        **env,
    }
    return CliRunner().invoke(cli, list(args), env=environ, catch_exceptions=False)


def add_good_feeds(settings: Settings, server: FeedServer) -> None:
    for name in GOOD_FEEDS:
        result = digest_cli(settings, "feeds", "add", server.feed_url(name))
        assert result.exit_code == 0, result.output


def snapshot(settings: Settings) -> dict[str, dict[str, Any]]:
    with db.session_scope(settings) as session:
        return {
            p.key: {
                c: getattr(p, c)
                for c in (
                    "title",
                    "abstract",
                    "authors",
                    "categories",
                    "upvotes",
                    "version",
                    "first_seen_at",
                )
            }
            for p in session.scalars(select(Paper))
        }


def feeds(settings: Settings) -> dict[str, Feed]:
    with db.session_scope(settings) as session:
        return {f.url.rsplit("/", 1)[-1]: f for f in session.scalars(select(Feed))}


def test_add_detects_each_kind_from_the_body(settings: Settings, feed_server: FeedServer) -> None:
    add_good_feeds(settings, feed_server)
    kinds = {name: f.kind.value for name, f in feeds(settings).items()}
    assert kinds == GOOD_FEEDS


def test_fetch_stores_deduplicated_papers_from_all_kinds(
    settings: Settings, feed_server: FeedServer
) -> None:
    add_good_feeds(settings, feed_server)
    result = digest_cli(settings, "fetch")
    assert result.exit_code == 0, result.output
    assert "error" not in result.output.split("\n", 2)[-1].lower()
    papers = snapshot(settings)
    # 2507.10753 is announced on arXiv RSS, listed by the arXiv API, trending on HF and
    # discussed on a blog: one paper, with what each source knows.
    with db.session_scope(settings) as session:
        paper = session.scalars(select(Paper).where(Paper.key == "arxiv:2507.10753")).one()
        assert {"arxiv", "hf"} <= set(paper.sources)
        assert paper.upvotes is not None
        assert paper.hf_url and paper.hf_url.startswith("https://huggingface.co/papers/")
        assert paper.categories
        assert session.scalar(select(Paper).where(Paper.arxiv_id == "2507.10753")) is not None
    assert len([k for k in papers if k.endswith("2507.10753")]) == 1
    assert any(k.startswith("doi:10.1101/") for k in papers)
    assert any(k.startswith("url:https://blog.example.org/") for k in papers)
    # Every feed says what it brought; the counts add up to the stored papers.
    table = json.loads(digest_cli(settings, "feeds", "list", "--json").output)
    assert all(f["last_status"] == "ok" for f in table)
    assert sum(f["last_new"] for f in table) == len(papers)


def test_second_fetch_is_a_conditional_get(settings: Settings, feed_server: FeedServer) -> None:
    add_good_feeds(settings, feed_server)
    digest_cli(settings, "fetch")
    before = snapshot(settings)
    feed_server.reset()
    result = digest_cli(settings, "fetch", "--json")
    outcomes = json.loads(result.output)
    assert {o["status"] for o in outcomes} == {"not-modified"}
    for name in GOOD_FEEDS:
        assert feed_server.count(f"/feeds/{name}") == 1
    sent = [r for r in feed_server.requests if r.path.startswith("/feeds/")]
    assert all("if-none-match" in {k.lower() for k in r.headers} for r in sent)
    assert snapshot(settings) == before


BAD_FEEDS = {
    "malformed": "/feeds/malformed.xml",
    "bomb": "/feeds/xml_bomb.xml",
    "html": "/html",
    "server error": "/status/500",
    "slow": "/slow?seconds=10",
    "huge": "/huge?mb=50",
    "garbage": "/feeds/garbage.bin",
}


def test_bad_feeds_record_errors_and_lose_nothing(
    settings: Settings, feed_server: FeedServer
) -> None:
    add_good_feeds(settings, feed_server)
    digest_cli(settings, "fetch")
    # A feed that worked and now serves garbage, and bad feeds added unchecked.
    good_then_bad = feed_server.put(
        "/turns-bad.xml",
        (Path(__file__).parent / "fixtures/feeds/arxiv_rss_cs_lg.xml").read_bytes(),
    )
    added = digest_cli(
        settings, "feeds", "add", good_then_bad, "--kind", "arxiv-rss", "--name", "turns-bad"
    )
    assert added.exit_code == 0, added.output
    assert digest_cli(settings, "fetch").exit_code == 0
    feed_server.put("/turns-bad.xml", b"<rss><channel><item><title>cut off")
    for label, path in BAD_FEEDS.items():
        result = digest_cli(
            settings,
            "feeds",
            "add",
            feed_server.url(path),
            "--no-check",
            "--kind",
            "rss",
            "--name",
            label,
        )
        assert result.exit_code == 0, result.output
    before = snapshot(settings)
    result = digest_cli(settings, "fetch", "--json")
    assert result.exit_code == 0  # some feeds still work
    outcomes = {o["name"]: o for o in json.loads(result.output)}
    for name in [*BAD_FEEDS, "turns-bad"]:
        assert outcomes[name]["status"] == "error", outcomes[name]
        assert outcomes[name]["error"]
    errors = {o["name"]: o["error"] for o in outcomes.values() if o["status"] == "error"}
    assert "timed out" in errors["slow"]
    assert "500" in errors["server error"]
    assert "larger than" in errors["huge"]
    assert "HTML" in errors["html"] or "html" in errors["html"]
    # Stored papers: not one lost or changed.
    assert snapshot(settings) == before
    # And the errors are on the feeds for `digest feeds list` and `digest stats`.
    listed = json.loads(digest_cli(settings, "feeds", "list", "--json").output)
    bad = [f for f in listed if f["last_status"] == "error"]
    assert len(bad) == len(BAD_FEEDS) + 1
    assert all(f["consecutive_errors"] == 1 and f["last_error"] for f in bad)


def test_feed_command_errors_are_one_line(settings: Settings, feed_server: FeedServer) -> None:
    cases = [
        (("feeds", "add", "file:///etc/passwd"), "http"),
        (("feeds", "add", "ftp://example.org/feed"), "http"),
        (("feeds", "add", feed_server.url("/html")), "HTML"),
        (("feeds", "remove", "999"), "no feed with id 999"),
        (("fetch", "--feed", "42"), "no feed with id 42"),
        (("feeds", "check", feed_server.url("/status/500")), "500"),
        (("feeds", "add", "http://[::1"), "not a valid URL"),
        (("feeds", "check", "http://[foo]/x"), "not a valid URL"),
        (("feeds", "add", "http://127.0.0.1:abc/"), "not a valid URL"),
        (("feeds", "add", "http://ex ample.com/"), "space"),
    ]
    for args, expected in cases:
        result = digest_cli(settings, *args)
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output
        assert expected.lower() in result.output.lower(), (args, result.output)
        assert result.output.strip().count("\n") == 0, result.output


def test_bad_arguments_are_usage_errors_not_tracebacks(settings: Settings) -> None:
    cases = [
        (("feeds", "remove", "99999999999999999999999"), "Invalid value for 'FEED_ID'"),
        (("feeds", "disable", "0"), "Invalid value for 'FEED_ID'"),
        (("fetch", "--feed", "99999999999999999999999"), "Invalid value for '--feed'"),
        (("papers", "list", "--since", "yesterday"), "'yesterday' is not a date/time"),
        (("papers", "list", "--since", "0001-01-01"), "too far in the past or future"),
    ]
    for args, expected in cases:
        result = digest_cli(settings, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert expected in result.output, (args, result.output)


def test_one_feed_cannot_be_added_under_two_spellings(
    settings: Settings, feed_server: FeedServer
) -> None:
    url = feed_server.feed_url("blog_atom.xml")
    assert digest_cli(settings, "feeds", "add", url + "#top").exit_code == 0
    host = urlsplit(url).netloc
    for spelling in (url, url.replace("http://", "HTTP://"), url.replace(host, host.upper())):
        result = digest_cli(settings, "feeds", "add", spelling)
        assert result.exit_code != 0 and "already exists" in result.output, spelling
    with db.session_scope(settings) as session:
        assert [f.url for f in session.scalars(select(Feed))] == [url]


def test_papers_list_since_reads_what_json_prints(
    settings: Settings, feed_server: FeedServer
) -> None:
    add_good_feeds(settings, feed_server)
    assert digest_cli(settings, "fetch").exit_code == 0
    listed = json.loads(digest_cli(settings, "papers", "list", "--json").output)
    first_seen = listed[-1]["first_seen_at"]  # the oldest
    again = digest_cli(settings, "papers", "list", "--since", first_seen, "--json")
    assert again.exit_code == 0 and len(json.loads(again.output)) == len(listed)
    later = digest_cli(settings, "papers", "list", "--since", "2999-01-01")
    assert later.exit_code == 0 and "no papers first seen since 2999-01-01" in later.output


def test_check_prints_what_it_found(settings: Settings, feed_server: FeedServer) -> None:
    result = digest_cli(settings, "feeds", "check", feed_server.feed_url("hf_daily.json"))
    assert result.exit_code == 0, result.output
    assert "hf-daily feed, 4 papers" in result.output
    with db.session_scope(settings) as session:
        assert session.scalars(select(Paper)).first() is None  # nothing stored


def test_private_addresses_are_refused_without_the_setting(
    settings: Settings, feed_server: FeedServer
) -> None:
    result = digest_cli(
        settings,
        "feeds",
        "check",
        feed_server.feed_url("hf_daily.json"),
        DIGEST_ALLOW_PRIVATE_FEEDS="0",
    )
    assert result.exit_code == 1
    assert "loopback" in result.output
    assert feed_server.count("/feeds/hf_daily.json") == 0
