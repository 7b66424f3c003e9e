"""Pages for what goes wrong outside a route: limits, expired forms, big bodies, 404s.

A form that fails a check here comes back as that same form, with what was typed and
one message on top, whenever it is one of the front forms; anything else gets a short
page saying what happened and what to do.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import (
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    TooManyRequests,
)

from digest.web.fields import SIGNUP_FIELDS
from digest.web.newlink import link_form
from digest.web.pages import message_page
from digest.web.subscribe import signup_form

log = logging.getLogger(__name__)


def _values(*names: str) -> dict[str, str]:
    # request.form is safe to read here: a body too large never reaches these forms.
    return {name: request.form.get(name, "") for name in names}


def _form_again(http_status: int, message: str) -> Response | None:
    """The front form that was posted, again, with ``message`` on top; None otherwise."""
    endpoint = request.endpoint or ""
    if endpoint == "front.subscribe_post":
        return signup_form(_values(*SIGNUP_FIELDS), {"form": [message]}, http_status)
    if endpoint == "front.link_post":
        return link_form(_values("email"), {"form": [message]}, http_status)
    return None


def too_many(exc: TooManyRequests) -> Response:
    # The same answer for every address: the limits count attempts, not subscriptions.
    message = (
        "Too many attempts from your network or for this address. Please wait an hour "
        "and try again; if you asked for an email, it may already be in your inbox "
        "(or your spam folder)."
    )
    response = _form_again(429, message) or message_page("Too many attempts", message, status=429)
    response.headers["Retry-After"] = "3600"
    return response


def form_expired(exc: CSRFError) -> Response:
    log.info("CSRF check failed on %s: %s", request.path, exc.description)
    message = (
        "This form had expired, or your browser did not send our cookie back. "
        "Nothing was saved; please send it again."
    )
    response = _form_again(400, message)
    if response is not None:
        return response
    return message_page(
        "This form has expired",
        "Nothing was changed.",
        "Go back, reload the page and send the form again. The form needs this site's "
        "cookie to be allowed.",
        status=400,
    )


def too_large(exc: RequestEntityTooLarge) -> Response:
    return message_page(
        "That was too much at once",
        f"The form sent more than {(current_app.config['MAX_CONTENT_LENGTH'] or 0) // 1024} KB, "
        "so nothing was saved.",
        "A topic can be up to 1,000 characters and you can have up to 50 topics. "
        "Go back, shorten what you typed and send it again.",
        status=413,
    )


def not_found(exc: NotFound) -> Response:
    return message_page(
        "There is no page here",
        "The address may be mistyped, or a link cut short by an email program.",
        status=404,
        links_=[("Go to the front page", "/")],
    )


def not_allowed(exc: MethodNotAllowed) -> Response:
    response = message_page(
        "This page does not take that request",
        "Open it from a link or a button on our pages.",
        status=405,
        links_=[("Go to the front page", "/")],
    )
    if exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def register(app: Flask) -> None:
    app.register_error_handler(TooManyRequests, too_many)
    app.register_error_handler(CSRFError, form_expired)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(NotFound, not_found)
    app.register_error_handler(MethodNotAllowed, not_allowed)


__all__ = ["register"]
