"""Hostile feed bodies at the size cap: each costs time linear in its size, fails alone.

A hostile review found regexes that rescan the rest of the body from every match
(``[^>]*`` after every ``<`` in ``html_to_text``, ``[^\\[>]*`` after every
``<!DOCTYPE``): a 1 MB body took minutes, 20 MB hours. Here such bodies, at the
20 MB cap, are served by the real feed server and fetched by ``digest fetch`` beside
a good feed. The timeout guards against hours, not milliseconds (no timed assertion:
speed is measured in bench/parse_hostile.py, see bench/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import select
from support.feedserver import FeedServer

from digest.config import Settings
from digest.ingest import add_feed, ingest_all
from digest.ingest.sources._xml import refuse_entity_declarations
from digest.ingest.sources.ids import html_to_text
from digest.store import db
from digest.store.models import Feed, Paper

pytestmark = pytest.mark.integration

CAP = 20 * 1024 * 1024


def fill(unit: bytes, size: int) -> bytes:
    return unit * (size // len(unit))


def arxiv_rss(description: bytes) -> bytes:
    head = (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        b"<channel><title>cs.LG</title><item><title>Hostile</title>"
        b"<link>https://arxiv.org/abs/2509.00001</link><guid>oai:arXiv.org:2509.00001v1</guid>"
        b"<description>arXiv:2509.00001v1 Announce Type: new \nAbstract: "
    )
    tail = b"</description><arxiv:announce_type>new</arxiv:announce_type></item></channel></rss>"
    return head + fill(description, CAP - len(head) - len(tail) - 64) + tail


def hf_json() -> bytes:
    """~1.2 MB of Hugging Face papers whose abstracts are "<script <script …"."""
    items = [
        {
            "paper": {
                "id": f"2509.{20000 + i}",
                "title": f"Hostile paper {i}",
                "summary": "<script " * 3000,
                "authors": [{"name": "A. Author"}],
                "upvotes": 1,
            }
        }
        for i in range(50)
    ]
    body = json.dumps(items).encode()
    assert 1_100_000 < len(body) < 1_400_000
    return body


HOSTILE = {
    # name: (kind, content type, body)
    "lt.xml": ("rss", "application/rss+xml", fill(b"<", CAP - 64)),
    "doctype.xml": ("rss", "application/xml", fill(b"<!DOCTYPE ", CAP - 64)),
    "doctype-arxiv.xml": ("arxiv-rss", "application/xml", fill(b"<!DOCTYPE [", CAP - 64)),
    "script-abstract.xml": ("arxiv-rss", "application/xml", arxiv_rss(b"&lt;script ")),
    "hf.json": ("hf-daily", "application/json", hf_json()),
}


@pytest.fixture
def sqlite_settings(sqlite_template: Path, tmp_path: Path) -> Settings:
    path = tmp_path / "digest.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(f"sqlite:///{path}", tmp_path, fetch_max_bytes=CAP, fetch_timeout=30.0)


@pytest.mark.timeout(120)
def test_hostile_bodies_at_the_cap_fail_alone_and_quickly(
    sqlite_settings: Settings, feed_server: FeedServer
) -> None:
    settings = sqlite_settings
    with db.session_scope(settings) as session:
        for name, (kind, content_type, body) in HOSTILE.items():
            url = feed_server.put(f"/hostile/{name}", body, content_type)
            add_feed(session, url, kind)
        add_feed(session, feed_server.feed_url("arxiv_rss_cs_lg.xml"), "arxiv-rss")
    outcomes = ingest_all(settings)
    with db.session_scope(settings) as session:
        feeds = {f.url.rsplit("/", 1)[-1]: f for f in session.scalars(select(Feed))}
        papers = {p.key: p for p in session.scalars(select(Paper))}
    assert len(outcomes) == len(HOSTILE) + 1
    # The good feed beside them is fetched as always.
    assert feeds["arxiv_rss_cs_lg.xml"].last_status == "ok"
    # Bodies that are not feeds are refused with the reason, recorded on their feed.
    for name in ("lt.xml", "doctype.xml", "doctype-arxiv.xml"):
        assert feeds[name].last_status == "error", name
        assert feeds[name].last_error and "not" in feeds[name].last_error, name
    assert "too big to read leniently" in (feeds["lt.xml"].last_error or "")
    # Feeds that are feeds, with hostile text, are read: the text is cut and plain.
    assert feeds["hf.json"].last_status == "ok" and feeds["hf.json"].last_new == 50
    hostile = papers["arxiv:2509.00001"]
    assert feeds["script-abstract.xml"].last_status == "ok"
    assert hostile.abstract.startswith("<script <script") and len(hostile.abstract) <= 100_000
    assert papers["arxiv:2509.20000"].abstract.startswith("<script <script")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", ["<script ", "<style <a ", "<!-- <p "])
def test_html_to_text_on_a_hostile_fragment(unit: str) -> None:
    text = unit * (2_000_000 // len(unit))
    out = html_to_text(text)
    assert len(out) <= 100_000  # an unclosed comment hides the rest: nothing


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", [b"<!DOCTYPE ", b"<!DOCTYPE [", b"<!doctype x [ ]"])
def test_the_dtd_check_on_a_hostile_body(unit: bytes) -> None:
    refuse_entity_declarations(fill(unit, CAP))  # no entities declared: nothing to refuse
