"""The short transactional emails (confirm, welcome, new link): queue, then send.

Why a queue (the ``notifications`` table) rather than sending from the request:

* **Only what was committed is announced.** A form writes its row in its own
  transaction (:func:`queue`), so a confirmation goes out if and only if the pending
  subscription it confirms exists, and a welcome only for a committed confirmation.
* **The configured transport, wherever it runs.** Without a broker (the embedded
  default) :func:`deliver` sends at once, in-process, after the commit. With a broker
  the web process never talks SMTP: beat's ``digest.notify`` task (``workers/``) calls
  :func:`send_pending` every few seconds, so a slow mail server holds up a worker,
  never a page, and no code here knows about Celery.
* **Retries without duplicates.** Rows are claimed with one conditional UPDATE, so
  the request, beat and ``digest run`` never send the same row twice; a transient
  failure is retried with backoff, a permanent one is recorded (and an address the
  server says does not exist is suppressed, as for digests).

Each email is built when it is sent, with fresh links, and skipped if it no longer
makes sense (a confirmation for someone who has confirmed meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, selectinload

from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver import (
    Outcome,
    Transport,
    backoff_seconds,
    build_message,
    make_message_id,
    transport_from_settings,
)
from digest.errors import DigestError
from digest.render.emails import render_simple
from digest.store import db
from digest.store.models import (
    Notification,
    NotificationStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.store.suppression import is_suppressed, suppress
from digest.subscriptions.mailtokens import unsubscribe_address
from digest.subscriptions.tokens import confirm_url, manage_url, unsubscribe_url
from digest.subscriptions.validate import shown_label

log = logging.getLogger(__name__)

KINDS = ("confirm", "welcome", "link")
#: A claimed row not finished by then (a killed process) is free to claim again.
CLAIM = timedelta(minutes=5)
#: Transient failures before an email is given up.
MAX_ATTEMPTS = 8
#: An email that could not go out for this long is no longer worth sending.
GIVE_UP_AFTER = timedelta(days=2)
#: Rows per claim in :func:`send_pending`.
BATCH = 100


@dataclass(frozen=True)
class SimpleEmail:
    """One transactional email, with everything read while the session was open.

    ``message_key`` fixes the Message-ID: the same key (one per row) never mails the
    same email twice as two.
    """

    kind: str  # confirm | welcome | link | unsubscribed
    to: str
    message_key: str
    unsubscribe_url: str | None = None  # None only for someone not (yet) subscribed
    values: dict[str, Any] = field(default_factory=dict)
    #: The List-Unsubscribe mailto (``digest inbound``'s signed address), if any.
    unsubscribe_mailto: str | None = None


# --- queueing (inside the caller's transaction) ---------------------------------------------


def queue(
    session: Session, kind: str, subscriber: Subscriber, now: datetime | None = None
) -> Notification:
    """Record that ``kind`` is to be mailed to ``subscriber`` (flushed, not committed)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; use one of {KINDS}")
    now = now or utcnow()
    row = Notification(
        kind=kind,
        subscriber_id=subscriber.id,
        address=subscriber.email,
        status=NotificationStatus.PENDING,
        created_at=now,
        due_at=now,
        attempts=0,
    )
    session.add(row)
    session.flush()
    return row


def deliver(settings: Settings, ids: Sequence[int]) -> dict[int, NotificationStatus]:
    """After the commit: send these rows now, unless a broker's workers send them.

    Returns each row's status when sent here; empty when they are left to beat.
    """
    if not ids or settings.uses_broker:
        return {}
    return send_now(settings, ids)


# --- sending -----------------------------------------------------------------------------


def send_pending(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Send every row that is due (new, to retry, or claimed by a process that died):
    beat's ``digest.notify`` task and ``digest run``. Counts by outcome."""
    now = now or utcnow()
    db.ensure_schema(settings)
    totals: dict[str, int] = {}
    while True:
        with db.session_scope(settings) as session:
            ids = list(
                session.scalars(
                    select(Notification.id)
                    .where(_claimable(now))
                    .order_by(Notification.due_at, Notification.id)
                    .limit(BATCH)
                )
            )
        if not ids:
            return totals
        done = send_now(settings, ids, now)
        for status in done.values():
            totals[status.value] = totals.get(status.value, 0) + 1
        if len(ids) < BATCH or not done:
            return totals


def _claimable(now: datetime) -> Any:
    waiting = (NotificationStatus.PENDING, NotificationStatus.RETRY, NotificationStatus.SENDING)
    return and_(Notification.status.in_(waiting), Notification.due_at <= now)


def send_now(
    settings: Settings, ids: Sequence[int], now: datetime | None = None
) -> dict[int, NotificationStatus]:
    """Claim these rows and send the ones claimed, over one transport; each outcome is
    committed as soon as the server answers."""
    now = now or utcnow()
    factory = db.session_factory(settings)
    with factory() as session:
        claimed = _claim(session, ids, now)
        session.commit()
        if not claimed:
            return {}
        rows = list(
            session.scalars(
                select(Notification)
                .where(Notification.id.in_(claimed))
                .options(selectinload(Notification.subscriber).selectinload(Subscriber.topics))
                .order_by(Notification.id)
            )
        )
        results: dict[int, NotificationStatus] = {}
        with transport_from_settings(settings) as transport:
            for row in rows:
                results[row.id] = _send_one(settings, session, transport, row, now)
                session.commit()
        return results


def _claim(session: Session, ids: Sequence[int], now: datetime) -> list[int]:
    free = or_(
        Notification.status.in_((NotificationStatus.PENDING, NotificationStatus.RETRY)),
        and_(Notification.status == NotificationStatus.SENDING, Notification.due_at <= now),
    )
    result = session.execute(
        update(Notification)
        .where(Notification.id.in_(list(ids)), free, Notification.due_at <= now)
        .values(
            status=NotificationStatus.SENDING,
            due_at=now + CLAIM,
            attempts=Notification.attempts + 1,
        )
        .returning(Notification.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in result]


def _send_one(
    settings: Settings,
    session: Session,
    transport: Transport,
    row: Notification,
    now: datetime,
) -> NotificationStatus:
    subscriber = row.subscriber
    stale = _stale(row, subscriber, now)
    if stale:
        return _finish(row, NotificationStatus.SKIPPED, stale)
    # A confirmation may reach an erased address: the reader is coming back themselves.
    if is_suppressed(session, row.address, erased=row.kind != "confirm"):
        return _finish(row, NotificationStatus.SKIPPED, "the address is suppressed")
    try:
        email = build_email(settings, session, row, subscriber)
        rendered = render_simple(
            email.kind, settings, email.to, unsubscribe_url=email.unsubscribe_url, **email.values
        )
        row.message_id = row.message_id or make_message_id(email.message_key, settings.from_domain)
        built = build_message(
            settings,
            rendered,
            to=email.to,
            message_id=row.message_id,
            unsubscribe_url=email.unsubscribe_url,
            unsubscribe_mailto=email.unsubscribe_mailto,
        )
    except DigestError as exc:
        log.warning("%s email %s cannot be built: %s", row.kind, row.id, exc)
        return _finish(row, NotificationStatus.FAILED, f"cannot build the message: {exc}")
    db.end_transaction(session)  # no lock held while the mail server answers
    outcome = transport.send(built.envelope_from, built.to, built.data, built.message_id)
    return _record(session, row, subscriber, outcome, now)


def _stale(row: Notification, subscriber: Subscriber, now: datetime) -> str | None:
    if now - row.created_at > GIVE_UP_AFTER:
        return f"not sent within {GIVE_UP_AFTER.days} days: given up"
    status = subscriber.status
    if row.kind == "confirm" and status is not SubscriberStatus.PENDING:
        return f"no confirmation needed any more: the subscriber is {status.value}"
    if row.kind == "welcome" and status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        return f"no welcome any more: the subscriber is {status.value}"
    if status is SubscriberStatus.BOUNCED:
        return "the address bounced"
    return None


def build_email(
    settings: Settings, session: Session, row: Notification, subscriber: Subscriber
) -> SimpleEmail:
    """The email a row stands for, with links made now."""
    key = f"{row.kind}-{row.id}-{int(row.created_at.timestamp())}"
    topics = [shown_label(t.label, t.query) for t in subscriber.topics]
    leaving = (
        None
        if subscriber.status in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED)
        else unsubscribe_url(settings, subscriber, session=session)
    )
    if row.kind == "confirm":
        values: dict[str, Any] = {
            "topics": topics,
            "confirm_url": confirm_url(settings, subscriber, session=session),
        }
    elif row.kind == "welcome":
        values = {
            "frequency": subscriber.frequency.value,
            "topics": topics,
            "manage_url": manage_url(settings, subscriber, session=session),
        }
    else:
        values = {
            "topics": topics,
            "status": subscriber.status.value,
            "manage_url": manage_url(settings, subscriber, session=session),
        }
    mailto = (
        unsubscribe_address(settings, session, subscriber)
        if leaving is not None and settings.inbound
        else None
    )
    return SimpleEmail(row.kind, row.address, key, leaving, values, mailto)


def _record(
    session: Session,
    row: Notification,
    subscriber: Subscriber,
    outcome: Outcome,
    now: datetime,
) -> NotificationStatus:
    if outcome.ok:
        row.sent_at = utcnow()
        return _finish(row, NotificationStatus.SENT, outcome.describe())
    log.warning("%s email %s not sent: %s", row.kind, row.id, outcome.describe())
    if outcome.status == "unknown":
        # The server may have it (RFC 1047): a resend would be a duplicate.
        return _finish(row, NotificationStatus.FAILED, outcome.describe())
    if outcome.status == "permanent":
        if outcome.should_suppress:
            suppress(session, row.address, outcome.message, outcome.code)
            subscriber.status = SubscriberStatus.BOUNCED
        return _finish(row, NotificationStatus.FAILED, outcome.describe())
    if row.attempts >= MAX_ATTEMPTS:
        return _finish(
            row, NotificationStatus.FAILED, f"gave up after {row.attempts}: {outcome.describe()}"
        )
    row.status = NotificationStatus.RETRY
    row.due_at = now + timedelta(seconds=backoff_seconds(row.attempts))
    row.outcome = outcome.describe()
    return NotificationStatus.RETRY


def _finish(row: Notification, status: NotificationStatus, outcome: str) -> NotificationStatus:
    row.status = status
    row.outcome = outcome[:2000]
    return status


__all__ = [
    "KINDS",
    "SimpleEmail",
    "build_email",
    "deliver",
    "queue",
    "send_now",
    "send_pending",
]
