"""The pages behind the links in our emails: confirm, manage (read-only for now), unsubscribe.

Every link carries a signed token (:mod:`digest.subscriptions`); the token is the
whole authorisation, so nobody logs in. Two rules shape every route:

* A GET never changes anything. Link scanners, mail security gateways and
  browsers' prefetchers fetch every link in an email; if a GET unsubscribed or
  confirmed, a scanner would do it for the reader. A GET shows a page with one
  button; the button POSTs.
* ``POST /unsubscribe/<token>`` is also the RFC 8058 one-click endpoint named in
  every email's ``List-Unsubscribe`` header: a mail provider POSTs
  ``List-Unsubscribe=One-Click`` with no cookies, no CSRF token and no
  JavaScript, so the form asks for none of them (the signed token is the proof).

Each request opens its own database session; a database failure is a 503 page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, make_response, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest import db, schedule, subscriptions
from digest.config import Settings
from digest.models import Frequency, Subscriber, SubscriberStatus, utcnow
from digest.subscriptions import TokenError

log = logging.getLogger(__name__)

subscription = Blueprint("subscription", __name__)

#: Pages that name a reader's address must not be cached or indexed anywhere.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# What to do with a link that no longer works, by TokenError.kind and purpose.
_TOKEN_HINTS = {
    ("expired", "confirm"): (
        "Confirmation links work for 7 days. Sign up again to get a new link; "
        "nothing is sent to you until you confirm."
    ),
    ("superseded", "confirm"): (
        "A newer confirmation email has been sent to you since: use the link in the most "
        "recent one."
    ),
    ("superseded", "unsubscribe"): (
        "A newer email has been sent to you since: use the unsubscribe link in the most "
        "recent digest or confirmation email."
    ),
    ("superseded", "manage"): (
        "A newer email has been sent to you since: use the link in the most recent one."
    ),
    ("invalid", "confirm"): (
        "Copy the whole link from the email into your browser's address bar; some email "
        "programs break long links over two lines."
    ),
    ("invalid", "unsubscribe"): (
        "Copy the whole link from the email into your browser's address bar, or use the "
        "unsubscribe link in a more recent digest. Your mail program's own Unsubscribe "
        "button works too."
    ),
    ("invalid", "manage"): (
        "Copy the whole link from the email into your browser's address bar, or use the "
        "link in a more recent digest."
    ),
}


def _settings() -> Settings:
    from digest.web import app_settings

    return app_settings()


def _page(template: str, http_status: int = 200, **context: Any) -> Response:
    # Not named ``status``: a template variable of that name would land here.
    response = make_response(render_template(template, **context), http_status)
    response.headers.update(PRIVATE_HEADERS)
    return response


def _message(heading: str, text: str, hint: str = "", status: int = 200) -> Response:
    return _page("message.html", status, heading=heading, text=text, hint=hint)


def _token_error(exc: TokenError, purpose: str) -> Response:
    hint = _TOKEN_HINTS.get((exc.kind, purpose)) or _TOKEN_HINTS[("invalid", purpose)]
    heading = {
        "expired": "This link has expired",
        "superseded": "This link is not valid anymore",
    }.get(exc.kind, "This link is not valid")
    # str(exc) is one sentence from subscriptions ("this link has expired: ...").
    text = str(exc)
    return _message(heading, text[:1].upper() + text[1:] + ".", hint, status=400)


def _load(
    session: Session, token: str, purpose: str, *, lock: bool = False, **kwargs: Any
) -> Subscriber:
    """The subscriber a token names, or TokenError (handled by the caller).

    ``lock`` takes the row FOR UPDATE (PostgreSQL), so two clicks at once agree on
    which one changed the status.
    """
    subscriber_id = subscriptions.read_token(_settings(), token, purpose, session=session, **kwargs)
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=lock or None)
    if subscriber is None:  # deleted between read_token's check and now
        raise TokenError("this link is not valid: the subscription no longer exists")
    return subscriber


def _load_for_confirm(session: Session, token: str, *, lock: bool = False) -> Subscriber:
    """Like :func:`_load`, but an expired link of a reader who did confirm is no error.

    Someone clicking last month's confirmation link should read "already
    confirmed", not "expired"; only a still-pending subscription needs a fresh link.
    """
    try:
        return _load(session, token, "confirm", lock=lock, max_age=subscriptions.CONFIRM_MAX_AGE)
    except TokenError as exc:
        if exc.kind != "expired":
            raise
        subscriber = _load(session, token, "confirm", lock=lock)
        if subscriber.status is SubscriberStatus.PENDING:
            raise
        return subscriber


@subscription.errorhandler(SQLAlchemyError)
def _database_error(exc: SQLAlchemyError) -> Response:
    log.error("database error on %s %s: %s", request.method, request.path, exc)
    response = _message(
        "Please try again in a few minutes",
        "We cannot reach our database right now, so nothing was changed.",
        "If this keeps happening, reply to one of our emails to let us know.",
        status=503,
    )
    response.headers["Retry-After"] = "120"
    return response


# --- unsubscribe ----------------------------------------------------------------------


@subscription.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Response:
    """A page with one button: scanners that fetch the link change nothing."""
    with db.session_scope(_settings()) as session:
        try:
            subscriber = _load(session, token, "unsubscribe")
        except TokenError as exc:
            return _token_error(exc, "unsubscribe")
        if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
            return _message(
                "You are already unsubscribed",
                f"{subscriber.email} gets no digests from Paper Digest.",
            )
        return _page(
            "unsubscribe.html",
            email=subscriber.email,
            action=url_for("subscription.unsubscribe_post", token=token),
        )


@subscription.post("/unsubscribe/<token>")
def unsubscribe_post(token: str) -> Response:
    """Unsubscribe (idempotent): the page's button and the RFC 8058 one-click POST.

    No goodbye email: a provider's one-click unsubscribe promises the reader no
    further mail, and the page itself already confirms it.
    """
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    with db.session_scope(_settings()) as session:
        try:
            subscriber = _load(session, token, "unsubscribe")
        except TokenError as exc:
            return _token_error(exc, "unsubscribe")
        changed = subscriptions.unsubscribe(session, subscriber)
        email, subscriber_id = subscriber.email, subscriber.id
    if changed:
        log.info(
            "subscriber %s unsubscribed (%s)",
            subscriber_id,
            "one-click" if one_click else "web page",
        )
    return _message(
        "You are unsubscribed",
        f"{email} will get no more digests from Paper Digest.",
        "Unsubscribed by mistake? You can sign up again at any time.",
    )


# --- confirm --------------------------------------------------------------------------


@subscription.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    """The double opt-in page: one button; the address is active only after the POST."""
    with db.session_scope(_settings()) as session:
        try:
            subscriber = _load_for_confirm(session, token)
        except TokenError as exc:
            return _token_error(exc, "confirm")
        refused = _cannot_confirm(subscriber)
        if refused is not None:
            return refused
        if subscriber.status is not SubscriberStatus.PENDING:
            return _confirmed(session, subscriber, already=True)
        return _page(
            "confirm.html",
            done=False,
            email=subscriber.email,
            topics=[t.label for t in subscriber.topics],
            schedule=describe_schedule(subscriber),
            action=url_for("subscription.confirm_post", token=token),
        )


@subscription.post("/confirm/<token>")
def confirm_post(token: str) -> Response:
    settings = _settings()
    welcome: _Welcome | None = None
    with db.session_scope(settings) as session:
        try:
            subscriber = _load_for_confirm(session, token, lock=True)
        except TokenError as exc:
            return _token_error(exc, "confirm")
        refused = _cannot_confirm(subscriber)
        if refused is not None:
            return refused
        was_pending = subscriber.status is SubscriberStatus.PENDING
        if was_pending:
            try:
                subscriber = subscriptions.confirm(session, token, settings=settings)
            except TokenError as exc:  # links rotated between our read and confirm's
                return _token_error(exc, "confirm")
            welcome = _Welcome.prepare(settings, session, subscriber)
        page = _confirmed(session, subscriber, already=not was_pending)
    # Only after the commit: a welcome email for a confirmation that rolled back
    # would be a lie, and a slow mail server must not hold the transaction open.
    if welcome is not None:
        welcome.send(settings)
    return page


def _cannot_confirm(subscriber: Subscriber) -> Response | None:
    # An old confirmation email must not re-subscribe someone who has since left.
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return _message(
            "This address has unsubscribed",
            f"{subscriber.email} unsubscribed after this confirmation link was sent, "
            "so the link cannot subscribe it again.",
            "To get digests again, sign up again; you will get a new confirmation email.",
            status=409,
        )
    if subscriber.status is SubscriberStatus.BOUNCED:
        return _message(
            "We cannot deliver to this address",
            f"Mail to {subscriber.email} failed permanently, so the subscription is stopped.",
            "If the address works again, sign up again to get a new confirmation email.",
            status=409,
        )
    return None


def _confirmed(session: Session, subscriber: Subscriber, *, already: bool) -> Response:
    paused = subscriber.status is SubscriberStatus.PAUSED
    manage_token = subscriptions.make_token(_settings(), subscriber, "manage", session=session)
    return _page(
        "confirm.html",
        done=True,
        email=subscriber.email,
        already=already,
        paused=paused,
        schedule=describe_schedule(subscriber),
        first=None if paused else describe_next(subscriber),
        manage_url=url_for("subscription.manage_page", token=manage_token),
    )


@dataclass
class _Welcome:
    """Everything the welcome email needs, read while the session was open."""

    email: str
    subscriber_id: int
    token_version: int
    frequency: str
    topics: list[str]
    manage_url: str
    unsubscribe_url: str

    @classmethod
    def prepare(cls, settings: Settings, session: Session, subscriber: Subscriber) -> _Welcome:
        return cls(
            email=subscriber.email,
            subscriber_id=subscriber.id,
            token_version=subscriber.token_version,
            frequency=subscriber.frequency.value,
            topics=[t.label for t in subscriber.topics],
            manage_url=subscriptions.manage_url(settings, subscriber, session=session),
            unsubscribe_url=subscriptions.unsubscribe_url(settings, subscriber, session=session),
        )

    def send(self, settings: Settings) -> None:
        """Send through the configured transport; a failure is logged, never shown."""
        from digest.delivery import transport_from_settings
        from digest.message import build_message, make_message_id
        from digest.render import render_simple
        from digest.suppression import is_suppressed

        try:
            with db.session_scope(settings) as session:
                if is_suppressed(session, self.email):
                    log.info(
                        "welcome email to subscriber %s skipped: suppressed", self.subscriber_id
                    )
                    return
            rendered = render_simple(
                "welcome",
                settings,
                self.email,
                frequency=self.frequency,
                topics=self.topics,
                manage_url=self.manage_url,
                unsubscribe_url=self.unsubscribe_url,
            )
            # One id per subscription: a second confirmation never mails twice as two.
            message_id = make_message_id(
                f"welcome-{self.subscriber_id}-{self.token_version}", settings.from_domain
            )
            built = build_message(
                settings,
                rendered,
                to=self.email,
                message_id=message_id,
                unsubscribe_url=self.unsubscribe_url,
            )
            with transport_from_settings(settings) as transport:
                outcome = transport.send(
                    built.envelope_from, built.to, built.data, built.message_id
                )
        except Exception:
            log.exception("welcome email to subscriber %s failed", self.subscriber_id)
            return
        if outcome.status != "sent":
            log.warning(
                "welcome email to subscriber %s not sent: %s",
                self.subscriber_id,
                outcome.describe(),
            )


# --- manage (read-only until the topic editor arrives) ----------------------------------


@subscription.get("/manage/<token>")
def manage_page(token: str) -> Response:
    settings = _settings()
    with db.session_scope(settings) as session:
        try:
            subscriber = _load(session, token, "manage")
        except TokenError as exc:
            return _token_error(exc, "manage")
        unsubscribed = subscriber.status is SubscriberStatus.UNSUBSCRIBED
        unsubscribe_token = (
            None
            if unsubscribed
            else subscriptions.make_token(settings, subscriber, "unsubscribe", session=session)
        )
        return _page(
            "manage.html",
            email=subscriber.email,
            state=subscriber.status.value,
            status_text=describe_status(subscriber),
            schedule=describe_schedule(subscriber),
            max_papers=subscriber.max_papers,
            topics=[{"label": t.label, "query": t.query} for t in subscriber.topics],
            unsubscribe_action=(
                url_for("subscription.unsubscribe_post", token=unsubscribe_token)
                if unsubscribe_token
                else None
            ),
        )


# --- wording --------------------------------------------------------------------------


def describe_status(subscriber: Subscriber) -> str:
    return {
        SubscriberStatus.PENDING: "Waiting for you to confirm: click the link in the "
        "confirmation email. Nothing is sent until then.",
        SubscriberStatus.ACTIVE: "Active: you get digests.",
        SubscriberStatus.PAUSED: "Paused: no digests until the subscription is resumed.",
        SubscriberStatus.UNSUBSCRIBED: "Unsubscribed: you get no digests.",
        SubscriberStatus.BOUNCED: "Stopped: mail to this address failed permanently.",
    }[subscriber.status]


def describe_schedule(subscriber: Subscriber) -> str:
    """``Every day at 07:00 (Europe/Paris)`` or ``Every Monday at 07:00 (UTC)``."""
    at = f"{subscriber.send_hour:02d}:00 ({subscriber.timezone})"
    if subscriber.frequency is Frequency.WEEKLY:
        return f"Every {_WEEKDAYS[subscriber.weekday]} at {at}"
    return f"Every day at {at}"


def next_send(subscriber: Subscriber, now: datetime | None = None) -> datetime:
    """The next local send time after ``now``, as an aware datetime in the reader's zone."""
    now = now or utcnow()
    tz = schedule.zone(subscriber.timezone)
    day = now.astimezone(tz).date()
    if subscriber.frequency is Frequency.WEEKLY:
        day += timedelta(days=(subscriber.weekday - day.weekday()) % 7)
        step = timedelta(days=7)
    else:
        step = timedelta(days=1)
    due = schedule.local_due(day, subscriber.send_hour, tz)
    if due <= now:
        due = schedule.local_due(day + step, subscriber.send_hour, tz)
    return due.astimezone(tz)


def describe_next(subscriber: Subscriber, now: datetime | None = None) -> str:
    """``Monday 30 November at 07:00 (Europe/Paris)``."""
    due = next_send(subscriber, now)
    return f"{due:%A} {due.day} {due:%B} at {due:%H}:00 ({subscriber.timezone})"


__all__ = [
    "describe_next",
    "describe_schedule",
    "describe_status",
    "next_send",
    "subscription",
]
