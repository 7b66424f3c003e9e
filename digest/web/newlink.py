"""``/link``: "email me a new link", for a reader whose link expired or was lost.

The answer is the same for every valid address, subscribed or not; the email (a fresh
confirmation for a pending subscription, a manage link otherwise) is decided by
:func:`digest.subscriptions.signup.request_link`, rate-limited like the subscribe form.
"""

from __future__ import annotations

import logging

from flask import Response

from digest.errors import InvalidEmail
from digest.pipeline import notify
from digest.store import db
from digest.subscriptions.signup import request_link
from digest.subscriptions.validate import normalise_email
from digest.web.pages import app_settings, deliver, form_values, front, render_page

log = logging.getLogger(__name__)


def link_form(
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    http_status: int = 200,
) -> Response:
    return render_page(
        "link.html", http_status, values=values or {"email": ""}, errors=errors or {}, sent=False
    )


@front.get("/link")
def link_page() -> Response:
    return link_form()


@front.post("/link")
def link_post() -> Response:
    values = form_values("email")
    try:
        address, _ = normalise_email(values["email"])
    except InvalidEmail as exc:
        reason = exc.reason[:1].upper() + exc.reason[1:]
        return link_form(values, {"email": [reason.rstrip(".") + "."]}, 400)
    ids: list[int] = []
    with db.session_scope(app_settings()) as session:
        decision = request_link(session, address)
        if decision.email is not None and decision.subscriber is not None:
            ids.append(notify.queue(session, decision.email, decision.subscriber).id)
        log.info("new link asked for: %s", decision.reason + (", queued" if ids else ""))
    deliver(ids)
    return render_page("link.html", values={"email": address}, errors={}, sent=True)


__all__ = ["link_form", "link_page", "link_post"]
