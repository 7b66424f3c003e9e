"""Feed sources: one module per kind, each turning a response body into paper records.

``parse_feed(kind, body, url)`` dispatches to the module for the kind;
``detect_kind(url, body)`` guesses the kind from the URL, then from the body.
Every parser takes bytes and raises :class:`FeedFormatError` with a message that
says exactly what was wrong; an unusable entry is skipped with a reason in
``FeedParseResult.skipped`` instead of failing the feed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from digest.errors import FeedFormatError
from digest.ingest.sources import _xml, arxiv_api, arxiv_rss, hf_daily, rss
from digest.ingest.sources.base import FeedParseResult, PaperRecord
from digest.ingest.sources.ids import fit_to_storage
from digest.store.models import FeedKind

__all__ = [
    "PARSERS",
    "FeedFormatError",
    "FeedKind",
    "FeedParseResult",
    "PaperRecord",
    "detect_kind",
    "parse_feed",
]

PARSERS: dict[FeedKind, Callable[[bytes, str], FeedParseResult]] = {
    FeedKind.ARXIV_RSS: arxiv_rss.parse,
    FeedKind.ARXIV_API: arxiv_api.parse,
    FeedKind.HF_DAILY: hf_daily.parse,
    FeedKind.RSS: rss.parse,
}


def parse_feed(
    kind: FeedKind | str, body: bytes, url: str, content_type: str | None = None
) -> FeedParseResult:
    """Parse ``body`` (raw response bytes) as a feed of ``kind`` fetched from ``url``.

    ``content_type`` is the response's header: its charset applies to a body that
    does not name its own.
    """
    body = _xml.with_http_charset(body, content_type)
    try:
        feed_kind = FeedKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in FeedKind)
        raise FeedFormatError(f"unknown feed kind {kind!r}: use one of {choices}") from None
    result = PARSERS[feed_kind](body, url)
    kept = []
    for record in result.papers:
        reason = fit_to_storage(record)
        if reason:
            result.skipped.append(reason)
        else:
            kept.append(record)
    result.papers = kept
    return result


def detect_kind(url: str, body: bytes | None = None) -> FeedKind:
    """The feed kind for ``url``: by host and path first, then by sniffing ``body``.

    Without a body, an unknown URL is taken as generic RSS/Atom. With a body that
    is not a feed at all, raises :class:`FeedFormatError` saying what it is.
    """
    by_url = _kind_from_url(url)
    if by_url is not None:
        return by_url
    if body is None:
        return FeedKind.RSS
    return _kind_from_body(body)


def _kind_from_url(url: str) -> FeedKind | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    path = parts.path
    arxiv = host == "arxiv.org" or host.endswith(".arxiv.org")
    if host == "rss.arxiv.org" or (arxiv and path.startswith("/rss/")):
        return FeedKind.ARXIV_RSS
    if arxiv and path.startswith("/api/query"):
        return FeedKind.ARXIV_API
    if host in ("huggingface.co", "www.huggingface.co") and path.startswith(
        ("/api/daily_papers", "/api/papers")
    ):
        return FeedKind.HF_DAILY
    return None


_OPENSEARCH = b"http://a9.com/-/spec/opensearch/1.1/"
_ARXIV_NS = b"http://arxiv.org/schemas/atom"
_ANNOUNCE_RE = re.compile(rb"<(?:[\w-]+:)?announce_type\b")
_ARXIV_RSS_LINK = b"rss.arxiv.org/"
_SNIFF = 64 * 1024


def _kind_from_body(body: bytes) -> FeedKind:
    head = body[:_SNIFF].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise FeedFormatError("empty response body, expected a feed")
    if head[:1] in (b"[", b"{"):
        data = hf_daily.load_json(body)
        if isinstance(data, list | dict):
            # Its parser accepts one paper as an object, and words an error object
            # (with the server's message) better than we could here.
            return FeedKind.HF_DAILY
        raise FeedFormatError("JSON, but not a list of papers")
    if _xml.looks_like_html(head):
        raise FeedFormatError("got an HTML page, not a feed")
    if _ARXIV_NS in head and _OPENSEARCH in head and b"<feed" in head:
        return FeedKind.ARXIV_API
    # arXiv's listing (RSS, or the same as Atom) declares its namespace even on an empty
    # weekend listing, and links to rss.arxiv.org.
    if (
        _ARXIV_NS in head
        and (b"<rss" in head or b"<feed" in head)
        and (_ANNOUNCE_RE.search(head) or _ARXIV_RSS_LINK in head)
    ):
        return FeedKind.ARXIV_RSS
    if head[:1] != b"<":
        raise FeedFormatError(f"not a feed: the body starts with {body[:20]!r}")
    return FeedKind.RSS
