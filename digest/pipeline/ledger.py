"""The send path's side of a batch: fix each claimed row's window, record each outcome.

A row's window is fixed once, at its first claim, and committed with its
Message-ID before anything is sent: a retry shows the same papers with the same
Message-ID, and the next digest starts where this one ends. The builder
(``pipeline.compose``) turns the fixed rows into emails; this module decides what
happens to each row afterwards.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver import Outcome, Transport, backoff_seconds, make_message_id
from digest.pipeline.compose import (
    DigestBuilder,
    DigestSpec,
    Window,
    period_length,
    window_for,
)
from digest.store import db
from digest.store.dialect import lock_paper_stamps
from digest.store.models import Digest, DigestStatus, SubscriberStatus
from digest.store.suppression import suppress, suppressed_keys

log = logging.getLogger(__name__)

#: After this many transient failures a digest is given up (about two days of backoff).
MAX_ATTEMPTS = 12


class LedgerBatch:
    """One claimed batch of ledger rows: windows fixed, builder ready, outcomes recorded.

    Construct inside the batch's transaction (it takes the paper-stamp lock until the
    caller commits), commit, then :meth:`match`, then :meth:`send_one` per row.
    """

    def __init__(
        self, settings: Settings, session: Session, digests: Sequence[Digest], now: datetime
    ) -> None:
        self.settings = settings
        self.session = session
        self.now = now
        self.superseded: set[int] = set()
        lock_paper_stamps(session, exclusive=True)  # held until the caller commits
        self._fix_windows(digests)
        live = [d for d in digests if d.id not in self.superseded]
        self.suppressed = suppressed_keys(session, [d.subscriber.email_key for d in live])
        specs: dict[Hashable, DigestSpec] = {d.id: spec_of(d) for d in live}
        self.builder = DigestBuilder(settings, session, now, specs)

    def _fix_windows(self, digests: Sequence[Digest]) -> None:
        """Give each digest without one its paper window (:func:`window_for`), once.

        A digest that was never built while a newer one for the same reader exists (a
        day missed while the broker was down) is superseded: the newer window starts at
        the same place and carries its papers, so no paper is shown twice and none is
        skipped.
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
            window = window_for(
                previous.get(digest.subscriber_id),
                first_due,
                period_length(digest.subscriber),
                self.now,
            )
            digest.window_start, digest.window_end = window.start, window.end
            # Fixed and committed with the window, before any send: a resend after a crash
            # carries the same Message-ID, and the random part keeps it unique across
            # installations and rebuilt databases that reuse row ids.
            digest.message_id = digest.message_id or make_message_id(
                f"{digest.id}.{secrets.token_hex(5)}", self.settings.from_domain
            )

    def match(self) -> None:
        self.builder.match()

    # -- one digest ---------------------------------------------------------------------

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
        # Set with the window; a row whose window was fixed by an older version gets the
        # old deterministic form, which is just as stable across resends.
        digest.message_id = digest.message_id or make_message_id(
            digest.id, self.settings.from_domain
        )
        try:
            composed = self.builder.compose(digest.id, digest.message_id)
        except SQLAlchemyError:
            raise  # the database, not this digest: the task retries, the lease covers the rest
        except Exception as exc:
            # A digest we cannot build (an address our messages cannot carry, a template
            # tripping on odd data) fails alone: raised, it would leave the rest of its
            # batch leased, and fail again with them at every sweep, forever.
            log.exception("digest %s for %s cannot be built", digest.id, subscriber.email)
            return self._finish(digest, DigestStatus.FAILED, f"cannot build the message: {exc}")
        if composed.message is None:
            return self._finish(digest, DigestStatus.SKIPPED, composed.skip_reason)
        # Only what the email carries counts as shown (a huge day may not all fit).
        digest.paper_ids = composed.shown_ids
        message = composed.message
        # Never SQLite's database-wide lock while the mail server answers; on PostgreSQL
        # the outcomes stay in their group of DIGEST_COMMIT_EVERY.
        db.release_database_lock(self.session)
        outcome = transport.send(
            message.envelope_from,
            message.to,
            message.data,
            message.message_id,
            attempt=digest.attempts,
        )
        return self._record(digest, outcome)

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


def spec_of(digest: Digest, *, with_unsent: bool = False) -> DigestSpec:
    """What a ledger row with a fixed window is built for: if it already recorded the
    papers it carries (a retry, a resend), exactly those."""
    assert digest.window_start is not None and digest.window_end is not None
    window = Window(digest.window_start, digest.window_end)
    return DigestSpec(
        digest.subscriber,
        digest.period,
        window,
        digest.due_at,
        recorded=tuple(digest.paper_ids or ()),
        with_unsent=with_unsent,
    )


__all__ = ["MAX_ATTEMPTS", "LedgerBatch", "spec_of"]
