"""arXiv RSS listings (``https://rss.arxiv.org/rss/cs.AI+cs.LG``), the 2024+ format.

Each ``<item>`` carries::

    <title>…</title>
    <link>https://arxiv.org/abs/2509.13332</link>
    <description>arXiv:2509.13332v1 Announce Type: new
    Abstract: …</description>
    <guid isPermaLink="false">oai:arXiv.org:2509.13332v1</guid>
    <category>cs.LG</category> …
    <arxiv:announce_type>new</arxiv:announce_type>
    <dc:creator>Ada Lovelace, Alan Turing</dc:creator>
    <arxiv:DOI>10.…</arxiv:DOI>            (sometimes)

Parsed with defusedxml's ElementTree: the format is known, and this is ~26x
faster than feedparser (bench/parse_feeds.py measures it).
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element

from digest.core.text import clean_text
from digest.errors import FeedFormatError
from digest.ingest.sources import _xml
from digest.ingest.sources.base import FeedParseResult, PaperRecord
from digest.ingest.sources.ids import (
    MAX_FIELD_CHARS,
    arxiv_abs_url,
    arxiv_pdf_url,
    extract_arxiv_id,
    extract_doi,
    html_to_text,
    parse_date,
)

NS = {
    "arxiv": "http://arxiv.org/schemas/atom",
    "dc": "http://purl.org/dc/elements/1.1/",
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
}
_OPENSEARCH = {"opensearch": "http://a9.com/-/spec/opensearch/1.1/"}
ANNOUNCE_TYPES = ("new", "cross", "replace", "replace-cross")

# "arXiv:2509.13332v1 Announce Type: new \nAbstract: …" — both parts optional, so a
# description without the prefix is still read as the abstract.
_PREFIX_RE = re.compile(
    r"^\s*(?:arXiv:\s*(?P<id>\S+)\s*)?(?:Announce\s+Type:\s*(?P<type>[\w-]+)\s*)?(?:Abstract:\s*)?",
    re.IGNORECASE,
)
_AUTHOR_SPLIT_RE = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def parse(body: bytes, url: str) -> FeedParseResult:
    root = _xml.parse_xml(body)
    if root.tag == f"{_ATOM}feed":
        if root.find("opensearch:totalResults", _OPENSEARCH) is not None:
            raise FeedFormatError(
                "got an arXiv API result (Atom with OpenSearch), not an arXiv RSS listing: "
                "use the kind arxiv-api"
            )
        return _parse_atom(root)
    if _xml.local_name(root.tag) != "rss":
        raise FeedFormatError(
            f"expected an arXiv RSS document (<rss>), got <{_xml.local_name(root.tag)}>"
        )
    channel = root.find("channel")
    if channel is None:
        raise FeedFormatError("RSS document has no <channel>")
    result = FeedParseResult(
        papers=[], title=clean_text(_xml.child_text(channel, "title", NS)) or None
    )
    for position, item in enumerate(channel.iterfind("item"), start=1):
        fields, categories = _children(item)
        record = _record(fields, categories, None, position, result.skipped)
        if record is not None:
            result.papers.append(record)
    return result


def _parse_atom(root: Element) -> FeedParseResult:
    """The same listing as Atom (``https://rss.arxiv.org/atom/cs.LG``): same content,
    Atom element names, one ``<author>`` per author."""
    result = FeedParseResult(
        papers=[], title=clean_text(_xml.child_text(root, "atom:title", NS)) or None
    )
    for position, entry in enumerate(root.iterfind("atom:entry", NS), start=1):
        fields: dict[str, str] = {}
        categories: list[str] = []
        authors: list[str] = []
        for child in entry:
            tag = child.tag
            if tag == f"{_ATOM}category":
                categories.append(child.get("term") or "")
            elif tag == f"{_ATOM}author":
                authors.append(clean_text(_xml.child_text(child, "atom:name", NS)))
            elif tag == f"{_ATOM}link":
                if child.get("rel", "alternate") == "alternate":
                    fields.setdefault("link", child.get("href") or "")
            else:
                name = _ATOM_FIELDS.get(tag, tag)
                if name not in fields:
                    fields[name] = "".join(child.itertext()) if len(child) else (child.text or "")
        record = _record(fields, categories, authors, position, result.skipped)
        if record is not None:
            result.papers.append(record)
    return result


_ARXIV = "{http://arxiv.org/schemas/atom}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_ATOM = "{http://www.w3.org/2005/Atom}"
# Atom names for the RSS fields _record reads.
_ATOM_FIELDS = {
    f"{_ATOM}title": "title",
    f"{_ATOM}summary": "description",
    f"{_ATOM}id": "guid",
    f"{_ATOM}published": "pubDate",
}


def _children(item: Element) -> tuple[dict[str, str], list[str]]:
    """One pass over an item's children: first text per tag, and all categories.

    ~3x faster than one ``find()`` per field, which matters at thousands of items.
    """
    fields: dict[str, str] = {}
    categories: list[str] = []
    for child in item:
        text = "".join(child.itertext()) if len(child) else (child.text or "")
        if child.tag == "category":
            categories.append(text)
        elif child.tag not in fields:
            fields[child.tag] = text
    return fields, categories


def _record(
    fields: dict[str, str],
    raw_categories: list[str],
    authors: list[str] | None,
    position: int,
    skipped: list[str],
) -> PaperRecord | None:
    title = clean_text(fields.get("title"))
    description = fields.get("description", "")[:MAX_FIELD_CHARS]
    prefix = _PREFIX_RE.match(description)
    assert prefix is not None  # every group is optional

    link = fields.get("link", "").strip()
    guid = fields.get("guid", "").strip()
    found = None
    for candidate in (guid, f"arXiv:{prefix.group('id')}" if prefix.group("id") else "", link):
        found = extract_arxiv_id(candidate)
        if found:
            break
    label = title[:80] or guid or link or f"item {position}"
    if not found:
        skipped.append(f"{label}: no arXiv id in guid, description or link")
        return None
    if not title:
        skipped.append(f"{found[0]}: no title")
        return None
    arxiv_id, version = found

    announce = clean_text(fields.get(f"{_ARXIV}announce_type")).lower()
    if not announce and prefix.group("type"):
        announce = prefix.group("type").lower()
    categories = _dedupe(clean_text(c) for c in raw_categories)
    return PaperRecord(
        key=f"arxiv:{arxiv_id}",
        title=title,
        abstract=html_to_text(description[prefix.end() :]),
        authors=_dedupe(authors)
        if authors is not None
        else split_authors(fields.get(f"{_DC}creator", "")),
        categories=categories,
        # arXiv lists the primary category first; a cross-list's feed category comes later.
        primary_category=categories[0] if categories else None,
        arxiv_id=arxiv_id,
        version=version,
        doi=extract_doi(fields.get(f"{_ARXIV}DOI")),
        url=arxiv_abs_url(arxiv_id),
        pdf_url=arxiv_pdf_url(arxiv_id, version),
        published_at=parse_date(fields.get("pubDate")),
        source="arxiv",
        announce_type=announce if announce in ANNOUNCE_TYPES else None,
    )


def split_authors(text: str) -> list[str]:
    """``"A. One, B. Two and C. Three"`` → three names, whitespace-collapsed."""
    text = html_to_text(text)  # old listings wrapped each name in an <a> link
    return _dedupe(clean_text(name) for name in _AUTHOR_SPLIT_RE.split(text))


def _dedupe(values: object) -> list[str]:
    return [v for v in dict.fromkeys(values) if v]  # type: ignore[call-overload]
