"""arXiv API query results (``http://export.arxiv.org/api/query?search_query=…``).

An Atom feed with the OpenSearch and arXiv extensions. Each ``<entry>`` has
``<id>http://arxiv.org/abs/2401.00001v2</id>``, ``<published>`` (v1) and
``<updated>`` (this version), ``<author><name>``, ``<arxiv:primary_category
term=…>``, ``<category term=…>``, a ``title="pdf"`` link and sometimes
``<arxiv:doi>``. A bad query comes back as a feed with one entry whose id is
``http://arxiv.org/api/errors#…``: reported as a format error, not as a paper.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from digest.core.text import clean_text
from digest.errors import FeedFormatError
from digest.ingest.sources import _xml
from digest.ingest.sources.base import FeedParseResult, PaperRecord
from digest.ingest.sources.ids import (
    arxiv_abs_url,
    arxiv_pdf_url,
    extract_arxiv_id,
    extract_doi,
    html_to_text,
    parse_date,
    safe_http_url,
)

ATOM = "http://www.w3.org/2005/Atom"
NS = {
    "atom": ATOM,
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}


def parse(body: bytes, url: str) -> FeedParseResult:
    root = _xml.parse_xml(body)
    if root.tag != f"{{{ATOM}}}feed":
        raise FeedFormatError(
            f"expected an arXiv API Atom feed (<feed> in the Atom namespace), got <{_xml.local_name(root.tag)}>"
        )
    entries = root.findall("atom:entry", NS)
    for entry in entries:
        entry_id = _xml.child_text(entry, "atom:id", NS).strip()
        if "/api/errors" in entry_id:
            message = clean_text(_xml.child_text(entry, "atom:summary", NS)) or entry_id
            raise FeedFormatError(f"arXiv API error: {message}")
    result = FeedParseResult(
        papers=[], title=clean_text(_xml.child_text(root, "atom:title", NS)) or None
    )
    for position, entry in enumerate(entries, start=1):
        record = _record(entry, position, result.skipped)
        if record is not None:
            result.papers.append(record)
    return result


_A = f"{{{ATOM}}}"
_X = "{http://arxiv.org/schemas/atom}"


def _record(entry: Element, position: int, skipped: list[str]) -> PaperRecord | None:
    # One pass over the children instead of a find() per field (~3x faster).
    fields: dict[str, str] = {}
    links: list[Element] = []
    authors: list[str] = []
    terms: list[str] = []
    primary_term = ""
    for child in entry:
        tag = child.tag
        if tag == f"{_A}link":
            links.append(child)
        elif tag == f"{_A}author":
            authors.append(clean_text(_xml.child_text(child, "atom:name", NS)))
        elif tag == f"{_A}category":
            terms.append(clean_text(child.get("term")))
        elif tag == f"{_X}primary_category":
            primary_term = clean_text(child.get("term"))
        elif tag not in fields:
            fields[tag] = "".join(child.itertext()) if len(child) else (child.text or "")

    title = clean_text(fields.get(f"{_A}title"))
    entry_id = fields.get(f"{_A}id", "").strip()
    found = extract_arxiv_id(entry_id)
    if not found:
        for link in links:
            found = extract_arxiv_id(link.get("href"))
            if found:
                break
    label = title[:80] or entry_id or f"entry {position}"
    if not found:
        skipped.append(f"{label}: no arXiv id in <id> or links")
        return None
    if not title:
        skipped.append(f"{found[0]}: no title")
        return None
    arxiv_id, version = found

    pdf_url = None
    for link in links:
        if link.get("title") == "pdf" or link.get("type") == "application/pdf":
            pdf_url = safe_http_url(link.get("href"))
            break
    categories = [primary_term] if primary_term else []
    for term in terms:
        if term and term not in categories:
            categories.append(term)
    return PaperRecord(
        key=f"arxiv:{arxiv_id}",
        title=title,
        abstract=html_to_text(fields.get(f"{_A}summary")),
        authors=[a for a in dict.fromkeys(authors) if a],
        categories=categories,
        primary_category=primary_term or None,
        arxiv_id=arxiv_id,
        version=version,
        doi=extract_doi(fields.get(f"{_X}doi")),
        url=arxiv_abs_url(arxiv_id),
        pdf_url=_https_arxiv(pdf_url) or arxiv_pdf_url(arxiv_id, version),
        published_at=parse_date(fields.get(f"{_A}published")),
        updated_at=parse_date(fields.get(f"{_A}updated")),
        source="arxiv",
    )


def _https_arxiv(url: str | None) -> str | None:
    # The API still hands out http:// links to arxiv.org, which redirects to https anyway.
    if url and url.startswith("http://arxiv.org/"):
        return "https://" + url[len("http://") :]
    return url
