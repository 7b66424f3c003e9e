"""What every page shares: the blueprints, rendering, the signed-link readers, errors.

Pages reached by the form (``front``: ``/``, ``/subscribe``, ``/link``) and pages behind
the links in our emails (``subscription``: confirm, manage, stop, unsubscribe, the
digest in the browser). Every link carries a signed token
(:mod:`digest.subscriptions.tokens`, ages in :mod:`digest.subscriptions.links`); the
token is the whole authorisation, so nobody logs in. Two rules shape every route:

* A GET never changes anything. Link scanners, mail security gateways and
  browsers' prefetchers fetch every link in an email; if a GET unsubscribed or
  confirmed, a scanner would do it for the reader. A GET shows a page with one
  button; the button POSTs (with a CSRF token).
* ``POST /unsubscribe/<token>`` is also the RFC 8058 one-click endpoint named in
  every email's ``List-Unsubscribe`` header: a mail provider POSTs
  ``List-Unsubscribe=One-Click`` with no cookies, no CSRF token and no
  JavaScript, so the form asks for none of them (the signed token is the proof).

Each request opens its own database session; a database failure is a 503 page.
Emails a request asks for are queued in its transaction and handed on after the
commit (:func:`deliver`), never sent from inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import TokenError
from digest.pipeline import notify
from digest.store.models import Subscriber, SubscriberStatus
from digest.subscriptions import links
from digest.subscriptions.signup import ConsentContext
from digest.subscriptions.tokens import CONFIRM_MAX_AGE, make_token, read_token
from digest.web import wording
from digest.web.security import client_ip

log = logging.getLogger(__name__)

front = Blueprint("front", __name__)
subscription = Blueprint("subscription", __name__)

#: Pages that name a reader's address must not be cached or indexed anywhere.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}

# What to do with a link that no longer works, by TokenError.kind and purpose.
_TOKEN_HINTS = {
    ("expired", "confirm"): (
        "Confirmation links work for 72 hours. Ask for a new one below; nothing is sent "
        "to you until you confirm."
    ),
    ("expired", "manage"): "Links to your subscription work for 90 days. Ask for a new one below.",
    ("expired", "stop"): "Links in a digest work for 90 days. Ask for a new one below.",
    ("expired", "view"): "Links in a digest work for 90 days. Ask for a new one below.",
    ("superseded", "confirm"): (
        "Use the link in the most recent confirmation email, or ask for a new one below."
    ),
    ("superseded", "unsubscribe"): (
        "A newer email has been sent to you since: use the unsubscribe link in the most "
        "recent digest or confirmation email."
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
_SUPERSEDED = "Use the link in our most recent email, or ask for a new one below."


def app_settings() -> Settings:
    """The settings of the app serving the current request."""
    return current_app.extensions["digest.settings"]


def render_page(template: str, http_status: int = 200, **context: Any) -> Response:
    # Not named ``status``: a template variable of that name would land here.
    response = make_response(render_template(template, **context), http_status)
    response.headers.update(PRIVATE_HEADERS)
    return response


def message_page(
    heading: str,
    text: str,
    hint: str = "",
    status: int = 200,
    *,
    offer_link: bool = False,
    links_: Sequence[tuple[str, str]] = (),
) -> Response:
    """A page that says one thing; ``offer_link`` adds the "email me a new link" form,
    ``links_`` (text, URL) pairs where to go next."""
    return render_page(
        "message.html",
        status,
        heading=heading,
        text=text,
        hint=hint,
        offer_link=offer_link,
        next_links=list(links_),
    )


def token_error(exc: TokenError, purpose: str) -> Response:
    """The page for a link that does not work: which way it fails, and what to do."""
    hint = _TOKEN_HINTS.get((exc.kind, purpose))
    if hint is None:
        hint = _SUPERSEDED if exc.kind == "superseded" else _TOKEN_HINTS[("invalid", "manage")]
        if purpose == "unsubscribe":
            hint = _TOKEN_HINTS[("invalid", "unsubscribe")]
    heading = {
        "expired": "This link has expired",
        "superseded": "This link is not valid anymore",
    }.get(exc.kind, "This link is not valid")
    # str(exc) is one sentence from subscriptions ("this link has expired: ...").
    text = str(exc)
    # Leaving never needs a new link (any unsubscribe link works); everything else may.
    offer = purpose != "unsubscribe"
    return message_page(
        heading, text[:1].upper() + text[1:] + ".", hint, status=400, offer_link=offer
    )


_PURPOSE_AGE: Any = object()  # "the purpose's own age limit" (subscriptions.links)


def load_subscriber(
    session: Session,
    token: str,
    purpose: str,
    *,
    lock: bool = False,
    max_age: timedelta | None = _PURPOSE_AGE,
) -> Subscriber:
    """The subscriber a link names (by default with its purpose's age limit), or
    TokenError.

    ``lock`` takes the row FOR UPDATE (PostgreSQL), so two clicks at once agree on
    which one changed the status.
    """
    age = links.MAX_AGE[purpose] if max_age is _PURPOSE_AGE else max_age
    subscriber_id = read_token(app_settings(), token, purpose, age, session=session)
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=lock or None)
    if subscriber is None:  # deleted between read_token's check and now
        raise TokenError("this link is not valid: the subscription no longer exists")
    return subscriber


def load_for_confirm(session: Session, token: str, *, lock: bool = False) -> Subscriber:
    """Like :func:`load_subscriber`, but an expired link of a reader who did confirm is
    no error.

    Someone clicking last month's confirmation link should read "already
    confirmed", not "expired"; only a still-pending subscription needs a fresh link.
    """
    try:
        return load_subscriber(session, token, "confirm", lock=lock, max_age=CONFIRM_MAX_AGE)
    except TokenError as exc:
        if exc.kind != "expired":
            raise
        subscriber = load_subscriber(session, token, "confirm", lock=lock, max_age=None)
        if subscriber.status is SubscriberStatus.PENDING:
            raise
        return subscriber


def manage_path(session: Session, subscriber: Subscriber, **query: Any) -> str:
    """A fresh link to the reader's manage page (a page's forms never use an old one)."""
    token = make_token(app_settings(), subscriber, "manage", session=session)
    return url_for("subscription.manage_page", token=token, **query)


def see_other(url: str) -> Response:
    """303 to one of our own paths (never a URL taken from the request: no open redirect)."""
    if not url.startswith("/") or url.startswith("//"):
        raise ValueError(f"not one of our paths: {url!r}")
    return make_response(redirect(url, 303))


def consent_context() -> ConsentContext:
    """Where this request came from, for a consent record."""
    agent = request.headers.get("User-Agent", "")[:500] or None
    return ConsentContext(ip=client_ip(), user_agent=agent, wording=wording.WORDING_VERSION)


def deliver(ids: Sequence[int]) -> None:
    """Hand emails queued by a committed request to the transport (or to the workers).

    A mail server that fails is logged and retried later (``digest run``, or beat);
    the page the reader sees does not depend on it.
    """
    if not ids:
        return
    try:
        notify.deliver(app_settings(), ids)
    except Exception:
        log.exception("emails %s not sent now; they stay queued", list(ids))


def form_values(*names: str) -> dict[str, str]:
    """What the reader typed, for re-showing a form (missing fields are empty)."""
    return {name: request.form.get(name, "") for name in names}


def database_unavailable() -> Response:
    response = message_page(
        "Please try again in a few minutes",
        "We cannot reach our database right now, so nothing was changed.",
        "If this keeps happening, reply to one of our emails to let us know.",
        status=503,
    )
    response.headers["Retry-After"] = "120"
    return response


def _database_error(exc: SQLAlchemyError) -> Response:
    log.error("database error on %s %s: %s", request.method, request.path, exc)
    return database_unavailable()


subscription.register_error_handler(SQLAlchemyError, _database_error)
front.register_error_handler(SQLAlchemyError, _database_error)


__all__ = [
    "PRIVATE_HEADERS",
    "app_settings",
    "consent_context",
    "deliver",
    "form_values",
    "front",
    "load_for_confirm",
    "load_subscriber",
    "manage_path",
    "message_page",
    "render_page",
    "see_other",
    "subscription",
    "token_error",
]
