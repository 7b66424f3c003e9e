"""Act on one recorded message: the dispatcher between the listener and the handlers.

:func:`handle` claims a row of ``inbound_messages``, reads the message, acts on it
and marks the row ``acted`` with the answer to send, all in one transaction (so
acting twice is impossible: a second attempt finds the row no longer open); then
it sends the answer and marks the row ``done``. A crash between the two leaves an
``acted`` row, whose answer the next start sends; a crash before the commit
leaves a ``received`` row, acted on at the next start.

What a message is depends on where it was sent and what it holds:

- a feedback report (ARF), to any of our addresses: a complaint;
- anything else to a ``bounce+`` address: a bounce of that digest;
- a bounce or other machine mail to another address (a bounce of one of our
  answers): recorded, nothing more;
- to an ``unsubscribe+`` address: that reader is unsubscribed, no questions asked;
- to the request address, a ``reply+`` or a ``confirm+`` address: commands.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.addresses import email_key
from digest.core.clock import utcnow
from digest.inbound import actions, addresses, bounces, commands, complaints, record, replies
from digest.inbound import mail as mailmod
from digest.pipeline.replies import Reply, send_reply
from digest.store import db
from digest.store.models import InboundMessage, InboundStatus, SubscriberStatus
from digest.subscriptions.mailtokens import (
    AddressError,
    Resolved,
    confirm_address,
    reply_address,
)

log = logging.getLogger(__name__)


def handle(settings: Settings, row_id: int, now: datetime | None = None) -> InboundStatus | None:
    """Act on and answer one recorded message; None if another worker holds it."""
    factory = db.session_factory(settings)
    with factory() as session:
        row = record.claim(session, row_id, now)
        if row is None:
            return None
        when = now or utcnow()
        if row.status is InboundStatus.RECEIVED:
            try:
                act(settings, session, row, when)
                session.commit()
            except SQLAlchemyError:
                session.rollback()
                log.exception("inbound message %s: database error; retried later", row_id)
                return InboundStatus.RECEIVED  # the claim runs out and the sweep retries
            except Exception as exc:
                session.rollback()
                log.exception("inbound message %s could not be handled", row_id)
                _failed(session, row_id, f"{type(exc).__name__}: {exc}", when)
                return InboundStatus.FAILED
        if row.status is InboundStatus.ACTED:
            _answer(settings, session, row, when)
        return row.status


def _failed(session: Session, row_id: int, error: str, now: datetime) -> None:
    row = session.get(InboundMessage, row_id, populate_existing=True)
    if row is None:
        return
    row.error = error[:2000]
    if row.attempts >= record.MAX_ATTEMPTS:
        record.finish(row, InboundStatus.FAILED, "failed", f"gave up: {error}", now)
    else:  # later, by the sweep: a bug fixed and restarted, or a row locked elsewhere
        row.claimed_until = now + record.CLAIM
    session.commit()


def act(settings: Settings, session: Session, row: InboundMessage, now: datetime) -> None:
    """Decide and do what the message asks; the row ends acted, done or ignored."""
    mail = mailmod.parse(row.raw or b"")
    recipient = addresses.classify(settings, row.recipient)
    if recipient is None:  # the configuration changed since it was accepted
        record.finish(row, InboundStatus.IGNORED, "unknown", "no longer one of our addresses", now)
        return
    try:
        resolved = addresses.verify(settings, session, recipient)
    except AddressError as exc:
        record.finish(
            row, InboundStatus.IGNORED, "forged", f"the address does not verify: {exc}", now
        )
        return
    if resolved is not None:
        row.subscriber_id = resolved.subscriber.id
        row.digest_id = resolved.digest.id if resolved.digest is not None else None
    if mail.report_type == "feedback-report" or _has_part(mail, "message/feedback-report"):
        _complaint(settings, session, row, mail, resolved, now)
    elif recipient.kind == "bounce":
        assert resolved is not None and resolved.digest is not None
        _bounce(settings, session, row, mail, resolved, now)
    elif _is_bounce(mail, row.envelope_from):
        record.finish(
            row,
            InboundStatus.IGNORED,
            "bounce-of-answer",
            f"a bounce or machine message to {recipient.kind} address: nothing to do",
            now,
        )
    elif recipient.kind == "unsubscribe":
        assert resolved is not None
        _unsubscribe(settings, session, row, mail, resolved, now)
    else:
        _commands(settings, session, row, mail, recipient.kind, resolved, now)


def _has_part(mail: mailmod.Mail, ctype: str) -> bool:
    if mail.message is None or not mail.message.is_multipart():
        return False
    return any(p.get_content_type() == ctype for _d, p in mailmod.walk(mail.message))


def _is_bounce(mail: mailmod.Mail, envelope_from: str) -> bool:
    return (
        not envelope_from
        or mail.report_type == "delivery-status"
        or addresses.is_machine(envelope_from)
    )


# --- machine mail ---------------------------------------------------------------------


def _bounce(
    settings: Settings,
    session: Session,
    row: InboundMessage,
    mail: mailmod.Mail,
    resolved: Resolved,
    now: datetime,
) -> None:
    assert resolved.digest is not None
    report = bounces.read_bounce(mail)
    if report.kind == bounces.UNRECOGNISED:
        # An out-of-office answer goes to the return path too (RFC 3834): not a bounce.
        why = "an automatic reply" if replies.automatic(mail) else "not a bounce we can read"
        record.finish(
            row,
            InboundStatus.DONE,
            "bounce-unread",
            f"mail to the return path of digest {resolved.digest.id}: {why}; nothing changed",
            now,
        )
        return
    applied = bounces.apply(settings, session, report, resolved.digest, row.id, now)
    record.finish(row, InboundStatus.DONE, "bounce", applied.summary, now)


def _complaint(
    settings: Settings,
    session: Session,
    row: InboundMessage,
    mail: mailmod.Mail,
    resolved: Resolved | None,
    now: datetime,
) -> None:
    report = complaints.read_report(mail.message) if mail.message is not None else None
    if report is None:
        record.finish(
            row,
            InboundStatus.IGNORED,
            "complaint",
            "a feedback report without its report part",
            now,
        )
        return
    digest = resolved.digest if resolved is not None and resolved.kind == "bounce" else None
    subscriber, digest, how = complaints.attribute(settings, session, report, digest)
    if subscriber is None:
        record.finish(
            row,
            InboundStatus.IGNORED,
            "complaint",
            f"ARF {report.feedback_type or 'report'}: no reader could be identified in it",
            now,
        )
        return
    row.subscriber_id = subscriber.id
    row.digest_id = digest.id if digest is not None else None
    text = complaints.apply(settings, session, report, subscriber, digest, how, row.id)
    record.finish(row, InboundStatus.DONE, "complaint", text, now)


# --- a reader's mail ------------------------------------------------------------------


def _unsubscribe(
    settings: Settings,
    session: Session,
    row: InboundMessage,
    mail: mailmod.Mail,
    resolved: Resolved,
    now: datetime,
) -> None:
    """RFC 8058 §5: mail to the List-Unsubscribe mailto unsubscribes, no confirmation."""
    subscriber = resolved.subscriber
    changed = subs.unsubscribe(session, subscriber)
    done = f"{subscriber.email} {'unsubscribed' if changed else 'was already unsubscribed'} by mail"
    # The answer goes to the reader who was unsubscribed, whoever sent the message.
    why_not = replies.refusal(
        settings, session, mail, row.envelope_from, subscriber.email, row.id, now
    )
    if why_not or not changed:
        reason = why_not or "already unsubscribed"
        record.finish(
            row, InboundStatus.DONE, "unsubscribe", f"{done}; not answered: {reason}", now
        )
        return
    view = {
        "subject": f"You're unsubscribed from {settings.brand}",
        "heading": "You're unsubscribed",
        "intro": (
            f"{subscriber.email} will get no more digests from {settings.brand}. "
            "This is the last email we send you."
        ),
    }
    replies.plan(row, subscriber.email, view, in_reply_to=mail.message_id)
    record.finish(row, InboundStatus.ACTED, "unsubscribe", done, now)


def _commands(
    settings: Settings,
    session: Session,
    row: InboundMessage,
    mail: mailmod.Mail,
    via: str,
    resolved: Resolved | None,
    now: datetime,
) -> None:
    to = mail.from_addr
    why_not = replies.refusal(settings, session, mail, row.envelope_from, to, row.id, now)
    if why_not is not None or to is None:
        record.finish(
            row,
            InboundStatus.IGNORED,
            "not-answered",
            f"not acted on, not answered: {why_not}",
            now,
        )
        return
    lines, notes = commands.read_lines(mail.subject, mail.text)
    if any(d.startswith(("malformed", "unparseable")) for d in mail.defects):
        notes.append("your message's MIME structure is damaged: only its readable text was used")
    owner = resolved.subscriber if resolved is not None else None
    if owner is not None and email_key(to) != owner.email_key:
        # Someone else's digest or confirmation: tell the sender, touch nothing.
        what = "digest" if via == "reply" else "confirmation email"
        told: dict[str, Any] = {
            "subject": f"Your message to {settings.brand}",
            "heading": "Nothing was changed",
            "intro": (
                f"The {what} you replied to was sent to another address, so its commands "
                f"were not carried out. Send commands from the address that gets the "
                f"digests, or write to {settings.request_addr} about your own subscription."
            ),
        }
        replies.plan(row, to, told, in_reply_to=mail.message_id)
        record.finish(
            row,
            InboundStatus.ACTED,
            "spoofed",
            f"{via} from {to}, not the reader: not acted on",
            now,
        )
        return
    subscriber = owner if owner is not None else subs.get_subscriber(session, to)
    head: list[commands.Result] = []
    if via == "confirm":
        head.append(_confirm(session, resolved, now))
    request = actions.Request(
        settings,
        session,
        to,
        via,
        subscriber,
        digest=resolved.digest if resolved is not None else None,
        message_id=mail.message_id,
        now=now,
    )
    outcome = actions.execute(request, lines)
    results = head + outcome.results
    subscriber = outcome.subscriber
    view: dict[str, Any] = {
        "subject": f"{settings.brand}: your commands",
        "heading": "Your commands",
        "results": [r.as_dict() for r in results],
        "notes": notes,
        "help": outcome.help or not results,
        **replies.summary(settings, session, subscriber),
    }
    reply_to = None
    if via == "reply" and resolved is not None and resolved.digest is not None:
        reply_to = reply_address(
            settings, session, resolved.digest.subscriber, resolved.digest.period
        )
    if (
        outcome.needs_confirm
        and subscriber is not None
        and subscriber.status is SubscriberStatus.PENDING
    ):
        view["subject"] = f"Confirm your subscription to {settings.brand}"
        view["heading"] = "Confirm your subscription"
        view["intro"] = (
            f"Someone, hopefully you, asked to send research-paper digests from "
            f"{settings.brand} to {subscriber.email}. Nothing is sent until you confirm."
        )
        view["confirm_url"] = subs.confirm_url(settings, subscriber, session=session)
        view["confirm_by_reply"] = settings.inbound
        if settings.inbound:
            reply_to = confirm_address(settings, session, subscriber, now)
    row.subscriber_id = subscriber.id if subscriber is not None else row.subscriber_id
    replies.plan(
        row,
        to,
        view,
        in_reply_to=mail.message_id,
        reply_to=reply_to,
        unsubscribe_mailto=replies.mailto(settings, session, subscriber),
        help=bool(view["help"]),
    )
    done = sum(1 for r in results if r.ok)
    action = "steer" if via == "reply" else ("confirm" if via == "confirm" else "commands")
    summary = "; ".join(
        f"{r.command} -> {'ok' if r.ok else 'refused'}: {r.text}" for r in results[:20]
    )
    record.finish(
        row,
        InboundStatus.ACTED,
        action,
        f"{done} of {len(results)} commands done" + (f": {summary}" if summary else ""),
        now,
    )


def _confirm(session: Session, resolved: Resolved | None, now: datetime) -> commands.Result:
    assert resolved is not None
    subscriber = resolved.subscriber
    shown = "(your reply to the confirmation)"
    if subscriber.status is SubscriberStatus.PENDING:
        if resolved.expired:
            return commands.Result(
                shown, False, 'this confirmation has expired: send "subscribe" again'
            )
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = now
        session.flush()
        return commands.Result(
            shown, True, "subscription confirmed: your digests start with the next batch"
        )
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        return commands.Result(shown, True, "already confirmed")
    return commands.Result(
        shown, False, f'you are {subscriber.status.value}: send "subscribe" to start again'
    )


# --- the answer -----------------------------------------------------------------------


def _answer(settings: Settings, session: Session, row: InboundMessage, now: datetime) -> None:
    planned = row.reply
    if not planned:
        record.finish(row, InboundStatus.DONE, row.action or "", row.result or "", now)
        session.commit()
        return
    reply = Reply(
        to=str(planned["to"]),
        message_key=f"reply-{row.id}",
        view=dict(planned.get("view") or {}),
        in_reply_to=planned.get("in_reply_to"),
        reply_to=planned.get("reply_to"),
        unsubscribe_url=(planned.get("view") or {}).get("unsubscribe_url"),
        unsubscribe_mailto=planned.get("unsubscribe_mailto"),
        help_lines=commands.HELP if planned.get("help") else (),
    )
    # No lock held while the mail server answers (and send_reply opens its own session).
    db.end_transaction(session)
    try:
        outcome = send_reply(settings, reply)
    except Exception as exc:  # a template or address problem: this answer, not the others
        log.exception("inbound message %s: the answer cannot be sent", row.id)
        record.finish(
            row, InboundStatus.DONE, row.action or "", f"{row.result}; answer failed: {exc}", now
        )
        row.reply = None
        session.commit()
        return
    if outcome is None:
        note = "not answered: the address is suppressed"
    elif outcome.ok:
        row.replied_at = now
        note = f"answered {reply.to}"
    elif outcome.status == "transient" and row.attempts < record.MAX_ATTEMPTS:
        row.claimed_until = outcome.retry_at or now + timedelta(minutes=5)
        row.error = outcome.describe()
        session.commit()
        return
    else:
        note = f"the answer failed: {outcome.describe()}"
    record.finish(row, InboundStatus.DONE, row.action or "", f"{row.result}; {note}", now)
    row.reply = None
    session.commit()


__all__ = ["act", "handle"]
