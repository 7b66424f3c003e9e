"""The feeds table: add, find, remove and check feeds (``digest feeds …``)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import FeedError
from digest.ingest.http import fetch
from digest.ingest.sources import detect_kind, parse_feed
from digest.ingest.sources.base import FeedParseResult
from digest.store.models import Feed, FeedKind

_DEFAULT_PORTS = {"http": 80, "https": 443}


def validate_feed_url(url: str) -> str:
    """The URL in the one form we store and compare, or :class:`FeedError` saying why not.

    Scheme and host are lower-cased, a default port and a ``#fragment`` (never sent to
    the server) dropped, so one feed cannot be added twice under two spellings.
    """
    url = url.strip()
    if any(ch.isspace() for ch in url):
        raise FeedError(f"feed URL contains a space (write it as %20): {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FeedError(f"not a valid URL ({exc}): {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FeedError(f"feed URL must start with http:// or https://, got {url!r}")
    host = parts.hostname
    if not host:
        raise FeedError(f"feed URL has no host: {url!r}")
    host = f"[{host}]" if ":" in host else host
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def add_feed(
    session: Session,
    url: str,
    kind: str = "auto",
    name: str | None = None,
    *,
    settings: Settings | None = None,
) -> Feed:
    """Store a new feed. With ``settings``, fetch it once first: a URL that does not
    give a feed of the right kind is refused with the reason, and ``auto`` sniffs the
    body when the URL alone does not say what the feed is."""
    url = validate_feed_url(url)
    if session.scalar(select(Feed).where(Feed.url == url)) is not None:
        raise FeedError(f"a feed with URL {url} already exists")
    feed_kind = None if kind == "auto" else _feed_kind(kind)
    if settings is not None:
        feed_kind, _ = check_feed(settings, url, feed_kind.value if feed_kind else "auto")
    feed_kind = feed_kind or detect_kind(url)
    feed = Feed(url=url, kind=feed_kind, name=(name or default_feed_name(url, feed_kind))[:200])
    session.add(feed)
    session.flush()
    return feed


def _feed_kind(kind: str) -> FeedKind:
    try:
        return FeedKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in FeedKind)
        raise FeedError(f"unknown feed kind {kind!r}: use auto, {choices}") from None


def default_feed_name(url: str, kind: FeedKind) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if kind is FeedKind.ARXIV_RSS and tail:
        return f"arXiv {tail}"
    if kind is FeedKind.HF_DAILY:
        return "Hugging Face Daily Papers"
    if kind is FeedKind.ARXIV_API:
        return "arXiv API query"
    return host or url


def list_feeds(session: Session) -> list[Feed]:
    return list(session.scalars(select(Feed).order_by(Feed.id)))


def count_enabled(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Feed).where(Feed.enabled)) or 0


def get_feed(session: Session, feed_id: int) -> Feed:
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise FeedError(f"no feed with id {feed_id}")
    return feed


def remove_feed(session: Session, feed_id: int) -> Feed:
    """Remove a feed; the papers it brought stay (other feeds or digests may refer to them)."""
    feed = get_feed(session, feed_id)
    session.delete(feed)
    return feed


def check_feed(
    settings: Settings, url: str, kind: str = "auto"
) -> tuple[FeedKind, FeedParseResult]:
    """Fetch and parse without storing anything: what `digest feeds check` shows."""
    url = validate_feed_url(url)
    result = fetch(url, settings)
    assert result.body is not None  # no validators were sent, so never a 304
    feed_kind = detect_kind(url, result.body) if kind == "auto" else _feed_kind(kind)
    return feed_kind, parse_feed(feed_kind, result.body, url, result.content_type)
