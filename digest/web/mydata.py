"""A reader's own data, from the manage page: download it all (JSON), or delete it all.

Deleting keeps only what suppression needs, hashed (a SHA-256 fingerprint of the
address, never the address), and the page says so before and after.
"""

from __future__ import annotations

import logging

from flask import Response, make_response, request, url_for

from digest.core.clock import utcnow
from digest.errors import TokenError
from digest.store import db
from digest.subscriptions.privacy import erase, personal_data_json
from digest.web.pages import (
    PRIVATE_HEADERS,
    app_settings,
    load_subscriber,
    manage_path,
    message_page,
    render_page,
    subscription,
    token_error,
)

log = logging.getLogger(__name__)


@subscription.get("/manage/<token>/data.json")
def manage_data(token: str) -> Response:
    """Everything we hold about the reader, as a JSON file to save (a GET: it changes
    nothing)."""
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "manage")
        except TokenError as exc:
            return token_error(exc, "manage")
        body = personal_data_json(session, subscriber)
    response = make_response(body, 200)
    response.mimetype = "application/json"
    day = f"{utcnow():%Y-%m-%d}"
    response.headers["Content-Disposition"] = f'attachment; filename="digest-my-data-{day}.json"'
    response.headers.update(PRIVATE_HEADERS)
    return response


@subscription.get("/manage/<token>/delete")
def manage_delete_page(token: str) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "manage")
        except TokenError as exc:
            return token_error(exc, "manage")
        return _ask(subscriber.email, token, manage_path(session, subscriber))


def _ask(email: str, token: str, back: str, error: str | None = None) -> Response:
    return render_page(
        "delete.html",
        400 if error else 200,
        email=email,
        action=url_for("subscription.manage_delete", token=token),
        back=back,
        errors={"understood": [error]} if error else {},
    )


@subscription.post("/manage/<token>/delete")
def manage_delete(token: str) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "manage", lock=True)
        except TokenError as exc:
            return token_error(exc, "manage")
        if request.form.get("understood") != "yes":
            return _ask(
                subscriber.email,
                token,
                manage_path(session, subscriber),
                "Tick the box to confirm: this cannot be undone.",
            )
        email, subscriber_id = subscriber.email, subscriber.id
        erase(session, subscriber)
    log.info("subscriber %s erased at their request", subscriber_id)
    return message_page(
        "Everything is deleted",
        f"We deleted {email}'s subscription, topics, consent records and the record of "
        "every digest and email we sent.",
        "We keep only a one-way fingerprint (SHA‑256) of the address on our do-not-mail "
        "list, never the address itself: it stops anyone, an import or an administrator "
        "included, from subscribing it again without you. You can still subscribe again "
        "yourself on the front page; confirming lifts it.",
        links_=[("Go to the front page", url_for("front.index"))],
    )


__all__ = ["manage_data", "manage_delete", "manage_delete_page"]
