"""Manage a subscription from the link in every email: topics, schedule, pause, resume,
subscribe again; "download my data" and "delete everything" are in ``mydata``.

Each topic shows how many papers it would have matched in the last 7 days, from the
same :class:`~digest.match.backtest.Backtest` as ``digest topics test``. A form with a
mistake comes back with each message next to its field and what was typed kept; a
saved form redirects (303) to a fresh manage link with a note of what was done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Response, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest import subscriptions
from digest.errors import DigestError, SubscriptionError, TokenError
from digest.match.query import parse as parse_query
from digest.pipeline import notify
from digest.store import db
from digest.store.models import Digest, DigestStatus, Subscriber, SubscriberStatus
from digest.subscriptions import links
from digest.subscriptions.editing import TopicEdit, update_settings, update_topics
from digest.subscriptions.signup import resubscribe_from_manage
from digest.subscriptions.validate import FormError
from digest.web.counts import DAYS as BACKTEST_DAYS
from digest.web.counts import WEEK
from digest.web.fields import SETTINGS_FIELDS, choices, subscriber_values
from digest.web.pages import (
    app_settings,
    consent_context,
    deliver,
    form_values,
    load_subscriber,
    manage_path,
    render_page,
    see_other,
    subscription,
    token_error,
)
from digest.web.wording import describe_next, describe_schedule, describe_status

log = logging.getLogger(__name__)

#: What a saved form's redirect says (``?saved=<key>``); anything else says nothing.
NOTICES = {
    "topics": "Your topics are saved.",
    "settings": "Your delivery settings are saved.",
    "paused": "Paused: no digests until you resume.",
    "resumed": "Resumed: digests are on again.",
    "resubscribed": (
        "Almost there: we sent you a confirmation email. Click the link in it to get "
        "digests again; nothing is sent until you do."
    ),
}


@dataclass
class TopicRow:
    """One row of the topics form as shown: stored values, or what was just typed."""

    key: str  # topic id, or "new"
    query: str
    label: str
    count: int | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


def _load(session: Session, token: str, lock: bool = False) -> Subscriber:
    return load_subscriber(session, token, "manage", lock=lock)


@subscription.get("/manage/<token>")
def manage_page(token: str) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = _load(session, token)
        except TokenError as exc:
            return token_error(exc, "manage")
        notice = NOTICES.get(request.args.get("saved", ""))
        return _page(session, subscriber, notice=notice)


def _page(
    session: Session,
    subscriber: Subscriber,
    *,
    rows: list[TopicRow] | None = None,
    topic_errors: list[str] | None = None,
    settings_values: dict[str, str] | None = None,
    settings_errors: dict[str, list[str]] | None = None,
    notice: str | None = None,
    problem: str | None = None,
    http_status: int = 200,
) -> Response:
    settings = app_settings()
    token = subscriptions.make_token(settings, subscriber, "manage", session=session)
    if rows is None:
        rows = [TopicRow(str(t.id), t.query, t.label) for t in subscriber.topics]
        rows.append(TopicRow("new", "", ""))
    counted = _count(rows)
    unsubscribed = subscriber.status is SubscriberStatus.UNSUBSCRIBED
    unsubscribe_token = subscriptions.make_token(
        settings, subscriber, "unsubscribe", session=session
    )

    def action(name: str) -> str:
        return url_for(f"subscription.manage_{name}", token=token)

    return render_page(
        "manage.html",
        http_status,
        email=subscriber.email,
        state=subscriber.status.value,
        status_text=describe_status(subscriber),
        schedule=describe_schedule(subscriber),
        next_digest=(
            describe_next(subscriber) if subscriber.status is SubscriberStatus.ACTIVE else None
        ),
        notice=notice,
        problem=problem,
        rows=rows,
        topic_errors=topic_errors or [],
        days=BACKTEST_DAYS,
        counted=counted,
        values=settings_values or subscriber_values(subscriber),
        errors=settings_errors or {},
        actions={
            name: action(name) for name in ("topics", "settings", "pause", "resume", "resubscribe")
        },
        unsubscribe_action=(
            None
            if unsubscribed
            else url_for("subscription.unsubscribe_post", token=unsubscribe_token)
        ),
        data_url=url_for("subscription.manage_data", token=token),
        delete_url=url_for("subscription.manage_delete_page", token=token),
        latest_url=_latest_view(session, subscriber),
        **choices(),
    )


def _count(rows: list[TopicRow]) -> bool:
    """Each valid row's "would have matched" count, from the week's index (built once per
    process, see ``web.counts``); False if that index is not ready yet."""
    wanted = [r for r in rows if r.query.strip() and not r.errors]
    if not wanted:
        return True
    backtest = WEEK.get(app_settings())
    if backtest is None:
        return False
    for row in wanted:
        try:
            parsed = parse_query(" ".join(row.query.split()))
            # Semantic topics need the embeddings' session: not counted on this page.
            row.count = None if parsed.is_semantic else backtest.count(parsed)
        except DigestError:
            row.count = None
    return True


def _latest_view(session: Session, subscriber: Subscriber) -> str | None:
    latest = session.scalars(
        select(Digest)
        .where(Digest.subscriber_id == subscriber.id, Digest.status == DigestStatus.SENT)
        .order_by(Digest.due_at.desc())
        .limit(1)
    ).first()
    if latest is None:
        return None
    url = links.view_url(app_settings(), subscriber, latest.due_at, session=session)
    return url[len(app_settings().base_url.rstrip("/")) :]


def _done(session: Session, subscriber: Subscriber, saved: str) -> Response:
    return see_other(manage_path(session, subscriber, saved=saved))


# --- topics --------------------------------------------------------------------------------


def _posted_rows(subscriber: Subscriber) -> tuple[list[TopicEdit], list[TopicRow]]:
    """The topics form as posted: one edit per stored topic, plus the new row."""
    remove = request.form.get("remove", "")
    edits: list[TopicEdit] = []
    shown: list[TopicRow] = []
    for topic in subscriber.topics:
        key = str(topic.id)
        query = request.form.get(f"query-{key}", topic.query)
        label = request.form.get(f"label-{key}", topic.label)
        removed = remove == key or request.form.get(f"remove-{key}") == "1"
        edits.append(TopicEdit(topic.id, query, label, remove=removed))
        if not removed:
            shown.append(TopicRow(key, query, label))
    query, label = request.form.get("query-new", ""), request.form.get("label-new", "")
    edits.append(TopicEdit(None, query, label))
    shown.append(TopicRow("new", query, label))
    return edits, shown


@subscription.post("/manage/<token>/topics")
def manage_topics(token: str) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = _load(session, token, lock=True)
        except TokenError as exc:
            return token_error(exc, "manage")
        edits, shown = _posted_rows(subscriber)
        try:
            update_topics(session, subscriber, edits)
        except FormError as exc:
            for row in shown:
                row.errors = {
                    part: exc.errors[f"{part}-{row.key}"]
                    for part in ("query", "label")
                    if f"{part}-{row.key}" in exc.errors
                }
            return _page(
                session,
                subscriber,
                rows=shown,
                topic_errors=exc.errors.get("topics"),
                problem="Nothing was saved: please fix what is marked below.",
                http_status=400,
            )
        log.info("subscriber %s edited topics", subscriber.id)
        return _done(session, subscriber, "topics")


# --- delivery settings ----------------------------------------------------------------------


@subscription.post("/manage/<token>/settings")
def manage_settings(token: str) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = _load(session, token, lock=True)
        except TokenError as exc:
            return token_error(exc, "manage")
        values = form_values(*SETTINGS_FIELDS)
        try:
            update_settings(session, subscriber, **values)
        except FormError as exc:
            return _page(
                session,
                subscriber,
                settings_values=values,
                settings_errors=exc.errors,
                problem="Nothing was saved: please fix what is marked below.",
                http_status=400,
            )
        return _done(session, subscriber, "settings")


# --- pause, resume, subscribe again -------------------------------------------------------


def _status_change(token: str, change: Any, saved: str) -> Response:
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = _load(session, token, lock=True)
        except TokenError as exc:
            return token_error(exc, "manage")
        try:
            change(session, subscriber)
        except SubscriptionError as exc:
            text = str(exc)
            return _page(session, subscriber, problem=text[:1].upper() + text[1:] + ".",
                         http_status=409)  # fmt: skip
        return _done(session, subscriber, saved)


@subscription.post("/manage/<token>/pause")
def manage_pause(token: str) -> Response:
    return _status_change(token, subscriptions.pause, "paused")


@subscription.post("/manage/<token>/resume")
def manage_resume(token: str) -> Response:
    return _status_change(token, subscriptions.resume, "resumed")


@subscription.post("/manage/<token>/resubscribe")
def manage_resubscribe(token: str) -> Response:
    ids: list[int] = []
    with db.session_scope(app_settings()) as session:
        try:
            subscriber = _load(session, token, lock=True)
        except TokenError as exc:
            return token_error(exc, "manage")
        if subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
            return _done(session, subscriber, "")
        decision = resubscribe_from_manage(session, subscriber, consent_context())
        if subscriber.status is SubscriberStatus.UNSUBSCRIBED:  # suppressed: nothing changed
            return _page(
                session,
                subscriber,
                problem=(
                    "We cannot mail this address any more: a mail server refused it "
                    "permanently. If it works again, reply to one of our emails."
                ),
                http_status=409,
            )
        if decision.email is not None:
            ids.append(notify.queue(session, decision.email, subscriber).id)
        saved = "resubscribed"
        # Subscribing again retires every earlier link: this redirect carries a new one.
        response = _done(session, subscriber, saved)
    deliver(ids)
    return response


__all__ = ["BACKTEST_DAYS", "NOTICES", "manage_page"]
