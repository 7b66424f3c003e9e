"""Build one subscriber's digest for a batch, send it, and record the outcome.

A :class:`DigestBuilder` serves one claimed batch: it fixes each digest's paper
window (once: a retry shows the same papers, the next digest starts where this
one ends) and loads the batch's papers in one query; once that is committed,
:meth:`~DigestBuilder.match` indexes each distinct window once and evaluates
every reader; then per digest it only renders, sends and records.
"""

from __future__ import annotations

import bisect
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest import match as matching
from digest import render
from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.schedule import zone
from digest.deliver import Outcome, Transport, backoff_seconds, build_message, make_message_id
from digest.match import semantic
from digest.store.dialect import lock_paper_stamps
from digest.store.models import (
    Digest,
    DigestStatus,
    Frequency,
    Paper,
    Subscriber,
    SubscriberStatus,
)
from digest.store.suppression import suppress, suppressed_keys
from digest.subscriptions.tokens import manage_url, unsubscribe_url
from digest.subscriptions.validate import shown_label

log = logging.getLogger(__name__)

#: After this many transient failures a digest is given up (about two days of backoff).
MAX_ATTEMPTS = 12


class DigestBuilder:
    def __init__(
        self, settings: Settings, session: Session, digests: Sequence[Digest], now: datetime
    ) -> None:
        self.settings = settings
        self.session = session
        self.now = now
        self.superseded: set[int] = set()
        lock_paper_stamps(session, exclusive=True)  # held until the caller commits
        self._fix_windows(digests)
        digests = [d for d in digests if d.id not in self.superseded]
        starts = [d.window_start for d in digests if d.window_start is not None]
        ends = [d.window_end for d in digests if d.window_end is not None]
        self.papers: list[Paper] = []
        if starts and ends:
            self.papers = list(
                session.scalars(
                    select(Paper)
                    .where(Paper.first_seen_at > min(starts), Paper.first_seen_at <= max(ends))
                    .order_by(Paper.first_seen_at, Paper.id)
                )
            )
        # Detached with their loaded state, so a cached index built from them survives
        # this session's rollbacks and closing (see cached_index).
        for paper in self.papers:
            session.expunge(paper)
        self._seen = [p.first_seen_at for p in self.papers]
        self.suppressed = suppressed_keys(session, [d.subscriber.email_key for d in digests])
        self.arrived: dict[int, int] = {}
        self.matched: dict[int, list[matching.MatchedPaper]] = {}
        self.beyond_limit: dict[int, int] = {}  # matched, but over the reader's maximum
        self._digests = digests

    # -- windows --------------------------------------------------------------------

    def _fix_windows(self, digests: Sequence[Digest]) -> None:
        """Give each digest without one its paper window, once.

        A window starts where the reader's last fixed window ended (first digest: one
        period back from its due time) and ends now. A digest that was never built
        while a newer one for the same reader exists (a day missed while the broker
        was down) is superseded: the newer window starts at the same place and carries
        its papers, so no paper is shown twice and none is skipped.
        """
        open_ = [d for d in digests if d.window_end is None]
        if not open_:
            return
        readers = {d.subscriber_id for d in open_}
        previous = dict(
            self.session.execute(
                select(Digest.subscriber_id, func.max(Digest.window_end))
                .where(Digest.subscriber_id.in_(readers), Digest.window_end.is_not(None))
                .group_by(Digest.subscriber_id)
            ).all()
        )
        dues = {
            reader: (first, last)
            for reader, first, last in self.session.execute(
                select(Digest.subscriber_id, func.min(Digest.due_at), func.max(Digest.due_at))
                .where(Digest.subscriber_id.in_(readers))
                .group_by(Digest.subscriber_id)
            )
        }
        for digest in open_:
            first_due, last_due = dues[digest.subscriber_id]
            if digest.due_at < last_due:
                self.superseded.add(digest.id)
                continue
            length = timedelta(days=7 if digest.subscriber.frequency is Frequency.WEEKLY else 1)
            digest.window_start = previous.get(digest.subscriber_id) or first_due - length
            digest.window_end = max(self.now, digest.window_start)
            # Fixed and committed with the window, before any send: a resend after a crash
            # carries the same Message-ID, and the random part keeps it unique across
            # installations and rebuilt databases that reuse row ids.
            digest.message_id = digest.message_id or make_message_id(
                f"{digest.id}.{secrets.token_hex(5)}", self.settings.from_domain
            )

    def _window_bounds(self, digest: Digest) -> tuple[int, int]:
        assert digest.window_start is not None and digest.window_end is not None
        lo = bisect.bisect_right(self._seen, digest.window_start)
        hi = bisect.bisect_right(self._seen, digest.window_end)
        return lo, hi

    def match(self) -> None:
        """Index each distinct window's papers once; evaluate every reader against it.

        Called after the windows are committed (and the stamp lock released): indexing
        can take seconds and must not hold up ingest.
        """
        by_window: dict[tuple[int, int], list[Digest]] = {}
        for digest in self._digests:
            by_window.setdefault(self._window_bounds(digest), []).append(digest)
        like_lookup = semantic_lookup(self.session)
        for (lo, hi), group in by_window.items():
            index = cached_index(self.papers[lo:hi], like_lookup)
            self.matched.update(
                matching.match_many(
                    index,
                    ((d.id, topic_specs(d.subscriber), d.subscriber.max_papers) for d in group),
                )
            )
            for digest in group:
                if digest.paper_ids:
                    # A retry, or an admin's resend, carries the papers that went out (or
                    # were about to) the first time, in that order, not whatever matches
                    # by now (the reader may have changed their topics since).
                    self.matched[digest.id] = _as_recorded(
                        digest.paper_ids, self.matched[digest.id], self.papers[lo:hi]
                    )
                self.arrived[digest.id] = hi - lo
                everything = matching.count_matches(index, topic_specs(digest.subscriber))
                self.beyond_limit[digest.id] = everything - len(self.matched[digest.id])

    # -- one digest -----------------------------------------------------------------

    def send_one(self, digest: Digest, transport: Transport) -> DigestStatus:
        subscriber = digest.subscriber
        if digest.id in self.superseded:
            return self._finish(
                digest, DigestStatus.SKIPPED, "superseded: a later digest carries its papers"
            )
        if subscriber.status is not SubscriberStatus.ACTIVE:
            return self._finish(digest, DigestStatus.SKIPPED, f"subscriber is {subscriber.status}")
        if subscriber.email_key in self.suppressed:
            return self._finish(digest, DigestStatus.FAILED, "address is on the suppression list")
        matched, arrived = self.matched[digest.id], self.arrived[digest.id]
        if not matched and not self.settings.quiet_day_note:
            return self._finish(
                digest,
                DigestStatus.SKIPPED,
                "no new papers" if arrived == 0 else f"none of {arrived} new papers matched",
            )
        # Set with the window; a row whose window was fixed by an older version gets the
        # old deterministic form, which is just as stable across resends.
        digest.message_id = digest.message_id or make_message_id(
            digest.id, self.settings.from_domain
        )
        try:
            unsubscribe = unsubscribe_url(self.settings, subscriber, session=self.session)
            rendered = render.render_digest(self._context(digest, matched, arrived, unsubscribe))
            # Only what the email carries counts as shown (a huge day may not all fit).
            digest.paper_ids = [m.paper.id for m in matched[: rendered.shown]]
            message = build_message(
                self.settings,
                rendered,
                to=subscriber.email,
                message_id=digest.message_id,
                unsubscribe_url=unsubscribe,
                date=self.now,
            )
        except SQLAlchemyError:
            raise  # the database, not this digest: the task retries, the lease covers the rest
        except Exception as exc:
            # A digest we cannot build (an address our messages cannot carry, a template
            # tripping on odd data) fails alone: raised, it would leave the rest of its
            # batch leased, and fail again with them at every sweep, forever.
            log.exception("digest %s for %s cannot be built", digest.id, subscriber.email)
            return self._finish(digest, DigestStatus.FAILED, f"cannot build the message: {exc}")
        outcome = transport.send(
            message.envelope_from,
            message.to,
            message.data,
            message.message_id,
            attempt=digest.attempts,
        )
        return self._record(digest, outcome)

    def _context(
        self,
        digest: Digest,
        matched: list[matching.MatchedPaper],
        arrived: int,
        unsubscribe: str,
    ) -> render.DigestContext:
        subscriber = digest.subscriber
        return render.DigestContext(
            settings=self.settings,
            email=subscriber.email,
            timezone=subscriber.timezone,
            date=digest.due_at.astimezone(zone(subscriber.timezone)).date(),
            papers=matched,
            topic_labels=[shown_label(t.label, t.query) for t in subscriber.topics],
            manage_url=manage_url(self.settings, subscriber, session=self.session),
            unsubscribe_url=unsubscribe,
            papers_arrived=arrived,
            weekly=subscriber.frequency is Frequency.WEEKLY,
            beyond_limit=self.beyond_limit.get(digest.id, 0),
        )

    def _record(self, digest: Digest, outcome: Outcome) -> DigestStatus:
        digest.smtp_code = outcome.code
        # The server's own words (or the outbox file), for `digest digests show`.
        digest.reply = outcome.message[:1000] or None
        if outcome.status == "sent":
            digest.sent_at = utcnow()
            return self._finish(digest, DigestStatus.SENT, None)
        if outcome.status == "unknown":
            # The server may have the message: never resent automatically (RFC 1047).
            return self._finish(digest, DigestStatus.UNKNOWN, outcome.describe())
        if outcome.status == "permanent" and outcome.should_suppress:
            suppress(self.session, digest.subscriber.email, outcome.message, outcome.code)
            digest.subscriber.status = SubscriberStatus.BOUNCED
            return self._finish(digest, DigestStatus.FAILED, outcome.describe())
        # Transient failures, and permanent ones that are about us rather than the address
        # (a relay refusing our MAIL FROM, a policy block): keep the digest and retry, so an
        # operator fixing the relay loses nobody's morning; the breaker sees them too.
        if digest.attempts >= MAX_ATTEMPTS:
            return self._finish(
                digest,
                DigestStatus.FAILED,
                f"gave up after {digest.attempts} attempts: {outcome.describe()}",
            )
        digest.status = DigestStatus.RETRY
        # Backoff counted from our clock (which `digest run --at` may have moved), not the
        # transport's, so a replayed day retries inside that day.
        digest.retry_at = self.now + timedelta(seconds=backoff_seconds(digest.attempts))
        digest.error = outcome.describe()
        digest.lease_owner = digest.lease_until = None
        return DigestStatus.RETRY

    def defer(self, digest: Digest, now: datetime, reason: str) -> None:
        digest.status = DigestStatus.RETRY
        digest.retry_at = now + timedelta(minutes=5)
        digest.error = reason
        digest.attempts -= 1  # not attempted: it should not count towards giving up
        digest.lease_owner = digest.lease_until = None

    def _finish(self, digest: Digest, status: DigestStatus, error: str | None) -> DigestStatus:
        digest.status = status
        digest.error = error
        digest.finished_at = utcnow()
        digest.lease_owner = digest.lease_until = None
        return status


def _as_recorded(
    paper_ids: Sequence[int], matched: Sequence[matching.MatchedPaper], window: Sequence[Paper]
) -> list[matching.MatchedPaper]:
    """The recorded papers in their recorded order; one no topic matches any more keeps
    its place with a line saying why it is there."""
    now = {m.paper.id: m for m in matched}
    papers = {p.id: p for p in window}
    out = []
    for paper_id in paper_ids:
        if paper_id in now:
            out.append(now[paper_id])
        elif paper_id in papers:
            hit = matching.TopicHit(None, "", 0.0, [], "in this digest when it was first sent")
            out.append(matching.MatchedPaper(papers[paper_id], 0.0, [hit]))  # type: ignore[arg-type]
    return out


#: Indexes of recent windows, kept across batches: a worker sends hundreds of batches
#: over the same day's papers, and indexing 3,000 papers costs seconds.
_INDEX_CACHE: OrderedDict[tuple[object, ...], matching.PaperIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 4


def cached_index(
    papers: Sequence[Paper], like_lookup: Callable[[str], bytes | None] | None
) -> matching.PaperIndex:
    """The index of these papers, reused while none of them changed.

    Ingest bumps ``last_seen_at`` on every sighting, so the newest ``last_seen_at``
    in the key notices fresh upvotes or a new version. An index holding a
    session-bound ``like:`` lookup is not shared between sessions.
    """
    if like_lookup is not None or not papers:
        return matching.build_index(papers, like_lookup=like_lookup)
    key = (
        len(papers),
        papers[0].id,
        papers[-1].id,
        sum(p.id for p in papers),
        max(p.last_seen_at for p in papers),
    )
    index = _INDEX_CACHE.get(key)
    if index is None:
        index = _INDEX_CACHE[key] = matching.build_index(papers)
        while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    _INDEX_CACHE.move_to_end(key)
    return index


def topic_specs(subscriber: Subscriber) -> list[matching.TopicSpec]:
    return [
        matching.TopicSpec(id=t.id, label=shown_label(t.label, t.query), query=t.query)
        for t in subscriber.topics
    ]


def semantic_lookup(session: Session) -> Callable[[str], bytes | None] | None:
    """Resolves `like:ID` topics to stored embeddings, when semantic matching is installed."""
    return semantic.like_lookup(session) if semantic.available() else None
