"""Any RSS 0.9x/1.0/2.0 or Atom feed (bioRxiv, journals, blogs), through feedparser.

feedparser is always given the bytes in a stream: handed a ``str`` or ``bytes`` it
may treat them as a URL or a local path and read it (ARCHITECTURE.md). It returns
titles, authors, tags and links raw, and (its sanitiser switched off: slow, and we keep
only text) summaries too, so every one of those goes through ``ids`` here.

Identity: an arXiv id anywhere it is marked as one (an arxiv.org link, an
``arXiv:`` id, an arXiv DOI), else a DOI (bioRxiv puts it in ``dc:identifier``),
else the entry link.
"""

from __future__ import annotations

import io
import re
from typing import Any

import feedparser

from digest.core.text import clean_text
from digest.errors import FeedFormatError
from digest.ingest.sources import _xml
from digest.ingest.sources.base import FeedParseResult, PaperRecord
from digest.ingest.sources.ids import (
    arxiv_abs_url,
    arxiv_pdf_url,
    extract_arxiv_id,
    extract_doi,
    host_of,
    html_to_text,
    paper_key,
    parse_date,
    safe_http_url,
)

#: The largest body handed to feedparser when it is not well-formed XML.
LENIENT_LIMIT = 1 << 20


def parse(body: bytes, url: str) -> FeedParseResult:
    if not body.strip():
        raise FeedFormatError("empty response body, expected a feed")
    if _xml.looks_like_html(body):
        raise FeedFormatError("got an HTML page, not a feed")
    _xml.refuse_entity_declarations(body)
    # Charset handling is ours, as for the arXiv formats (feedparser's own detection
    # crashes on some malformed declarations): feedparser gets clean UTF-8.
    data = b'<?xml version="1.0" encoding="utf-8"?>' + _xml.xml_text(body).encode("utf-8")
    if len(data) > LENIENT_LIMIT:
        problem = _xml.well_formed_problem(data)
        if problem is not None:
            # feedparser reads a malformed body with its pure-Python lenient parser,
            # ~4 s per MB: fine for a sloppy small feed, minutes of a worker at 20 MB.
            raise FeedFormatError(
                f"not XML: {problem}, and at {len(data) / 1e6:.1f} MB too big to read "
                f"leniently (the limit is {LENIENT_LIMIT // 2**20} MB)"
            )
    try:
        parsed = feedparser.parse(
            io.BytesIO(data),
            response_headers={
                "content-location": url,
                "content-type": "application/xml; charset=utf-8",
            },
            # Both run feedparser's pure-Python HTML parser over every summary (~3 s per
            # MB of markup); we keep only text (``html_to_text``), which needs neither.
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except Exception as exc:
        # e.g. ValueError from chr() on "&#x110000;" in feedparser's loose parser.
        raise FeedFormatError(
            f"not a readable feed: {type(exc).__name__}: {clean_text(str(exc))}"
        ) from None
    entries = parsed.get("entries") or []
    version = parsed.get("version") or ""
    reason = parsed.get("bozo_exception")
    if not entries and not version:
        detail = f": {_describe(reason)}" if reason else ""
        raise FeedFormatError(f"not an RSS or Atom feed{detail}")
    if reason is not None and _truncated(reason):
        # feedparser's loose parser would hand back the half-received last entry (a cut
        # abstract); real feeds are sloppy, but a cut-off one is not worth storing.
        raise FeedFormatError(f"not XML: {_describe(reason)} (the feed is cut off)")
    feed_info = parsed.get("feed") or {}
    result = FeedParseResult(papers=[], title=clean_text(feed_info.get("title")) or None)
    base = safe_http_url(feed_info.get("link")) or url
    source = host_of(url)
    for position, entry in enumerate(entries, start=1):
        record = _record(entry, position, base, source, result.skipped)
        if record is not None:
            result.papers.append(record)
    return result


_SEMICOLON_RE = re.compile(r"\s*;\s*")
# "Sarkar, A., Gupta, P. K., Smith, J." (bioRxiv): a comma after an initial ends a name.
_AFTER_INITIAL_RE = re.compile(r"(?<=\b\w\.),\s+")


def split_author_list(text: str) -> list[str]:
    """One ``dc:creator`` string holding several names, split where that is unambiguous."""
    if ";" in text:
        parts = _SEMICOLON_RE.split(text)
    elif re.search(r"\b\w\., ", text):
        parts = _AFTER_INITIAL_RE.split(text)
    else:
        parts = [text]
    return [p for p in dict.fromkeys(clean_text(p) for p in parts) if p]


_VERSION_RE = re.compile(r"v(\d{1,4})")


def _biorxiv_version(doi: str, links: list[str]) -> int | None:
    # A plain find: a regex compiled from the DOI would cost as much as the DOI is long.
    suffix = doi.split("/", 1)[1]
    for link in links:
        at = link.lower().find(suffix)
        m = _VERSION_RE.match(link, at + len(suffix)) if at >= 0 else None
        if m:
            return int(m.group(1))
    return None


def _truncated(exc: object) -> bool:
    message = str(getattr(exc, "getMessage", lambda: exc)())
    return "no element found" in message or "unclosed token" in message


def _describe(exc: object) -> str:
    get_message = getattr(exc, "getMessage", None)
    message = clean_text(str(get_message() if callable(get_message) else exc))
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
    # Generic feeds mark titles up freely (Atom type="html", entities in RSS 2.0).
    title = html_to_text(entry.get("title"))
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
    if not arxiv_id and doi and doi.startswith("10.1101/"):
        version = _biorxiv_version(doi, safe_links)
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
    authors = [
        html_to_text(a.get("name")) for a in entry.get("authors") or [] if isinstance(a, dict)
    ]
    if not any(authors) and entry.get("author"):
        authors = [html_to_text(entry.get("author"))]
    if len(authors) == 1:
        authors = split_author_list(authors[0])
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
