"""Leaving, all of it or one topic: unsubscribe (a harmless GET page and the RFC 8058
one-click POST) and the per-topic stop links under each topic of a digest."""

from __future__ import annotations

import logging

from flask import Response, request, url_for
from sqlalchemy.orm import Session

from digest import subscriptions
from digest.errors import SubscriptionError, TokenError
from digest.store import db
from digest.store.models import Subscriber, SubscriberStatus, Topic
from digest.web.pages import (
    app_settings,
    load_subscriber,
    manage_path,
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
                f"{subscriber.email} gets no digests from {app_settings().brand}.",
                links_=[("Your subscription page", manage_path(session, subscriber))],
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
    further mail, and the page itself already confirms it. No cookie either: the
    page it answers has no form.
    """
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "unsubscribe")
        except TokenError as exc:
            return token_error(exc, "unsubscribe")
        changed = subscriptions.unsubscribe(session, subscriber)
        email, subscriber_id = subscriber.email, subscriber.id
        manage = manage_path(session, subscriber)
    if changed:
        log.info(
            "subscriber %s unsubscribed (%s)",
            subscriber_id,
            "one-click" if one_click else "web page",
        )
    return message_page(
        "You are unsubscribed",
        f"{email} will get no more digests from {app_settings().brand}.",
        "Unsubscribed by mistake? Your subscription page lets you subscribe again "
        "(we ask you to confirm by email), download your data or delete it all.",
        links_=[("Your subscription page", manage)],
    )


# --- stop one topic ------------------------------------------------------------------------


def _topic(subscriber: Subscriber, topic_id: int) -> Topic | None:
    return next((t for t in subscriber.topics if t.id == topic_id), None)


def _gone(session: Session, subscriber: Subscriber) -> Response:
    return message_page(
        "This topic is already gone",
        "It was removed earlier: your digest no longer has it.",
        links_=[("Your subscription page", manage_path(session, subscriber))],
    )


@subscription.get("/stop/<token>/<int:topic_id>")
def stop_page(token: str, topic_id: int) -> Response:
    """One button to remove one topic; the GET changes nothing."""
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "stop")
        except TokenError as exc:
            return token_error(exc, "stop")
        topic = _topic(subscriber, topic_id)
        if topic is None:
            return _gone(session, subscriber)
        others = [t.label for t in subscriber.topics if t.id != topic_id]
        return render_page(
            "stop.html",
            done=False,
            email=subscriber.email,
            label=topic.label,
            query=topic.query,
            others=others,
            action=url_for("subscription.stop_post", token=token, topic_id=topic_id),
            manage_url=manage_path(session, subscriber),
        )


@subscription.post("/stop/<token>/<int:topic_id>")
def stop_post(token: str, topic_id: int) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "stop", lock=True)
        except TokenError as exc:
            return token_error(exc, "stop")
        topic = _topic(subscriber, topic_id)
        if topic is None:
            return _gone(session, subscriber)
        label = topic.label
        try:
            subscriptions.remove_topic(session, subscriber, topic_id)
        except SubscriptionError:  # removed by another click between our read and now
            return _gone(session, subscriber)
        log.info("subscriber %s stopped topic %s", subscriber.id, topic_id)
        others = [t.label for t in subscriber.topics]
        unsubscribe_token = subscriptions.make_token(
            app_settings(), subscriber, "unsubscribe", session=session
        )
        return render_page(
            "stop.html",
            done=True,
            email=subscriber.email,
            label=label,
            others=others,
            active=subscriber.status is not SubscriberStatus.UNSUBSCRIBED,
            unsubscribe_action=url_for("subscription.unsubscribe_post", token=unsubscribe_token),
            manage_url=manage_path(session, subscriber),
        )


__all__ = ["stop_page", "stop_post", "unsubscribe_page", "unsubscribe_post"]
