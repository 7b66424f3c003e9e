"""Unsubscribe: a harmless GET page, and the RFC 8058 one-click POST."""

from __future__ import annotations

import logging

from flask import Response, request, url_for

from digest import subscriptions
from digest.errors import TokenError
from digest.store import db
from digest.store.models import SubscriberStatus
from digest.web.pages import (
    app_settings,
    load_subscriber,
    message_page,
    render_page,
    subscription,
    token_error,
)

log = logging.getLogger(__name__)


@subscription.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Response:
    """A page with one button: scanners that fetch the link change nothing."""
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "unsubscribe")
        except TokenError as exc:
            return token_error(exc, "unsubscribe")
        if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
            return message_page(
                "You are already unsubscribed",
                f"{subscriber.email} gets no digests from Paper Digest.",
            )
        return render_page(
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
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "unsubscribe")
        except TokenError as exc:
            return token_error(exc, "unsubscribe")
        changed = subscriptions.unsubscribe(session, subscriber)
        email, subscriber_id = subscriber.email, subscriber.id
    if changed:
        log.info(
            "subscriber %s unsubscribed (%s)",
            subscriber_id,
            "one-click" if one_click else "web page",
        )
    return message_page(
        "You are unsubscribed",
        f"{email} will get no more digests from Paper Digest.",
        "Unsubscribed by mistake? You can sign up again at any time.",
    )
