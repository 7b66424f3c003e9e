"""Any RSS 0.9x/1.0/2.0 or Atom feed (bioRxiv, journals, blogs), through feedparser.

feedparser is always given the bytes in a stream: handed a ``str`` or ``bytes`` it
may treat them as a URL or a local path and read it (NOTES.md). It sanitises
summaries but returns titles, authors, tags and links raw, so every one of those
goes through ``ids`` here.

Identity: an arXiv id anywhere it is marked as one (an arxiv.org link, an
``arXiv:`` id, an arXiv DOI), else a DOI (bioRxiv puts it in ``dc:identifier``),
else the entry link.
"""

from __future__ import annotations

import io
from typing import Any

import feedparser

from digest.sources import _xml
from digest.sources.base import FeedFormatError, FeedParseResult, PaperRecord
from digest.sources.ids import (
    arxiv_abs_url,
    arxiv_pdf_url,
    clean_text,
    extract_arxiv_id,
    extract_doi,
    host_of,
    html_to_text,
    paper_key,
    parse_date,
    safe_http_url,
)


def parse(body: bytes, url: str) -> FeedParseResult:
    if not body.strip():
        raise FeedFormatError("empty response body, expected a feed")
    if _xml.looks_like_html(body):
        raise FeedFormatError("got an HTML page, not a feed")
    _xml.refuse_entity_declarations(body)
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-location": url},
        resolve_relative_uris=True,
        sanitize_html=True,
    )
    entries = parsed.get("entries") or []
    version = parsed.get("version") or ""
    if not entries and not version:
        reason = parsed.get("bozo_exception")
        detail = f": {_describe(reason)}" if reason else ""
        raise FeedFormatError(f"not an RSS or Atom feed{detail}")
    feed_info = parsed.get("feed") or {}
    result = FeedParseResult(papers=[], title=clean_text(feed_info.get("title")) or None)
    base = safe_http_url(feed_info.get("link")) or url
    source = host_of(url)
    for position, entry in enumerate(entries, start=1):
        record = _record(entry, position, base, source, result.skipped)
        if record is not None:
            result.papers.append(record)
    return result


def _describe(exc: object) -> str:
    message = clean_text(str(exc))
    line = getattr(exc, "getLineNumber", None)
    if callable(line):
        try:
            return f"line {line()}, column {exc.getColumnNumber()}: {message}"  # type: ignore[attr-defined]
        except Exception:
            pass
    return message


def _record(
    entry: Any, position: int, base: str, source: str, skipped: list[str]
) -> PaperRecord | None:
    title = clean_text(entry.get("title"))
    links = [safe_http_url(entry.get("link"), base)]
    for link in entry.get("links") or []:
        links.append(safe_http_url(link.get("href"), base))
    safe_links = [link for link in dict.fromkeys(links) if link]
    entry_id = clean_text(entry.get("id"))
    identifiers = [entry_id, entry.get("dc_identifier"), entry.get("prism_doi"), *safe_links]
    texts = [clean_text(i) for i in identifiers if isinstance(i, str)]

    found = next((f for f in map(extract_arxiv_id, texts) if f), None)
    doi = next((d for d in map(extract_doi, texts) if d), None)
    link = safe_links[0] if safe_links else None
    if link is None and entry_id:
        link = safe_http_url(entry_id)  # an Atom id is often the permalink
    arxiv_id, version = found if found else (None, None)
    key = paper_key(arxiv_id, doi, link)
    label = title[:80] or entry_id[:80] or f"entry {position}"
    if key is None:
        skipped.append(f"{label}: no arXiv id, DOI or http(s) link")
        return None
    if not title:
        skipped.append(f"{key}: no title")
        return None

    pdf_url = None
    for item in entry.get("links") or []:
        if item.get("type") == "application/pdf":
            pdf_url = safe_http_url(item.get("href"), base)
            break
    if arxiv_id and not pdf_url:
        pdf_url = arxiv_pdf_url(arxiv_id, version)

    summary = entry.get("summary") or ""
    for content in entry.get("content") or []:
        if len(content.get("value") or "") > len(summary):
            summary = content["value"]
    authors = [clean_text(a.get("name")) for a in entry.get("authors") or [] if isinstance(a, dict)]
    if not any(authors) and entry.get("author"):
        authors = [clean_text(entry.get("author"))]
    categories = [clean_text(t.get("term")) for t in entry.get("tags") or [] if isinstance(t, dict)]
    published = (
        entry.get("published_parsed") or entry.get("created_parsed") or entry.get("updated_parsed")
    )
    return PaperRecord(
        key=key,
        title=title,
        abstract=html_to_text(summary),
        authors=[a for a in dict.fromkeys(authors) if a],
        categories=[c for c in dict.fromkeys(categories) if c][:20],
        arxiv_id=arxiv_id,
        version=version,
        doi=doi,
        url=arxiv_abs_url(arxiv_id) if arxiv_id else link,
        pdf_url=pdf_url,
        published_at=parse_date(published),
        updated_at=parse_date(entry.get("updated_parsed")),
        source=source,
    )
