"""The web's way in: a subscribe form, a "send me a new link" form, a confirmation click.

Rules that shape every function here:

* **Nobody learns who is subscribed.** :func:`request_signup` and :func:`request_link`
  accept any valid address and decide alone what, if anything, to mail: a
  confirmation for a new or pending address, a "you are already subscribed" note with
  the manage link for an active one, nothing for a bounced or suppressed one. The page
  that answers is the same whatever happened; only the owner of the mailbox can tell.
* **Strangers cannot flood a mailbox.** A form can mail an address at most once per
  :data:`SIGNUP_EMAIL_INTERVAL` (and the new-link form once per
  :data:`LINK_EMAIL_INTERVAL`), claimed with one conditional UPDATE of
  ``subscribers.notified_at`` inside the form's transaction: two submissions at once
  can never both send.
* **Consent is recorded where it is given.** Each form and click writes a
  :class:`~digest.store.models.Consent` row (time, IP, user agent, the version of the
  words shown); the confirmation click also becomes the subscriber's consent record.
* **Coming back is opt-in again.** An unsubscribed reader who subscribes again is
  pending until they confirm from a fresh email, however they asked.

The functions flush, never commit; the caller queues the email they name
(``pipeline.notify``) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from digest.core.clock import utcnow
from digest.core.text import clean_text
from digest.store import suppression
from digest.store.models import Consent, ConsentAction, Subscriber, SubscriberStatus, Topic
from digest.subscriptions.lifecycle import add_subscriber, resubscribe
from digest.subscriptions.validate import SignupRequest, default_label, normalise_email

#: A subscribe form mails one address at most this often.
SIGNUP_EMAIL_INTERVAL = timedelta(hours=24)
#: The "send me a new link" form (someone whose link expired) may mail a little more often.
LINK_EMAIL_INTERVAL = timedelta(minutes=10)


@dataclass(frozen=True)
class ConsentContext:
    """Where a request came from, for the consent record."""

    ip: str | None
    user_agent: str | None
    wording: str  # the version of the words next to the button (web.wording)
    source: str = "web"

    def detail(self, what: str) -> str:
        agent = clean_text(self.user_agent or "unknown", 300)
        return f"{what} on the web (wording {self.wording}); user agent: {agent}"


@dataclass(frozen=True)
class Decision:
    """What a form led to: the email to queue (``confirm``, ``link`` or None) and why."""

    email: str | None
    subscriber: Subscriber | None
    reason: str  # for the log only, never for the page


def record_consent(
    session: Session,
    subscriber: Subscriber,
    action: ConsentAction,
    context: ConsentContext,
    now: datetime | None = None,
) -> Consent:
    row = Consent(
        subscriber_id=subscriber.id,
        action=action,
        at=now or utcnow(),
        source=context.source,
        ip=(context.ip or None) and context.ip[:64],
        user_agent=(context.user_agent or None) and clean_text(context.user_agent, 500),
        wording=context.wording[:40],
    )
    session.add(row)
    session.flush()
    return row


def claim_notice(
    session: Session, subscriber: Subscriber, now: datetime, interval: timedelta
) -> bool:
    """True if this request may mail ``subscriber`` (and it is now marked as mailed).

    One UPDATE … WHERE notified_at is old: PostgreSQL re-checks the condition on the
    row it waited for, SQLite serialises writers, so of two requests at once exactly one
    gets True.
    """
    result = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber.id,
            or_(Subscriber.notified_at.is_(None), Subscriber.notified_at <= now - interval),
        )
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    claimed = bool(getattr(result, "rowcount", 0))
    if claimed:
        set_committed_value(subscriber, "notified_at", now)
    return claimed


def _find(session: Session, key: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()


def _apply(session: Session, subscriber: Subscriber, request: SignupRequest, now: datetime) -> None:
    """A pending signup asked again: the latest form's settings and topics replace the
    earlier ones (nothing has been sent yet; the confirmation page shows what is kept)."""
    subscriber.timezone = request.timezone
    subscriber.frequency = request.frequency
    subscriber.weekday = request.weekday
    subscriber.send_hour = request.hour
    subscriber.max_papers = request.max_papers
    subscriber.topics = [
        Topic(label=default_label(q), query=q, created_at=now) for q in request.topics
    ]
    session.flush()


def request_signup(
    session: Session,
    request: SignupRequest,
    context: ConsentContext,
    now: datetime | None = None,
) -> Decision:
    """A valid subscribe form: store what it asks for where that is safe, and decide the
    email (see the module's rules). The caller answers the same page whatever this says."""
    now = now or utcnow()
    existing = _find(session, request.email_key)
    if existing is None:
        if suppression.is_suppressed(session, request.email_key, erased=False):
            return Decision(None, None, "suppressed")
        subscriber = add_subscriber(
            session,
            request.email,
            topics=request.topics,
            timezone=request.timezone,
            frequency=request.frequency,
            weekday=request.weekday,
            hour=request.hour,
            max_papers=request.max_papers,
            consent_source=context.source,
            consent_ip=context.ip,
            consent_detail=context.detail("signed up"),
            now=now,
            allow_erased=True,
        )
        subscriber.notified_at = now
        session.flush()
        record_consent(session, subscriber, ConsentAction.SIGNUP, context, now)
        return Decision("confirm", subscriber, "new")
    status = existing.status
    if status is SubscriberStatus.BOUNCED or suppression.is_suppressed(
        session, existing.email_key, erased=False
    ):
        return Decision(None, existing, f"{status.value}, suppressed")
    if status is SubscriberStatus.PENDING:
        _apply(session, existing, request, now)
        record_consent(session, existing, ConsentAction.SIGNUP, context, now)
        if not claim_notice(session, existing, now, SIGNUP_EMAIL_INTERVAL):
            return Decision(None, existing, "pending, mailed in the last 24 hours")
        return Decision("confirm", existing, "pending")
    if status is SubscriberStatus.UNSUBSCRIBED:
        # Claimed first: coming back retires every earlier link, so without an email to
        # click it would leave the reader stranded. Throttled, nothing changes at all.
        if not claim_notice(session, existing, now, SIGNUP_EMAIL_INTERVAL):
            return Decision(None, existing, "unsubscribed, mailed in the last 24 hours")
        existing.topics = []
        resubscribe(
            session,
            existing,
            consent_source=context.source,
            consent_ip=context.ip,
            consent_detail=context.detail("asked to subscribe again"),
            topics=request.topics,
            timezone=request.timezone,
            frequency=request.frequency,
            weekday=request.weekday,
            hour=request.hour,
            max_papers=request.max_papers,
            now=now,
            allow_erased=True,
        )
        record_consent(session, existing, ConsentAction.RESUBSCRIBE, context, now)
        return Decision("confirm", existing, "unsubscribed")
    # Active or paused: nothing changes (a stranger must not edit someone's digest); the
    # owner hears that they are subscribed already, with the link to change things.
    if not claim_notice(session, existing, now, SIGNUP_EMAIL_INTERVAL):
        return Decision(None, existing, f"{status.value}, mailed in the last 24 hours")
    return Decision("link", existing, status.value)


def request_link(session: Session, email: str, now: datetime | None = None) -> Decision:
    """Someone's link expired and they typed their address: a fresh confirmation for a
    pending subscription, a fresh manage link otherwise, nothing for unknown, bounced or
    suppressed addresses. ``email`` must already be valid."""
    now = now or utcnow()
    _, key = normalise_email(email)
    subscriber = _find(session, key)
    if subscriber is None:
        return Decision(None, None, "unknown")
    if subscriber.status is SubscriberStatus.BOUNCED or suppression.is_suppressed(session, key):
        return Decision(None, subscriber, "bounced or suppressed")
    if not claim_notice(session, subscriber, now, LINK_EMAIL_INTERVAL):
        return Decision(None, subscriber, "mailed in the last 10 minutes")
    kind = "confirm" if subscriber.status is SubscriberStatus.PENDING else "link"
    return Decision(kind, subscriber, subscriber.status.value)


def confirm_subscription(
    session: Session, subscriber: Subscriber, context: ConsentContext, now: datetime | None = None
) -> bool:
    """The confirmation button: pending → active, and this click is the consent record.

    True if it changed anything (a second click does not). Lifts an erasure
    fingerprint: the reader came back themselves, through their own mailbox.
    """
    if subscriber.status is not SubscriberStatus.PENDING:
        return False
    now = now or utcnow()
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    subscriber.consent_source = context.source
    subscriber.consent_at = now
    subscriber.consent_ip = (context.ip or None) and context.ip[:64]
    earlier = subscriber.consent_detail
    detail = context.detail("confirmed")
    subscriber.consent_detail = f"{detail}; before: {earlier}" if earlier else detail
    suppression.lift_erasure(session, subscriber.email_key)
    session.flush()
    record_consent(session, subscriber, ConsentAction.CONFIRM, context, now)
    return True


def resubscribe_from_manage(
    session: Session, subscriber: Subscriber, context: ConsentContext, now: datetime | None = None
) -> Decision:
    """The manage page's "subscribe again": pending, and a fresh confirmation to click.

    A manage link can be forwarded with a digest; it must not restart mail by itself.
    The confirmation always goes out: subscribing again retires every earlier link, so
    holding it back would leave the reader nothing to click. Repeating it takes an
    unsubscription in between each time, and the web rate-limits the button per IP.
    """
    now = now or utcnow()
    if subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        return Decision(None, subscriber, f"not unsubscribed ({subscriber.status.value})")
    if suppression.is_suppressed(session, subscriber.email_key):
        return Decision(None, subscriber, "suppressed")
    resubscribe(
        session,
        subscriber,
        consent_source=context.source,
        consent_ip=context.ip,
        consent_detail=context.detail("asked to subscribe again from the manage page"),
        now=now,
    )
    record_consent(session, subscriber, ConsentAction.RESUBSCRIBE, context, now)
    subscriber.notified_at = now
    session.flush()
    return Decision("confirm", subscriber, "resubscribed")


__all__ = [
    "LINK_EMAIL_INTERVAL",
    "SIGNUP_EMAIL_INTERVAL",
    "ConsentContext",
    "Decision",
    "claim_notice",
    "confirm_subscription",
    "record_consent",
    "request_link",
    "request_signup",
    "resubscribe_from_manage",
]
