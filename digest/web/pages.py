"""The pages behind the links in our emails: confirm, manage , unsubscribe.

Every link carries a signed token (:mod:`digest.subscriptions.tokens`); the token is the
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
from typing import Any

from flask import Blueprint, Response, current_app, make_response, render_template, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest import subscriptions
from digest.config import Settings
from digest.errors import TokenError
from digest.store.models import Subscriber, SubscriberStatus

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


def app_settings() -> Settings:
    """The settings of the app serving the current request."""
    return current_app.extensions["digest.settings"]


def render_page(template: str, http_status: int = 200, **context: Any) -> Response:
    # Not named ``status``: a template variable of that name would land here.
    response = make_response(render_template(template, **context), http_status)
    response.headers.update(PRIVATE_HEADERS)
    return response


def message_page(heading: str, text: str, hint: str = "", status: int = 200) -> Response:
    return render_page("message.html", status, heading=heading, text=text, hint=hint)


def token_error(exc: TokenError, purpose: str) -> Response:
    hint = _TOKEN_HINTS.get((exc.kind, purpose)) or _TOKEN_HINTS[("invalid", purpose)]
    heading = {
        "expired": "This link has expired",
        "superseded": "This link is not valid anymore",
    }.get(exc.kind, "This link is not valid")
    # str(exc) is one sentence from subscriptions ("this link has expired: ...").
    text = str(exc)
    return message_page(heading, text[:1].upper() + text[1:] + ".", hint, status=400)


def load_subscriber(
    session: Session, token: str, purpose: str, *, lock: bool = False, **kwargs: Any
) -> Subscriber:
    """The subscriber a token names, or TokenError (handled by the caller).

    ``lock`` takes the row FOR UPDATE (PostgreSQL), so two clicks at once agree on
    which one changed the status.
    """
    subscriber_id = subscriptions.read_token(
        app_settings(), token, purpose, session=session, **kwargs
    )
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=lock or None)
    if subscriber is None:  # deleted between read_token's check and now
        raise TokenError("this link is not valid: the subscription no longer exists")
    return subscriber


def load_for_confirm(session: Session, token: str, *, lock: bool = False) -> Subscriber:
    """Like :func:`_load`, but an expired link of a reader who did confirm is no error.

    Someone clicking last month's confirmation link should read "already
    confirmed", not "expired"; only a still-pending subscription needs a fresh link.
    """
    try:
        return load_subscriber(
            session, token, "confirm", lock=lock, max_age=subscriptions.CONFIRM_MAX_AGE
        )
    except TokenError as exc:
        if exc.kind != "expired":
            raise
        subscriber = load_subscriber(session, token, "confirm", lock=lock)
        if subscriber.status is SubscriberStatus.PENDING:
            raise
        return subscriber


@subscription.errorhandler(SQLAlchemyError)
def _database_error(exc: SQLAlchemyError) -> Response:
    log.error("database error on %s %s: %s", request.method, request.path, exc)
    response = message_page(
        "Please try again in a few minutes",
        "We cannot reach our database right now, so nothing was changed.",
        "If this keeps happening, reply to one of our emails to let us know.",
        status=503,
    )
    response.headers["Retry-After"] = "120"
    return response
