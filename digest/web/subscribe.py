"""The front door: ``/`` (what this is, a sample digest, the form) and ``POST /subscribe``.

A valid form gets the same page and status whatever the address's state (new,
pending, active, unsubscribed, bounced, suppressed): the "check your inbox" page names
only the address typed, so nobody can learn from it who is subscribed. What is
stored and mailed is decided by :func:`digest.subscriptions.signup.request_signup`.
A bad form comes back with every message next to its field and everything typed kept.
"""

from __future__ import annotations

import logging

from flask import Response, make_response, request, url_for
from sqlalchemy.exc import SQLAlchemyError

from digest.core.text import clean_text
from digest.errors import SubscriptionError
from digest.pipeline import notify
from digest.pipeline.preview import sample_digest
from digest.store import db
from digest.subscriptions.signup import request_signup
from digest.subscriptions.validate import FormError, validate_signup
from digest.web import wording
from digest.web.fields import DEFAULT_SIGNUP, SIGNUP_FIELDS, choices
from digest.web.pages import (
    app_settings,
    consent_context,
    deliver,
    form_values,
    front,
    message_page,
    render_page,
    see_other,
)
from digest.web.security import email_frame

log = logging.getLogger(__name__)

#: The honeypot: a field people never see (hidden by the stylesheet, skipped by the
#: keyboard and by screen readers) and form-filling bots fill in.
HONEYPOT = "website"


def signup_form(
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    http_status: int = 200,
) -> Response:
    """The front page with the subscribe form (``values`` as typed, ``errors`` by field)."""
    shown = {**DEFAULT_SIGNUP, **(values or {})}
    return render_page(
        "index.html",
        http_status,
        values=shown,
        errors=errors or {},
        # Let the script guess the zone only while nobody has chosen one.
        guess_zone=values is None,
        consent_text=wording.CONSENT_TEXT,
        **choices(),
    )


@front.get("/")
def index() -> Response:
    return signup_form()


@front.get("/subscribe")
def subscribe_page() -> Response:
    # A bookmarked or reloaded /subscribe: the form lives on the front page.
    return see_other(url_for("front.index") + "#subscribe")


@front.post("/subscribe")
def subscribe_post() -> Response:
    values = form_values(*SIGNUP_FIELDS)
    if request.form.get(HONEYPOT):
        log.info("subscribe form with the honeypot filled in: ignored")
        return _sent(clean_text(values["email"], 320))
    try:
        signup = validate_signup(**values)
    except FormError as exc:
        return signup_form(values, exc.errors, 400)
    ids: list[int] = []
    with db.session_scope(app_settings()) as session:
        try:
            decision = request_signup(session, signup, consent_context())
        except SubscriptionError as exc:
            # Only a race is left here (the same address added at the same instant by
            # another request, which then sends its email): the answer does not change.
            session.rollback()
            log.info("signup raced: %s", exc)
        else:
            if decision.email is not None and decision.subscriber is not None:
                ids.append(notify.queue(session, decision.email, decision.subscriber).id)
            log.info(
                "signup from the web: %s",
                decision.reason + (f", {decision.email} email queued" if ids else ""),
            )
    deliver(ids)
    return _sent(signup.email)


def _sent(address: str) -> Response:
    """The one answer to a valid form, whatever the address's state."""
    return render_page("sent.html", email=address)


@front.get("/sample")
def sample() -> Response:
    """A digest as it arrives, built from today's papers, for the front page's frame."""
    settings = app_settings()
    try:
        with db.session_scope(settings) as session:
            rendered = sample_digest(settings, session)
    except SQLAlchemyError as exc:
        log.warning("sample digest: %s", exc)
        return message_page("No sample right now", "Please try again later.", status=503)
    html = _links_open_outside(rendered.html)
    response = email_frame(make_response(html, 200))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _links_open_outside(html: str) -> str:
    """An email shown in a frame: its links open a new tab instead of inside the frame."""
    return html.replace("<head>", '<head><base target="_blank">', 1)


__all__ = ["HONEYPOT", "index", "sample", "signup_form", "subscribe_post"]
