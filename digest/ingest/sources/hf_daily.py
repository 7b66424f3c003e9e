"""Hugging Face Daily Papers (``https://huggingface.co/api/daily_papers?date=YYYY-MM-DD``).

A JSON list; each item looks like::

    {"paper": {"id": "2509.12201", "authors": [{"_id": …, "name": …, "hidden": false}],
               "publishedAt": "2025-09-15T17:59:57.000Z", "title": …, "summary": …,
               "upvotes": 54, …},
     "publishedAt": …, "title": …, "summary": …, "thumbnail": …, "numComments": 2,
     "submittedBy": {…}}

``paper.id`` is the arXiv id, so these merge with arXiv's own records. Upvotes are
kept: they are the "trending" signal.
"""

from __future__ import annotations

import json
import re
from typing import Any

from digest.core.text import clean_text
from digest.errors import FeedFormatError
from digest.ingest.sources import _xml
from digest.ingest.sources.base import FeedParseResult, PaperRecord
from digest.ingest.sources.ids import (
    arxiv_abs_url,
    arxiv_pdf_url,
    extract_arxiv_id,
    html_to_text,
    parse_date,
)

HF_PAPERS = "https://huggingface.co/papers/"
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def load_json(body: bytes) -> Any:
    if not body.strip():
        raise FeedFormatError("empty response body, expected JSON")
    if _xml.looks_like_html(body):
        raise FeedFormatError("got an HTML page, not a feed")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return json.loads(body)  # json detects UTF-16/32 by itself
        except (ValueError, RecursionError):
            # JSON must be UTF-8 (RFC 8259): keep what is, losing only broken bytes; a
            # server that sends windows-1252 anyway meant those characters.
            text = _xml.decode_utf8(body.removeprefix(b"\xef\xbb\xbf"))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeedFormatError(
            f"not JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise FeedFormatError("not usable JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python allows
        raise FeedFormatError(f"not usable JSON: {exc}") from None


def parse(body: bytes, url: str) -> FeedParseResult:
    data = load_json(body)
    if isinstance(data, dict):
        if isinstance(data.get("paper"), dict) or ("id" in data and "title" in data):
            data = [data]  # /api/papers/<id> answers with one paper
        else:
            detail = data.get("error") if isinstance(data.get("error"), str) else None
            raise FeedFormatError(
                "JSON is an object, expected a list of papers"
                + (f" (the server says: {clean_text(detail)[:200]})" if detail else "")
            )
    if not isinstance(data, list):
        raise FeedFormatError(f"JSON is a {_json_type(data)}, expected a list of papers")
    result = FeedParseResult(papers=[], title="Hugging Face Daily Papers")
    for position, item in enumerate(data, start=1):
        record = _record(item, position, result.skipped)
        if record is not None:
            result.papers.append(record)
    return result


def _record(item: object, position: int, skipped: list[str]) -> PaperRecord | None:
    if not isinstance(item, dict):
        skipped.append(f"item {position}: a JSON {_json_type(item)}, expected an object")
        return None
    nested = item.get("paper")
    paper: dict[str, Any] = nested if isinstance(nested, dict) else item
    title = clean_text(_str(paper.get("title")) or _str(item.get("title")))
    raw_id = clean_text(_str(paper.get("id")))
    found = extract_arxiv_id(raw_id)
    label = title[:80] or raw_id or f"item {position}"
    if not raw_id or not _SAFE_ID_RE.match(raw_id):
        skipped.append(f"{label}: no usable paper id")
        return None
    if not title:
        skipped.append(f"{raw_id}: no title")
        return None
    hf_url = HF_PAPERS + raw_id
    authors = []
    listed = paper.get("authors")
    for author in listed if isinstance(listed, list) else []:
        name = clean_text(_str(author.get("name") if isinstance(author, dict) else author))
        if name and name not in authors:
            authors.append(name)
    arxiv_id, version = found if found else (None, None)
    return PaperRecord(
        key=f"arxiv:{arxiv_id}" if arxiv_id else f"url:{hf_url}",
        title=title,
        abstract=html_to_text(_str(paper.get("summary")) or _str(item.get("summary"))),
        authors=authors,
        arxiv_id=arxiv_id,
        version=version,
        url=arxiv_abs_url(arxiv_id) if arxiv_id else hf_url,
        pdf_url=arxiv_pdf_url(arxiv_id) if arxiv_id else None,
        hf_url=hf_url,
        upvotes=_count(paper.get("upvotes"), item.get("upvotes")),
        comments=_count(item.get("numComments"), item.get("comments"), paper.get("numComments")),
        published_at=parse_date(_str(paper.get("publishedAt")) or _str(item.get("publishedAt"))),
        source="hf",
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(*values: object) -> int | None:
    for value in values:
        # bool is an int in Python; "upvotes": true is not a count.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
            return value
        if isinstance(value, list):  # some endpoints give the comments themselves
            return len(value)
    return None


def _json_type(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
