"""The feeds table: add, find, rename, remove and check feeds (``digest feeds …``).

Every feed has a *source tag* (``Feed.source``): the name its papers carry in
``Paper.sources`` and that ``source:`` topics match. arXiv feeds are ``arxiv``,
Hugging Face ``hf``; a generic feed gets a slug of its name when it is added
(``Nature Machine Intelligence`` → ``nature-machine-intelligence``), unique among the
feeds, so two feeds on one host are two sources. Feeds stored before tags existed
kept their host, the tag their papers already carried. A tag never changes when a
feed is renamed (saved topics would silently stop matching);
:func:`rename_feed` with ``source=`` changes it on the feed, its stored papers and
the saved topics that name it, together.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.text import clean_text
from digest.errors import FeedError
from digest.ingest.http import fetch
from digest.ingest.sources import detect_kind, parse_feed
from digest.ingest.sources.base import FeedParseResult
from digest.ingest.sources.ids import host_of
from digest.store.models import Feed, FeedKind, Paper, Topic

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
    given = validate_feed_name(name) if name is not None else None
    feed_kind = None if kind == "auto" else _feed_kind(kind)
    title = None
    if settings is not None:
        feed_kind, parsed = check_feed(settings, url, feed_kind.value if feed_kind else "auto")
        title = parsed.title
    feed_kind = feed_kind or detect_kind(url)
    feed_name = given or default_feed_name(url, feed_kind, title)
    feed = Feed(
        url=url,
        kind=feed_kind,
        name=feed_name,
        source=new_source_tag(session, feed_kind, feed_name, url),
    )
    session.add(feed)
    session.flush()
    return feed


MAX_NAME_LENGTH = 200
MAX_TAG_LENGTH = 40
#: The tags of the built-in kinds: what their parsers put on every paper.
BUILT_IN_TAGS = {FeedKind.ARXIV_RSS: "arxiv", FeedKind.ARXIV_API: "arxiv", FeedKind.HF_DAILY: "hf"}
_TAG_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?\Z")


def validate_feed_name(name: str) -> str:
    """A display name as stored: one line of clean text, or :class:`FeedError`."""
    text = clean_text(name)
    if not text:
        raise FeedError("the feed name is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise FeedError(f"the feed name is {len(text)} characters long; the limit is 200")
    return text


def slug(text: str) -> str:
    """``Nature Machine Intelligence`` → ``nature-machine-intelligence`` (ASCII, ≤ 40)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", folded)
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > MAX_TAG_LENGTH:
            break
        out = candidate
    return out or (words[0][:MAX_TAG_LENGTH] if words else "")


def new_source_tag(session: Session, kind: FeedKind, name: str, url: str) -> str:
    """The tag for a feed being added: built-in for arXiv and Hugging Face; for a generic
    feed a slug of its name (else its host), made unique among the feeds' tags."""
    if kind in BUILT_IN_TAGS:
        return BUILT_IN_TAGS[kind]
    host = host_of(url)
    # No title and no name given: the host, the tag such papers always had.
    plain_host = host if _TAG_RE.match(host) else slug(host)
    base = slug(name) if name and name != host else plain_host
    base = base or slug(host) or "feed"
    if base in BUILT_IN_TAGS.values():
        base = f"{base}-feed"
    taken = set(
        session.scalars(select(Feed.source).where(Feed.source.like(f"{_like_escape(base)}%", "\\")))
    )
    tag, n = base, 1
    while tag in taken:
        n += 1
        tag = f"{base}-{n}"
    return tag


def validate_source_tag(tag: str) -> str:
    value = tag.strip().lower()
    if not _TAG_RE.match(value):
        raise FeedError(
            f"the source tag {tag!r} is not usable in a topic: use lower-case letters, digits, "
            "'.', '_' and '-' (at most 100, starting and ending with a letter or digit), "
            "e.g. lab-blog"
        )
    return value


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _feed_kind(kind: str) -> FeedKind:
    try:
        return FeedKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in FeedKind)
        raise FeedError(f"unknown feed kind {kind!r}: use auto, {choices}") from None


def default_feed_name(url: str, kind: FeedKind, title: str | None = None) -> str:
    """The name a feed gets when none is given: arXiv's listing and the Hugging Face
    feed by what they are, a generic feed by its own ``<title>``, else its host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if kind is FeedKind.ARXIV_RSS and tail:
        return f"arXiv {tail}"
    if kind is FeedKind.HF_DAILY:
        return "Hugging Face Daily Papers"
    if kind is FeedKind.ARXIV_API:
        return "arXiv API query"
    named = clean_text(title or "", MAX_NAME_LENGTH)
    return named or (host or url)[:MAX_NAME_LENGTH]


@dataclass
class Renamed:
    feed: Feed
    old_name: str
    old_source: str
    papers_retagged: int = 0
    topics_rewritten: int = 0
    shared_with: list[int] | None = None  # other feeds that carry the old tag too


def rename_feed(
    session: Session, feed_id: int, name: str | None = None, source: str | None = None
) -> Renamed:
    """Change a feed's display name and/or its source tag (flushed, not committed).

    A new tag is put on the stored papers that carry the old one and into the saved
    topics that say ``source:OLD``, in the same transaction, so every topic goes on
    matching the same papers. When another feed carries the old tag too, its papers
    cannot be told apart from this feed's: they and the topics keep the old tag, and
    only papers this feed brings from now on carry the new one.
    """
    feed = get_feed(session, feed_id)
    result = Renamed(feed, feed.name, feed.source)
    if name is not None:
        feed.name = validate_feed_name(name)
    if source is None or validate_source_tag(source) == feed.source:
        session.flush()
        return result
    tag = validate_source_tag(source)
    if feed.kind in BUILT_IN_TAGS:
        raise FeedError(
            f"feed {feed.id} is {feed.kind.value}: its papers are source:{feed.source} "
            "whatever feed brings them, so its tag cannot change"
        )
    if tag in BUILT_IN_TAGS.values():
        raise FeedError(f"source:{tag} is the built-in tag of arXiv or Hugging Face papers")
    other = session.scalar(select(Feed.id).where(Feed.source == tag, Feed.id != feed.id))
    if other is not None:
        raise FeedError(f"feed {other} already has the source tag {tag}")
    shared = list(
        session.scalars(select(Feed.id).where(Feed.source == feed.source, Feed.id != feed.id))
    )
    old = feed.source
    feed.source = tag
    if shared:
        result.shared_with = shared
    else:
        result.papers_retagged = _retag_papers(session, old, tag)
        result.topics_rewritten = _rewrite_topics(session, old, tag)
    session.flush()
    return result


_CHUNK = 1000


def _retag_papers(session: Session, old: str, new: str) -> int:
    # JSON arrays have no portable "contains": a LIKE on their text narrows it down (in
    # chunks of ids, so a large table is never held in memory), the list is checked here.
    pattern = f'%"{_like_escape(old)}"%'
    count, last = 0, 0
    while True:
        rows = session.execute(
            select(Paper.id, Paper.sources)
            .where(Paper.id > last, cast(Paper.sources, String).like(pattern, "\\"))
            .order_by(Paper.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return count
        last = rows[-1][0]
        changes = [
            {"id": pid, "sources": list(dict.fromkeys(new if s == old else s for s in sources))}
            for pid, sources in rows
            if old in (sources or [])
        ]
        if changes:
            session.execute(update(Paper), changes)
            count += len(changes)


def _rewrite_topics(session: Session, old: str, new: str) -> int:
    """``source:OLD`` → ``source:NEW`` in saved topics (``src:`` and quotes too)."""
    # Labels are the reader's words and stay, except one that is the query itself.
    pattern = re.compile(r'(?i)(?<![\w:])(?:source|src):("?)' + re.escape(old) + r"\1(?=$|[\s()])")
    count = 0
    candidates = session.scalars(
        select(Topic).where(func.lower(Topic.query).like(f"%:%{_like_escape(old)}%", "\\"))
    )
    for topic in candidates:
        rewritten = pattern.sub(f"source:{new}", topic.query)
        if rewritten != topic.query:
            if topic.label == topic.query:
                topic.label = rewritten
            topic.query = rewritten
            count += 1
    return count


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
