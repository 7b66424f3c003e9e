"""The one builder of a digest: a reader and a paper window in, the email and its bytes out.

Everything that shows a digest goes through :class:`DigestBuilder`: a send batch
(``pipeline.send``), ``digest preview`` and ``digest send-test``
(``pipeline.preview``), and any page that shows a digest. So what a preview shows
is what a run sends: the same window rule (:func:`window_for`), the same papers,
the same matching (``like:`` topics resolved, the count of papers beyond the
reader's maximum), the same rendering and the same message builder. Only the
ledger (``pipeline.ledger``) is the send path's own: it fixes windows on the rows
and records outcomes.

A builder serves one batch: it takes the papers of every window (read once per
process and kept, with recent indexes, across batches while a stamp says they are
unchanged: a worker sends hundreds of batches over the same day's papers), indexes
each distinct window once, and matches every reader against it; then each digest
is only rendered and built.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import match as matching
from digest import render
from digest.config import Settings
from digest.core import caches
from digest.core.clock import utcnow
from digest.core.schedule import current_period, zone
from digest.deliver import BuiltMessage, build_message
from digest.match import semantic, steer
from digest.render import HTML_BUDGET, RenderedEmail
from digest.store.models import Digest, Frequency, Paper, Subscriber
from digest.subscriptions.links import stop_url, view_url
from digest.subscriptions.mailtokens import reply_address, unsubscribe_address, verp_address
from digest.subscriptions.tokens import manage_url, unsubscribe_url
from digest.subscriptions.validate import shown_label

# --- windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The papers a digest covers: first seen in ``(start, end]``."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class DigestSpec:
    """What one digest is built for: its reader, its period (the ledger's key: its
    reply and bounce addresses name it), its window, and when it was due (the
    digest's date, in the reader's zone)."""

    subscriber: Subscriber
    period: str
    window: Window
    due_at: datetime
    #: The papers a ledger row recorded as shown, in their order: a retry or an admin's
    #: resend carries exactly those, not whatever matches by now (the reader may have
    #: changed their topics since).
    recorded: tuple[int, ...] = ()
    #: With ``recorded``: also the other papers that matched (a page showing the digest
    #: with what the email left out for size).
    with_unsent: bool = False


def period_length(subscriber: Subscriber) -> timedelta:
    return timedelta(days=7 if subscriber.frequency is Frequency.WEEKLY else 1)


def window_for(
    previous_end: datetime | None, first_due: datetime, length: timedelta, now: datetime
) -> Window:
    """The window rule: from where the reader's last window ended (their first digest:
    one period before its due time) to now. Every digest is built with this rule."""
    start = previous_end or first_due - length
    return Window(start, max(now, start))


def next_digest(session: Session, subscriber: Subscriber, now: datetime) -> DigestSpec:
    """The digest the reader would get if it were built at ``now``.

    Reads the ledger, writes nothing: the window and due time a row planned now
    would be given when a worker fixes it (``pipeline.ledger``).
    """
    previous_end, first_due = session.execute(
        select(func.max(Digest.window_end), func.min(Digest.due_at)).where(
            Digest.subscriber_id == subscriber.id
        )
    ).one()
    period = current_period(
        now, subscriber.timezone, subscriber.frequency, subscriber.send_hour, subscriber.weekday
    )
    due = period.due_at
    first = min(first_due, due) if first_due is not None else due
    window = window_for(previous_end, first, period_length(subscriber), now)
    return DigestSpec(subscriber, period.label, window, due)


# --- what a built digest is ----------------------------------------------------------------


@dataclass
class ComposedDigest:
    """One reader's digest, matched and rendered (``message`` is None if nothing is sent)."""

    subscriber: Subscriber
    window: Window
    matched: list[matching.MatchedPaper]  # best first, at most the reader's maximum
    arrived: int  # papers new in the window
    beyond_limit: int  # matched, but over the reader's maximum
    rendered: RenderedEmail | None = None
    message: BuiltMessage | None = None
    #: Why no email would go out (nothing new, nothing matched), or None.
    skip_reason: str | None = None

    @property
    def shown_ids(self) -> list[int]:
        """The papers the email carries (a huge day may not all fit), in the order of the
        numbers on its cards: a reply's "more 3" is ``shown_ids[2]``."""
        if self.rendered is None:
            return []
        return [pid for pid in self.rendered.paper_ids if pid is not None]


# --- the builder ---------------------------------------------------------------------------


class DigestBuilder:
    """Builds the digests of one batch: ``specs`` maps a key (a ledger row id, or any
    key a preview picks) to what that digest is built for."""

    def __init__(
        self,
        settings: Settings,
        session: Session,
        now: datetime,
        specs: dict[Hashable, DigestSpec],
        max_papers: int | None = None,
    ) -> None:
        self.settings = settings
        # The browser view raises every reader's maximum: it shows what the email had no
        # room for, the papers past the reader's limit included.
        self.max_papers = max_papers
        self.session = session
        self.now = now
        # Links are stamped with the digest's moment, but never with a future one (a
        # replayed day, the demo): a link issued in the future is refused as forged.
        self.links_issued_at = min(now, utcnow())
        self.specs = specs
        # Replies to earlier digests ("mute author X", "less 3"): applied to the ranking.
        self.steering = steer.load_steering(
            session, [spec.subscriber.id for spec in specs.values()]
        )
        self.papers: list[Paper] = []
        if specs:
            start = min(spec.window.start for spec in specs.values())
            end = max(spec.window.end for spec in specs.values())
            # Read once per process while none of them changed (see IndexCache): a
            # worker's hundreds of batches cover the same day's papers.
            self.papers = INDEXES.window_papers(session, settings.database_url, start, end)
        self._seen = [p.first_seen_at for p in self.papers]
        self.arrived: dict[Hashable, int] = {}
        self.matched: dict[Hashable, list[matching.MatchedPaper]] = {}
        self.beyond_limit: dict[Hashable, int] = {}

    def _bounds(self, window: Window) -> tuple[int, int]:
        lo = bisect.bisect_right(self._seen, window.start)
        hi = bisect.bisect_right(self._seen, window.end)
        return lo, hi

    def match(self) -> None:
        """Index each distinct window's papers once; evaluate every reader against it.

        The send path calls this after its windows are committed (and the stamp lock
        released): indexing can take seconds and must not hold up ingest.
        """
        by_window: dict[tuple[int, int], list[Hashable]] = {}
        for key, spec in self.specs.items():
            by_window.setdefault(self._bounds(spec.window), []).append(key)
        like_lookup = semantic.like_lookup(self.session) if semantic.available() else None
        url = self.settings.database_url
        for (lo, hi), keys in by_window.items():
            index = INDEXES.get(url, self.papers[lo:hi], like_lookup)
            readers = [(key, self.specs[key].subscriber) for key in keys]
            self.matched.update(
                steer.match_many_steered(
                    index,
                    (
                        (key, topic_specs(s), self.max_papers or s.max_papers, self._steer(s))
                        for key, s in readers
                    ),
                )
            )
            for key, subscriber in readers:
                spec = self.specs[key]
                if spec.recorded:
                    self.matched[key] = as_recorded(spec, self.matched[key], self.papers[lo:hi])
                self.arrived[key] = hi - lo
                everything = steer.count_steered(
                    index, topic_specs(subscriber), self._steer(subscriber)
                )
                self.beyond_limit[key] = everything - len(self.matched[key])

    def _steer(self, subscriber: Subscriber) -> steer.Steering:
        return self.steering.get(subscriber.id, steer.NO_STEERING)

    def compose(
        self,
        key: Hashable,
        message_id: str,
        *,
        html_budget: int | None = HTML_BUDGET,
        subject_prefix: str = "",
        always: bool = False,
    ) -> ComposedDigest:
        """Render and build one digest (after :meth:`match`).

        ``html_budget=None`` lays out every matched paper as a card (a page in the
        browser has no size limit); the email keeps to Gmail's. A digest with nothing
        to say gets a ``skip_reason`` and no message, unless ``always`` (a preview
        shows what the quiet-day note would be).
        """
        spec = self.specs[key]
        subscriber = spec.subscriber
        composed = ComposedDigest(
            subscriber=subscriber,
            window=spec.window,
            matched=self.matched[key],
            arrived=self.arrived[key],
            beyond_limit=self.beyond_limit.get(key, 0),
        )
        if not composed.matched and not self.settings.quiet_day_note:
            composed.skip_reason = (
                "no new papers"
                if composed.arrived == 0
                else f"none of {composed.arrived} new papers matched"
            )
            if not always:
                return composed
        issued = self.links_issued_at
        unsubscribe = unsubscribe_url(self.settings, subscriber, session=self.session, now=issued)
        context = render.DigestContext(
            settings=self.settings,
            email=subscriber.email,
            timezone=subscriber.timezone,
            date=spec.due_at.astimezone(zone(subscriber.timezone)).date(),
            papers=composed.matched,
            topic_labels=[shown_label(t.label, t.query) for t in subscriber.topics],
            manage_url=manage_url(self.settings, subscriber, session=self.session, now=issued),
            unsubscribe_url=unsubscribe,
            papers_arrived=composed.arrived,
            weekly=subscriber.frequency is Frequency.WEEKLY,
            beyond_limit=composed.beyond_limit,
            web_url=view_url(
                self.settings, subscriber, spec.due_at, session=self.session, now=issued
            ),
            stop_url=stop_url(self.settings, subscriber, session=self.session, now=issued),
        )
        rendered = render.render_digest(context, html_budget=html_budget)
        if subject_prefix:
            rendered = RenderedEmail(
                subject_prefix + rendered.subject, rendered.html, rendered.text, rendered.shown
            )
        composed.rendered = rendered
        inbound = self.settings.inbound
        session = self.session
        composed.message = build_message(
            self.settings,
            rendered,
            to=subscriber.email,
            message_id=message_id,
            unsubscribe_url=unsubscribe,
            date=self.now,
            # Mail in: bounces name this digest, a reply steers it, mail unsubscribes.
            return_path=(
                verp_address(self.settings, session, subscriber, spec.period) if inbound else None
            ),
            reply_to=(
                reply_address(self.settings, session, subscriber, spec.period) if inbound else None
            ),
            unsubscribe_mailto=(
                unsubscribe_address(self.settings, session, subscriber) if inbound else None
            ),
        )
        return composed


def topic_specs(subscriber: Subscriber) -> list[matching.TopicSpec]:
    return [
        matching.TopicSpec(id=t.id, label=shown_label(t.label, t.query), query=t.query)
        for t in subscriber.topics
    ]


def as_recorded(
    spec: DigestSpec, matched: Sequence[matching.MatchedPaper], window: Sequence[Paper]
) -> list[matching.MatchedPaper]:
    """The recorded papers in their recorded order; one no topic matches any more keeps
    its place with a line saying why it is there. ``with_unsent`` adds the rest."""
    now = {m.paper.id: m for m in matched}
    papers = {p.id: p for p in window}
    out = []
    for paper_id in spec.recorded:
        if paper_id in now:
            out.append(now[paper_id])
        elif paper_id in papers:
            hit = matching.TopicHit(None, "", 0.0, [], "in this digest when it was first sent")
            out.append(matching.MatchedPaper(papers[paper_id], 0.0, [hit]))
    if spec.with_unsent:
        shown = set(spec.recorded)
        out += [m for m in matched if m.paper.id not in shown]
    return out


# --- indexes kept across batches -----------------------------------------------------------


class IndexCache:
    """Indexes of recent windows, per database, reused while none of their papers changed.

    Ingest bumps ``last_seen_at`` on every sighting, so the newest ``last_seen_at``
    in the key notices fresh upvotes or a new version. An index holding a
    session-bound ``like:`` lookup is never shared between sessions.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._indexes: OrderedDict[tuple[object, ...], matching.PaperIndex] = OrderedDict()
        caches.register(self._indexes.clear)
        # Per database: the papers last read, from when, sorted by first sighting.
        self._papers: dict[str, tuple[datetime, list[Paper], list[datetime]]] = {}
        caches.register(self._papers.clear)

    def window_papers(
        self, session: Session, database_url: str, start: datetime, end: datetime
    ) -> list[Paper]:
        """The papers first seen in ``(start, end]``, oldest first, detached.

        Read from the database once per process, then reused while a one-row stamp of
        the window (how many, the newest id, the newest ``last_seen_at``: ingest bumps
        it on every sighting) says none was added or changed. Re-reading 2,000 papers
        as ORM objects for every batch of 100 cost 1.3 ms per digest. They are read a
        period early, so the next batches' slightly earlier windows are covered too.
        """
        stamp = session.execute(
            select(func.count(), func.max(Paper.id), func.max(Paper.last_seen_at)).where(
                Paper.first_seen_at > start, Paper.first_seen_at <= end
            )
        ).one()
        cached = self._papers.get(database_url)
        if cached is not None and cached[0] <= start:
            papers = _between(cached[1], cached[2], start, end)
            if tuple(stamp) == _stamp(papers):
                return papers
        since = start - timedelta(days=1)
        loaded = list(
            session.scalars(
                select(Paper)
                .where(Paper.first_seen_at > since, Paper.first_seen_at <= end)
                .order_by(Paper.first_seen_at, Paper.id)
            )
        )
        # Detached with their loaded state, so they (and indexes built from them)
        # survive this session's rollbacks and closing.
        for paper in loaded:
            session.expunge(paper)
        seen = [p.first_seen_at for p in loaded]
        self._papers[database_url] = (since, loaded, seen)
        return _between(loaded, seen, start, end)

    def get(
        self,
        database_url: str,
        papers: Sequence[Paper],
        like_lookup: Callable[[str], bytes | None] | None,
    ) -> matching.PaperIndex:
        if like_lookup is not None or not papers:
            return matching.build_index(papers, like_lookup=like_lookup)
        key = (
            database_url,
            len(papers),
            papers[0].id,
            papers[-1].id,
            sum(p.id for p in papers),
            max(p.last_seen_at for p in papers),
        )
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = matching.build_index(papers)
            while len(self._indexes) > self.size:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(key)
        return index


def _between(
    papers: list[Paper], seen: list[datetime], start: datetime, end: datetime
) -> list[Paper]:
    return papers[bisect.bisect_right(seen, start) : bisect.bisect_right(seen, end)]


def _stamp(papers: Sequence[Paper]) -> tuple[object, ...]:
    if not papers:
        return (0, None, None)
    return (len(papers), max(p.id for p in papers), max(p.last_seen_at for p in papers))


INDEXES = IndexCache()


__all__ = [
    "INDEXES",
    "ComposedDigest",
    "DigestBuilder",
    "DigestSpec",
    "IndexCache",
    "Window",
    "next_digest",
    "period_length",
    "topic_specs",
    "window_for",
]
