"""Warnings for topics that can never match on this installation (never refusals).

A topic is accepted whenever the query language accepts it; these are the cases
where it is valid but matches nothing here, which a reader would only notice as
a digest that never comes:

- ``cat:cs.ZZ``: not an arXiv category (arXiv adds categories, and other feeds
  tag papers their own way, so this is a warning);
- ``source:nowhere``: no feed carries that source tag (``digest feeds list``);
- ``like:9999.99999``: no stored paper has that arXiv id;
- ``trending``, ``upvotes:``: only Hugging Face papers have upvotes, and there is
  no Hugging Face feed;
- a reader with no topics gets the trending Hugging Face papers: with no such feed,
  nothing, ever.

:class:`TopicChecker` reads the feeds once and looks ``like:`` ids up in chunks, so
an import of 100,000 rows costs a few queries, not one per topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from digest.errors import QueryError
from digest.match import categories
from digest.match import query as query_language
from digest.match.nodes import Category, Leaf, Like, Source, Trending, Upvotes, leaves
from digest.store.models import Feed, FeedKind, Paper

HF_FEED_URL = "https://huggingface.co/api/daily_papers"
#: Only these can name something this installation lacks; any other query (most of an
#: import's 100,000 rows) is not parsed again here.
_MAYBE = re.compile(r"(?i)(?:cat|category|source|src|like|upvotes):|\btrending\b")
_CHUNK = 1000


@dataclass(frozen=True)
class _FeedTag:
    feed_id: int
    enabled: bool


class TopicChecker:
    """What this installation's feeds and papers say about topics; one per command."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.tags: dict[str, list[_FeedTag]] = {}
        self.hf_feeds: list[_FeedTag] = []
        for feed_id, source, kind, enabled in session.execute(
            select(Feed.id, Feed.source, Feed.kind, Feed.enabled).order_by(Feed.id)
        ):
            self.tags.setdefault(source.lower(), []).append(_FeedTag(feed_id, enabled))
            if kind is FeedKind.HF_DAILY:
                self.hf_feeds.append(_FeedTag(feed_id, enabled))
        self._papers: dict[str, bool] = {}
        self._cache: dict[str, tuple[str, ...]] = {}

    # -- the installation ---------------------------------------------------------

    @property
    def has_trending(self) -> bool:
        """Is there an enabled Hugging Face feed (the only source of upvotes)?"""
        return any(f.enabled for f in self.hf_feeds)

    def no_topics_warning(self, readers: int = 1, email: str | None = None) -> str | None:
        """The warning for readers without topics (who get the trending Hugging Face
        papers), or None when they do get papers here."""
        if readers <= 0 or self.has_trending:
            return None
        if email is not None:
            who = f"{email} has"
        else:
            who = f"{readers} active reader{' has' if readers == 1 else 's have'}"
        return (
            f"{who} no topics, which means the trending Hugging Face papers, and there is "
            f"{self._hf_state()}: nothing will be sent; add topics, or the feed: "
            f"digest feeds add {HF_FEED_URL}"
        )

    def _hf_state(self) -> str:
        if self.hf_feeds:
            ids = ", ".join(str(f.feed_id) for f in self.hf_feeds)
            return f"no enabled Hugging Face feed (feed {ids} is disabled)"
        return "no Hugging Face feed"

    # -- one topic ----------------------------------------------------------------

    def prefetch(self, queries: Iterable[str]) -> None:
        """Look up every ``like:`` id of these queries at once (chunked)."""
        wanted = {
            leaf.paper_id
            for text in queries
            if "like:" in text.lower()
            for leaf in _positive_leaves(text)
            if isinstance(leaf, Like) and leaf.paper_id not in self._papers
        }
        self._lookup(sorted(wanted))

    def _lookup(self, ids: list[str]) -> None:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            found = set()
            for arxiv_id, key in self.session.execute(
                select(Paper.arxiv_id, Paper.key).where(
                    or_(
                        Paper.arxiv_id.in_(chunk),
                        Paper.key.in_([f"arxiv:{i}" for i in chunk]),
                    )
                )
            ):
                found.add(arxiv_id or key.removeprefix("arxiv:"))
            for paper_id in chunk:
                self._papers[paper_id] = paper_id in found

    def warnings(self, query: str) -> tuple[str, ...]:
        """One sentence per part of ``query`` that can never match here (empty: fine)."""
        if not _MAYBE.search(query):
            return ()  # plain words and phrases: nothing here can fail to exist
        cached = self._cache.get(query)
        if cached is None:
            cached = self._cache[query] = tuple(
                dict.fromkeys(w for leaf in _positive_leaves(query) if (w := self._leaf(leaf)))
            )
        return cached

    def _leaf(self, leaf: Leaf) -> str | None:
        if isinstance(leaf, Category):
            if categories.is_known(leaf.value, leaf.prefix):
                return None
            written = leaf.value + ("*" if leaf.prefix else "")
            close = categories.suggest(leaf.value) if not leaf.prefix else ()
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            return (
                f"cat:{written} is not an arXiv category{hint}: arXiv papers never have it, so "
                "it matches only papers another feed tags that way "
                "(categories: https://arxiv.org/category_taxonomy)"
            )
        if isinstance(leaf, Source):
            feeds = self.tags.get(leaf.value)
            if not feeds:
                known = ", ".join(sorted(self.tags)) or "none yet"
                return (
                    f"source:{leaf.value}: no feed has that source tag, so it matches no new "
                    f"paper (the feeds' tags: {known}; see `digest feeds list`)"
                )
            if not any(f.enabled for f in feeds):
                ids = ", ".join(str(f.feed_id) for f in feeds)
                return f"source:{leaf.value}: its feed ({ids}) is disabled, so no new papers come"
            return None
        if isinstance(leaf, Like):
            if leaf.paper_id not in self._papers:
                self._lookup([leaf.paper_id])
            if self._papers[leaf.paper_id]:
                return None
            return (
                f"like:{leaf.paper_id}: no stored paper has that arXiv id, so it matches nothing "
                "until a feed brings that paper (check the id; `digest papers list` shows "
                "what is stored)"
            )
        if isinstance(leaf, Trending | Upvotes) and not self.has_trending:
            what = "trending" if isinstance(leaf, Trending) else f"upvotes:{leaf.op}{leaf.value}"
            return (
                f"{what}: only Hugging Face papers have upvotes, and there is {self._hf_state()} "
                f"(add one: digest feeds add {HF_FEED_URL})"
            )
        return None


#: Distinct topic warnings listed in an import report; the rest are counted.
MAX_WARNINGS = 20


def import_warnings(
    session: Session,
    fresh: Sequence[tuple[int, dict[str, Any]]],
    updated: Sequence[tuple[int, dict[str, Any]]] = (),
) -> list[str]:
    """Warnings for the rows' topics that can never match here, each with its lines, and
    for new readers without topics on an installation that has nothing for them."""
    checker = TopicChecker(session)
    # An update row without a topics cell keeps the stored topics: nothing new to check.
    rows = [*fresh, *((line, v) for line, v in updated if "topics" in v["given"])]
    checker.prefetch({query for _, v in rows for query, _label in v["topics"]})
    lines: dict[str, list[int]] = {}
    for line, values in rows:
        for query, _label in values["topics"]:
            for warning in checker.warnings(query):
                lines.setdefault(warning, []).append(line)
    out = []
    for warning, at in list(lines.items())[:MAX_WARNINGS]:
        where = f"line {at[0]}" if len(at) == 1 else f"lines {', '.join(map(str, at[:3]))}"
        if len(at) > 3:
            where += f" and {len(at) - 3} more"
        out.append(f"{where}: {warning}")
    if len(lines) > MAX_WARNINGS:
        out.append(f"… and {len(lines) - MAX_WARNINGS} more kinds of topic that can never match")
    no_topics = checker.no_topics_warning(sum(1 for _, v in fresh if not v["topics"]))
    if no_topics:
        out.append(no_topics.replace("active reader", "imported reader"))
    return out


def _positive_leaves(text: str) -> list[Leaf]:
    try:
        parsed = query_language.parse(text)
    except QueryError:
        return []  # refused elsewhere, with its own message
    return leaves(parsed.root, positive_only=True)


__all__ = ["HF_FEED_URL", "MAX_WARNINGS", "TopicChecker", "import_warnings"]
