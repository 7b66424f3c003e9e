"""Manage a subscription from the link in every email."""

from __future__ import annotations

import logging

from flask import Response, url_for

from digest import subscriptions
from digest.errors import TokenError
from digest.store import db
from digest.store.models import SubscriberStatus
from digest.web.pages import (
    app_settings,
    load_subscriber,
    render_page,
    subscription,
    token_error,
)
from digest.web.wording import describe_schedule, describe_status

log = logging.getLogger(__name__)


@subscription.get("/manage/<token>")
def manage_page(token: str) -> Response:
    settings = app_settings()
    with db.session_scope(settings) as session:
        try:
            subscriber = load_subscriber(session, token, "manage")
        except TokenError as exc:
            return token_error(exc, "manage")
        unsubscribed = subscriber.status is SubscriberStatus.UNSUBSCRIBED
        unsubscribe_token = (
            None
            if unsubscribed
            else subscriptions.make_token(settings, subscriber, "unsubscribe", session=session)
        )
        return render_page(
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
