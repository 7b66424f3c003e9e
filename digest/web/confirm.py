"""Confirm a subscription (double opt-in): GET shows a button, POST activates.

The POST is the reader's consent: it is recorded (time, IP, user agent, the version of
the words next to the button) and the welcome email, with the manage link, is queued
in the same transaction and sent after the commit.
"""

from __future__ import annotations

import logging

from flask import Response, url_for
from sqlalchemy.orm import Session

from digest.errors import TokenError
from digest.pipeline import notify
from digest.store import db
from digest.store.models import Subscriber, SubscriberStatus
from digest.subscriptions.signup import confirm_subscription
from digest.subscriptions.validate import shown_label
from digest.web import wording
from digest.web.pages import (
    app_settings,
    consent_context,
    deliver,
    load_for_confirm,
    manage_path,
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
            topics=[shown_label(t.label, t.query) for t in subscriber.topics],
            schedule=describe_schedule(subscriber),
            consent_text=wording.CONSENT_TEXT,
            action=url_for("subscription.confirm_post", token=token),
        )


@subscription.post("/confirm/<token>")
def confirm_post(token: str) -> Response:
    ids: list[int] = []
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_for_confirm(session, token, lock=True)
        except TokenError as exc:
            return token_error(exc, "confirm")
        refused = _cannot_confirm(subscriber)
        if refused is not None:
            return refused
        changed = confirm_subscription(session, subscriber, consent_context())
        if changed:
            ids.append(notify.queue(session, "welcome", subscriber).id)
            log.info("subscriber %s confirmed on the web", subscriber.id)
        response = _confirmed(session, subscriber, already=not changed)
    # Only after the commit: a welcome email for a confirmation that rolled back would
    # be a lie, and a slow mail server must not hold the transaction open.
    deliver(ids)
    return response


def _cannot_confirm(subscriber: Subscriber) -> Response | None:
    # An old confirmation email must not re-subscribe someone who has since left.
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return message_page(
            "This address has unsubscribed",
            f"{subscriber.email} unsubscribed after this confirmation link was sent, "
            "so the link cannot subscribe it again.",
            "To get digests again, subscribe again on the front page: you will get a new "
            "confirmation email.",
            status=409,
            links_=[("Subscribe again", url_for("front.index") + "#subscribe")],
        )
    if subscriber.status is SubscriberStatus.BOUNCED:
        return message_page(
            "We cannot deliver to this address",
            f"Mail to {subscriber.email} failed permanently, so the subscription is stopped.",
            "If the address works again, reply to one of our emails to let us know.",
            status=409,
        )
    return None


def _confirmed(session: Session, subscriber: Subscriber, *, already: bool) -> Response:
    paused = subscriber.status is SubscriberStatus.PAUSED
    return render_page(
        "confirm.html",
        done=True,
        email=subscriber.email,
        already=already,
        paused=paused,
        schedule=describe_schedule(subscriber),
        first=None if paused else describe_next(subscriber),
        manage_url=manage_path(session, subscriber),
    )


__all__ = ["confirm_page", "confirm_post"]
