"""A digest in the browser (``/d/<token>``): the email as it was sent, built again.

Not a stored copy: the digest is built from its ledger row through the one builder
(``pipeline.compose``), the row's window and due time fixed as when it was sent, with
no size budget and no per-digest maximum, so the page has every paper that matched,
those the email had no room for included. The email's HTML (inline styles, as emails
need) is shown in a sandboxed frame of our own page under its own strict policy: styles
only, no script. The page lists the reader's other digests of the last 60 days.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import Response, make_response, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.core.schedule import zone
from digest.deliver import make_message_id
from digest.errors import TokenError
from digest.pipeline.compose import ComposedDigest, DigestBuilder
from digest.pipeline.ledger import spec_of
from digest.store import db
from digest.store.models import Digest, DigestStatus, Subscriber
from digest.subscriptions import links
from digest.subscriptions.validate import MAX_PAPERS_LIMIT
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
from digest.web.security import email_frame

log = logging.getLogger(__name__)

#: Rows that went out (``unknown``: the server may have it; the reader may well).
SENT = (DigestStatus.SENT, DigestStatus.UNKNOWN)


def _digest_at(session: Session, subscriber: Subscriber, due: datetime) -> Digest | None:
    # A stamp names the minute; due times are whole hours, so a one-minute range is exact.
    return session.scalars(
        select(Digest).where(
            Digest.subscriber_id == subscriber.id,
            Digest.due_at >= due,
            Digest.due_at < due + timedelta(minutes=1),
        )
    ).first()


def _history(session: Session, subscriber: Subscriber) -> list[Digest]:
    since = utcnow() - timedelta(days=links.HISTORY_DAYS)
    return list(
        session.scalars(
            select(Digest)
            .where(
                Digest.subscriber_id == subscriber.id,
                Digest.status.in_(SENT),
                Digest.due_at >= since,
            )
            .order_by(Digest.due_at.desc())
            .limit(links.HISTORY_DAYS + 1)
        )
    )


def _label(digest: Digest, subscriber: Subscriber) -> str:
    day = digest.due_at.astimezone(zone(subscriber.timezone))
    return f"{day:%A} {day.day} {day:%B %Y}"


@subscription.get("/d/<token>")
def view_latest(token: str) -> Response:
    """The reader's latest digest."""
    return _view(token, None)


@subscription.get("/d/<token>/<stamp>")
def view_digest(token: str, stamp: str) -> Response:
    return _view(token, stamp)


def _view(token: str, stamp: str | None) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = load_subscriber(session, token, "view")
        except TokenError as exc:
            return token_error(exc, "view")
        history = _history(session, subscriber)
        if stamp is None:
            digest = history[0] if history else None
            if digest is None:
                return message_page(
                    "No digest yet",
                    f"Nothing has been sent to {subscriber.email} yet.",
                    "Your first digest arrives at your next send time.",
                    links_=[("Your subscription page", manage_path(session, subscriber))],
                )
        else:
            due = links.parse_stamp(stamp)
            digest = _digest_at(session, subscriber, due) if due is not None else None
            if digest is None:
                return message_page(
                    "There is no digest here",
                    "This link names a digest we have no record of.",
                    status=404,
                    links_=[
                        ("Your latest digest", url_for("subscription.view_latest", token=token))
                    ],
                )
        if digest.status not in SENT:
            return message_page(
                "This digest was not sent",
                f"The digest of {_label(digest, subscriber)} did not go out"
                + (f" ({digest.error})." if digest.error else "."),
                links_=[("Your latest digest", url_for("subscription.view_latest", token=token))],
            )
        own = links.digest_stamp(digest.due_at)
        return render_page(
            "view.html",
            email=subscriber.email,
            date_label=_label(digest, subscriber),
            in_email=len(digest.paper_ids or []),
            frame_url=url_for("subscription.view_email", token=token, stamp=own),
            history=[
                {
                    "label": _label(d, subscriber),
                    "url": url_for(
                        "subscription.view_digest", token=token, stamp=links.digest_stamp(d.due_at)
                    ),
                    "current": d.id == digest.id,
                    "count": len(d.paper_ids or []),
                }
                for d in history
            ],
            history_days=links.HISTORY_DAYS,
            manage_url=manage_path(session, subscriber),
        )


@subscription.get("/d/<token>/<stamp>/email")
def view_email(token: str, stamp: str) -> Response:
    """The digest's email, built again, for the page's frame."""
    settings = app_settings()
    with db.session_scope(settings) as session:
        try:
            subscriber = load_subscriber(session, token, "view")
        except TokenError as exc:
            return token_error(exc, "view")
        due = links.parse_stamp(stamp)
        digest = _digest_at(session, subscriber, due) if due is not None else None
        if digest is None or digest.status not in SENT or digest.window_end is None:
            return message_page("There is no digest here", "Nothing to show.", status=404)
        composed = rebuild(session, digest)
    assert composed.rendered is not None  # always=True renders even an empty digest
    html = composed.rendered.html.replace("<head>", '<head><base target="_blank">', 1)
    response = email_frame(make_response(html, 200))
    response.headers.update(PRIVATE_HEADERS)
    return response


def rebuild(session: Session, digest: Digest) -> ComposedDigest:
    """The digest of a ledger row, through the one builder, every matched paper laid out."""
    settings = app_settings()
    builder = DigestBuilder(
        settings,
        session,
        utcnow(),
        {digest.id: spec_of(digest, with_unsent=True)},
        max_papers=MAX_PAPERS_LIMIT,
    )
    builder.match()
    message_id = digest.message_id or make_message_id(digest.id, settings.from_domain)
    return builder.compose(digest.id, message_id, html_budget=None, always=True)


__all__ = ["rebuild", "view_digest", "view_email", "view_latest"]
