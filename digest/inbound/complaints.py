"""Complaints: ARF feedback reports (RFC 5965) from mailbox providers' feedback loops.

A report is ``multipart/report; report-type=feedback-report`` with a
``message/feedback-report`` part (Feedback-Type, User-Agent, Original-Rcpt-To, …)
and the original message, or its headers, as the third part. A complaint (a reader
pressed "this is spam") unsubscribes the reader and suppresses the address at
once: mailing them again is how a sender loses its reputation.

Providers redact the reader's address, so the digest is found from what survives:
the address the report came to (our VERP address), then our signed addresses in
the quoted headers (Return-Path, Reply-To, List-Unsubscribe), then the quoted
Message-ID (``digests.message_id``), and only then a quoted recipient address.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.text import clean_text
from digest.inbound import mail as mailmod
from digest.store.models import Bounce, Digest, Subscriber
from digest.store.suppression import suppress
from digest.subscriptions.mailtokens import AddressError, parse_address, resolve

#: Feedback types that are a reader's complaint (RFC 5965 §7.3; "not-spam" is the opposite).
COMPLAINT_TYPES = ("abuse", "fraud", "other", "")
_HEADERS_SCAN = 64 * 1024


@dataclass
class Report:
    feedback_type: str
    user_agent: str
    original_rcpt: str
    original_headers: str  # the quoted message's header block, as text (bounded)
    original_message_id: str | None


def read_report(message: Message) -> Report | None:
    """The feedback report of an ARF message, or None if it has none."""
    fields: Message | None = None
    headers_text = ""
    for _depth, part in mailmod.walk(message):
        ctype = part.get_content_type()
        if ctype == "message/feedback-report" and fields is None:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                fields = payload[0]
            elif isinstance(payload, str):
                fields = email.message_from_string(payload[:_HEADERS_SCAN])
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not headers_text:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                inner = payload[0]
                headers_text = "\n".join(f"{k}: {v}" for k, v in list(inner.items())[:200])
            else:
                headers_text = mailmod.part_text(part, _HEADERS_SCAN).split("\n\n", 1)[0]
    if fields is None:
        return None
    headers_text = headers_text[:_HEADERS_SCAN]
    quoted_id = None
    match = re.search(r"(?im)^message-id:\s*(<[^<>\s]{1,250}>)", headers_text)
    if match:
        quoted_id = mailmod.message_id(match.group(1))
    return Report(
        feedback_type=mailmod.header_value(fields.get("feedback-type", "")).lower()[:40],
        user_agent=mailmod.header_value(fields.get("user-agent", ""))[:200],
        original_rcpt=mailmod.header_value(fields.get("original-rcpt-to", ""))[:320],
        original_headers=headers_text,
        original_message_id=quoted_id,
    )


_SIGNED = re.compile(
    r"\b(?:bounce|reply|unsubscribe)\+[0-9]{1,18}-[a-z2-7]{16}@[a-z0-9.-]{1,255}", re.I
)


def attribute(
    settings: Settings, session: Session, report: Report, digest: Digest | None
) -> tuple[Subscriber | None, Digest | None, str]:
    """(the reader complained about, the digest if known, how we know)."""
    if digest is not None:
        return digest.subscriber, digest, "the address the report came to"
    for found in _SIGNED.findall(report.original_headers)[:10]:
        parsed = parse_address(settings, found)
        if parsed is None:
            continue
        try:
            resolved = resolve(settings, session, parsed)
        except AddressError:
            continue
        return resolved.subscriber, resolved.digest, f"the quoted {parsed.kind} address"
    if report.original_message_id:
        row = session.scalar(
            select(Digest).where(Digest.message_id == report.original_message_id).limit(1)
        )
        if row is not None:
            return row.subscriber, row, "the quoted Message-ID"
    rcpt = mailmod.sender(report.original_rcpt)[0] if report.original_rcpt else None
    if rcpt:
        found_sub = subs.get_subscriber(session, rcpt)
        if found_sub is not None:
            return found_sub, None, "the quoted recipient address"
    return None, None, ""


def apply(
    settings: Settings,
    session: Session,
    report: Report,
    subscriber: Subscriber,
    digest: Digest | None,
    how: str,
    inbound_id: int | None,
) -> str:
    """Unsubscribe and suppress the reader (a complaint), or just record (not-spam)."""
    complaint = report.feedback_type in COMPLAINT_TYPES
    agent = f" from {report.user_agent}" if report.user_agent else ""
    kind = report.feedback_type or "complaint"
    session.add(
        Bounce(
            inbound_id=inbound_id,
            digest_id=digest.id if digest is not None else None,
            subscriber_id=subscriber.id,
            email_key=subscriber.email_key,
            kind="complaint" if complaint else "not-spam",
            status=kind,
            diagnostic=clean_text(f"ARF {kind} report{agent}; found by {how}", 2000),
            detector="arf",
            points=0.0,
            suppressed=complaint,
        )
    )
    if not complaint:
        session.flush()
        return f"ARF {kind} report for {subscriber.email}: recorded, nothing changed"
    subs.unsubscribe(session, subscriber)
    where = f" about digest {digest.id}" if digest is not None else ""
    suppress(session, subscriber.email, f"spam complaint (ARF {kind}{agent}){where}")
    session.flush()
    return f"complaint{where}: {subscriber.email} unsubscribed and suppressed"


__all__ = ["COMPLAINT_TYPES", "Report", "apply", "attribute", "read_report"]
