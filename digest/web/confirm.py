"""Confirm a subscription (double opt-in): GET shows a button, POST activates."""

from __future__ import annotations

import logging

from flask import Response, url_for
from sqlalchemy.orm import Session

from digest import subscriptions
from digest.config import Settings
from digest.errors import TokenError
from digest.pipeline.notify import SimpleEmail, send_simple
from digest.store import db
from digest.store.models import Subscriber, SubscriberStatus
from digest.subscriptions.mailtokens import unsubscribe_address
from digest.web.pages import (
    app_settings,
    load_for_confirm,
    message_page,
    render_page,
    subscription,
    token_error,
)
from digest.web.wording import describe_next, describe_schedule

log = logging.getLogger(__name__)


@subscription.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    """The double opt-in page: one button; the address is active only after the POST."""
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_for_confirm(session, token)
        except TokenError as exc:
            return token_error(exc, "confirm")
        refused = _cannot_confirm(subscriber)
        if refused is not None:
            return refused
        if subscriber.status is not SubscriberStatus.PENDING:
            return _confirmed(session, subscriber, already=True)
        return render_page(
            "confirm.html",
            done=False,
            email=subscriber.email,
            topics=[subscriptions.shown_label(t.label, t.query) for t in subscriber.topics],
            schedule=describe_schedule(subscriber),
            action=url_for("subscription.confirm_post", token=token),
        )


@subscription.post("/confirm/<token>")
def confirm_post(token: str) -> Response:
    settings = app_settings()
    welcome: SimpleEmail | None = None
    with db.session_scope(settings) as session:
        try:
            subscriber = load_for_confirm(session, token, lock=True)
        except TokenError as exc:
            return token_error(exc, "confirm")
        refused = _cannot_confirm(subscriber)
        if refused is not None:
            return refused
        was_pending = subscriber.status is SubscriberStatus.PENDING
        if was_pending:
            try:
                subscriber = subscriptions.confirm(session, token, settings=settings)
            except TokenError as exc:  # links rotated between our read and confirm's
                return token_error(exc, "confirm")
            welcome = _welcome(settings, session, subscriber)
        response = _confirmed(session, subscriber, already=not was_pending)
    # Only after the commit: a welcome email for a confirmation that rolled back
    # would be a lie, and a slow mail server must not hold the transaction open.
    if welcome is not None:
        _send_welcome(settings, welcome)
    return response


def _cannot_confirm(subscriber: Subscriber) -> Response | None:
    # An old confirmation email must not re-subscribe someone who has since left.
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return message_page(
            "This address has unsubscribed",
            f"{subscriber.email} unsubscribed after this confirmation link was sent, "
            "so the link cannot subscribe it again.",
            "To get digests again, sign up again; you will get a new confirmation email.",
            status=409,
        )
    if subscriber.status is SubscriberStatus.BOUNCED:
        return message_page(
            "We cannot deliver to this address",
            f"Mail to {subscriber.email} failed permanently, so the subscription is stopped.",
            "If the address works again, sign up again to get a new confirmation email.",
            status=409,
        )
    return None


def _confirmed(session: Session, subscriber: Subscriber, *, already: bool) -> Response:
    paused = subscriber.status is SubscriberStatus.PAUSED
    manage_token = subscriptions.make_token(app_settings(), subscriber, "manage", session=session)
    return render_page(
        "confirm.html",
        done=True,
        email=subscriber.email,
        already=already,
        paused=paused,
        schedule=describe_schedule(subscriber),
        first=None if paused else describe_next(subscriber),
        manage_url=url_for("subscription.manage_page", token=manage_token),
    )


def _welcome(settings: Settings, session: Session, subscriber: Subscriber) -> SimpleEmail:
    """The welcome email, read while the session is open (it is sent after the commit)."""
    return SimpleEmail(
        kind="welcome",
        to=subscriber.email,
        message_key=f"welcome-{subscriber.id}-{subscriber.token_version}",
        unsubscribe_url=subscriptions.unsubscribe_url(settings, subscriber, session=session),
        # With mail in, the List-Unsubscribe mailto unsubscribes this reader (RFC 8058 §5).
        unsubscribe_mailto=(
            unsubscribe_address(settings, session, subscriber) if settings.inbound else None
        ),
        values={
            "frequency": subscriber.frequency.value,
            "topics": [subscriptions.shown_label(t.label, t.query) for t in subscriber.topics],
            "manage_url": subscriptions.manage_url(settings, subscriber, session=session),
        },
    )


def _send_welcome(settings: Settings, email: SimpleEmail) -> None:
    try:
        send_simple(settings, email)
    except Exception:
        # The reader is confirmed either way; a lost welcome is logged, never shown.
        log.exception("welcome email (%s) failed", email.message_key)
