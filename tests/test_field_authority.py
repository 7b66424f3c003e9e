"""A source is authoritative only for what it owns, on SQLite and PostgreSQL.

A hostile review found that any RSS item whose guid or link names ``arXiv:<id>v999``
became "version 999" of that paper and replaced its title, abstract and authors, and
that re-fetching arXiv did not restore them: the digest showed the attacker's text
under the real arXiv link. Here arXiv's own listing and a hostile generic feed are
served by the real feed server and fetched by `digest fetch`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.feedserver import FeedServer

from digest.cli import cli
from digest.config import Settings
from digest.ingest import add_feed
from digest.ingest.merge import merge_records
from digest.ingest.sources.base import PaperRecord
from digest.store import db
from digest.store.models import Feed, Paper

PAPER = "2507.10753"  # in tests/fixtures/feeds/arxiv_rss_cs_lg.xml
OTHER = "2507.15480"  # ditto, without a DOI there
VISIBLE = (
    "title",
    "abstract",
    "authors",
    "categories",
    "primary_category",
    "version",
    "url",
    "pdf_url",
    "doi",
    "published_at",
)

HOSTILE_RSS = f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>Totally normal journal</title><link>https://evil.example/</link>
<item>
  <title>Action required: re-verify your account at evil.example</title>
  <link>https://evil.example/arXiv:{PAPER}v999</link>
  <guid isPermaLink="false">arXiv:{PAPER}v999</guid>
  <description>Your arXiv account will be closed: re-verify at https://evil.example/login</description>
  <dc:creator>Mallory</dc:creator>
  <category>cs.CR</category>
  <pubDate>Mon, 01 Jan 2001 00:00:00 GMT</pubDate>
</item>
<item>
  <title>A journal's record of the other paper</title>
  <link>https://journal.example/paper/42</link>
  <guid isPermaLink="false">arXiv:{OTHER}v7</guid>
  <dc:identifier>doi:10.5555/journal.42</dc:identifier>
  <description>The journal's own abstract.</description>
</item>
</channel></rss>
"""


def digest_cli(settings: Settings, *args: str) -> Result:
    env = {
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_ALLOW_PRIVATE_FEEDS": "1",
        "DIGEST_FETCH_DELAY": "0",
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def visible(settings: Settings, key: str) -> dict[str, Any]:
    with db.session_scope(settings) as session:
        paper = session.scalar(select(Paper).where(Paper.key == key))
        assert paper is not None
        return {name: getattr(paper, name) for name in VISIBLE}


@pytest.mark.integration
def test_a_generic_feed_naming_arxiv_v999_changes_nothing_arxiv_owns(
    settings: Settings, feed_server: FeedServer
) -> None:
    evil_url = feed_server.put("/evil.rss", HOSTILE_RSS, "application/rss+xml")
    with db.session_scope(settings) as session:
        arxiv_feed = add_feed(session, feed_server.feed_url("arxiv_rss_cs_lg.xml"), "arxiv-rss")
        arxiv_id = arxiv_feed.id
    assert digest_cli(settings, "fetch").exit_code == 0
    before = visible(settings, f"arxiv:{PAPER}")
    other_before = visible(settings, f"arxiv:{OTHER}")
    assert before["version"] == 1 and other_before["doi"] is None

    with db.session_scope(settings) as session:
        evil_id = add_feed(session, evil_url, "rss").id
    result = digest_cli(settings, "fetch", "--feed", str(evil_id))
    assert result.exit_code == 0, result.output

    assert visible(settings, f"arxiv:{PAPER}") == before  # nothing arXiv owns moved
    other = visible(settings, f"arxiv:{OTHER}")
    # An empty field can still be filled by anyone; the rest stays arXiv's.
    assert other["doi"] == "10.5555/journal.42"
    assert {k: v for k, v in other.items() if k != "doi"} == {
        k: v for k, v in other_before.items() if k != "doi"
    }

    # Fetching arXiv again restores nothing, because nothing was changed.
    again = digest_cli(settings, "fetch", "--feed", str(arxiv_id))
    assert again.exit_code == 0, again.output
    assert visible(settings, f"arxiv:{PAPER}") == before

    # Who set what is on record, and `digest papers show` says it.
    with db.session_scope(settings) as session:
        paper = session.scalar(select(Paper).where(Paper.key == f"arxiv:{OTHER}"))
        assert paper is not None
        assert paper.field_sources["title"] == f"arxiv-rss:{arxiv_id}"
        assert paper.field_sources["doi"] == f"rss:{evil_id}"
        assert paper.field_sources["version"] == f"arxiv-rss:{arxiv_id}"
        evil_name = session.get(Feed, evil_id).name  # type: ignore[union-attr]
        arxiv_name = session.get(Feed, arxiv_id).name  # type: ignore[union-attr]
    shown = digest_cli(settings, "papers", "show", OTHER)
    assert shown.exit_code == 0, shown.output
    assert f"set by feed {evil_id}, {evil_name} (rss)" in shown.output
    assert f"set by feed {arxiv_id}, {arxiv_name} (arxiv-rss)" in shown.output
    as_json = json.loads(digest_cli(settings, "papers", "show", OTHER, "--json").output)
    assert as_json["field_sources"]["doi"] == f"rss:{evil_id}"
    assert "re-verify" not in digest_cli(settings, "papers", "show", PAPER).output


def generic(arxiv_id: str, **kw: object) -> PaperRecord:
    values: dict[str, object] = {
        "key": f"arxiv:{arxiv_id}",
        "arxiv_id": arxiv_id,
        "version": 999,
        "title": "Re-verify your account at evil.example",
        "abstract": "Attacker text.",
        "authors": ["Mallory"],
        "categories": ["cs.CR"],
        "url": "https://evil.example/",
        "source": "evil-example",
    }
    values.update(kw)
    return PaperRecord(**values)  # type: ignore[arg-type]


def test_arxiv_replaces_what_a_generic_feed_stored_first(session: Session) -> None:
    """A paper a generic feed mentioned before arXiv listed it: arXiv's record wins."""
    t = datetime(2026, 12, 1, tzinfo=UTC)
    merge_records(session, [generic("2401.00009")], t)
    stored = session.scalar(select(Paper).where(Paper.key == "arxiv:2401.00009"))
    assert stored is not None and stored.version is None  # a generic feed numbers nothing
    real = PaperRecord(
        key="arxiv:2401.00009",
        arxiv_id="2401.00009",
        version=1,
        title="The real title",
        abstract="The real abstract.",
        authors=["Ada Lovelace"],
        categories=["cs.LG"],
        url="https://arxiv.org/abs/2401.00009",
        source="arxiv",
    )
    merge_records(session, [real], t)
    merge_records(session, [generic("2401.00009", title="Still trying")], t)
    session.commit()
    paper = session.scalar(select(Paper).where(Paper.key == "arxiv:2401.00009"))
    assert paper is not None
    assert (paper.title, paper.abstract, paper.authors, paper.version) == (
        "The real title",
        "The real abstract.",
        ["Ada Lovelace"],
        1,
    )
    assert paper.categories == ["cs.LG"] and paper.url == "https://arxiv.org/abs/2401.00009"
    assert paper.field_sources["title"] == "arxiv"


def test_hugging_face_owns_upvotes_and_fills_only_empty_text(session: Session) -> None:
    t = datetime(2026, 12, 1, tzinfo=UTC)
    arxiv = PaperRecord(
        key="arxiv:2401.00010", arxiv_id="2401.00010", version=2, title="arXiv's title",
        abstract="", source="arxiv",
    )  # fmt: skip
    hf = PaperRecord(
        key="arxiv:2401.00010", arxiv_id="2401.00010", title="HF's title",
        abstract="HF's abstract.", upvotes=7, source="hf",
    )  # fmt: skip
    merge_records(session, [arxiv], t)
    merge_records(session, [hf], t)
    merge_records(session, [generic("2401.00010", upvotes=10_000)], t)
    session.commit()
    paper = session.scalar(select(Paper).where(Paper.key == "arxiv:2401.00010"))
    assert paper is not None
    assert (paper.title, paper.abstract, paper.upvotes, paper.version) == (
        "arXiv's title",
        "HF's abstract.",
        7,
        2,
    )
    assert paper.field_sources["abstract"] == "hf" and paper.field_sources["title"] == "arxiv"
