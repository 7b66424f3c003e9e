"""Bounces that arrive after the SMTP conversation: read them, score them, suppress.

Every digest's envelope sender is its VERP address (``bounce+<digest>-<mac>@…``),
so a bounce names the digest and the reader by the address it was sent to; the
report itself says how bad it is.

Reading: an RFC 3464 DSN (``multipart/report; report-type=delivery-status``) gives
each recipient's Action, Status and Diagnostic-Code, read here; the common
non-standard formats (Exim, qmail, Postfix without DSN, Yahoo, Microsoft, …) go
through GNU Mailman's detectors, :mod:`flufl.bounce`, and the first enhanced status
code in the text says more when there is one.

Scoring, after Mailman 3 (``bounce_score_threshold``, ``bounce_info_stale_after``):

- a **hard** bounce (a failed delivery with a 5.x.x status) suppresses the address
  at once;
- a **soft** bounce (failed with a 4.x.x status: the remote server gave up on a
  full mailbox, say; or a permanent failure of a non-standard report with no
  status) adds :data:`SOFT_POINTS` to the address's score, a temporary one
  :data:`WARNING_POINTS`; a delay warning (Action: delayed) adds nothing;
- the score counts one bounce per digest, and starts again from zero when the
  previous bounce is older than ``DIGEST_BOUNCE_STALE_DAYS`` (a week longer for a
  weekly reader): it decays to nothing when the bounces stop;
- a score reaching ``DIGEST_BOUNCE_SCORE_THRESHOLD`` suppresses the address.

Each bounce is a row of ``bounces`` with its digest, whatever it led to.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message

import flufl.bounce
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.text import clean_text
from digest.inbound import mail as mailmod
from digest.store.models import Bounce, Digest, Frequency, Subscriber, SubscriberStatus
from digest.store.suppression import suppress

log = logging.getLogger(__name__)

SOFT_POINTS = 1.0
WARNING_POINTS = 0.5
#: Bounces read back when working out a score (older ones cannot count anyway).
SCORE_WINDOW = 50
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_TEXT_SCAN = 16_000
DETECTOR_BYTES = 32 * 1024

HARD = "hard"
SOFT = "soft"
DELAYED = "delayed"
UNRECOGNISED = "unrecognised"


@dataclass
class BounceReport:
    """What one bounce message says, as far as it can be read."""

    kind: str  # hard | soft | delayed | unrecognised
    status: str | None = None  # "5.1.1"
    action: str | None = None
    diagnostic: str = ""
    recipients: list[str] = field(default_factory=list)
    detector: str = ""
    points: float = 0.0


def _field(block: Message, name: str, limit: int = 500) -> str:
    return mailmod.header_value(block.get(name, ""))[:limit]


def _address(value: str) -> str:
    # "rfc822; ada@example.org" -> "ada@example.org"
    kind, _sep, rest = value.partition(";")
    address = (rest if _sep else kind).strip().strip("<>")
    return clean_text(address, 320)


_SEVERITY = {"failed": 3, "delayed": 1}


def read_dsn(message: Message) -> BounceReport | None:
    """The worst per-recipient block of an RFC 3464 DSN, or None if it has none."""
    best: tuple[int, BounceReport] | None = None
    for _depth, part in mailmod.walk(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        remote = ""
        for block in blocks[: mailmod.MAX_PARTS]:
            if not isinstance(block, Message):
                continue
            if block.get("reporting-mta") and not block.get("action"):
                remote = _field(block, "reporting-mta", 200)
                continue
            action = _field(block, "action", 40).lower().split(" ")[0]
            action = "failed" if action in ("failed", "error") else action
            status_text = _field(block, "status", 40)
            match = _STATUS.search(status_text)
            status = match.group(0) if match else None
            diagnostic = _field(block, "diagnostic-code", 1000)
            recipient = _address(
                _field(block, "original-recipient") or _field(block, "final-recipient")
            )
            report = BounceReport(
                kind=_kind(action, status),
                status=status,
                action=action or None,
                diagnostic=" ".join(x for x in (diagnostic, remote and f"(from {remote})") if x),
                recipients=[recipient] if recipient else [],
                detector="dsn",
            )
            rank = _SEVERITY.get(action, 0) * 10 + (2 if status and status[0] == "5" else 0)
            if best is None or rank > best[0]:
                best = (rank, report)
    if best is None:
        return None
    report = best[1]
    report.points = {SOFT: SOFT_POINTS}.get(report.kind, 0.0)
    return report


def _kind(action: str, status: str | None) -> str:
    if action == "failed":
        return HARD if status and status.startswith("5") else SOFT
    if action == "delayed":
        return DELAYED
    return UNRECOGNISED  # delivered, relayed, expanded: not a failure


def read_other(message: Message, raw: bytes | None = None) -> BounceReport | None:
    """A non-standard bounce, through Mailman's detectors (:mod:`flufl.bounce`).

    Some detectors are quadratic in the number of lines (900 KB of "--" lines took
    24 s): they get the first :data:`DETECTOR_BYTES` of the message, where every
    format puts its diagnostic (the returned original, if any, comes last).
    """
    if raw is not None and len(raw) > DETECTOR_BYTES:
        message = email.message_from_bytes(raw[:DETECTOR_BYTES], policy=email.policy.compat32)
    try:
        temporary, permanent = flufl.bounce.all_failures(message)
    except (Exception, RecursionError) as exc:
        log.info("bounce detectors failed on a message: %s", exc)
        return None
    if not temporary and not permanent:
        return None
    recipients = sorted(a.decode("ascii", "replace") for a in (*permanent, *temporary))
    text = _scan_text(message)
    match = _STATUS.search(text)
    status = match.group(0) if match else None
    diagnostic = ""
    if match:
        start = max(0, match.start() - 120)
        diagnostic = clean_text(text[start : match.end() + 200], 400)
    if permanent:
        # A permanent failure with a 5.x.x status is hard; without one we are less sure.
        hard = bool(status and status.startswith("5"))
        kind, points = (HARD, 0.0) if hard else (SOFT, SOFT_POINTS)
    else:
        kind, points = SOFT, WARNING_POINTS
    return BounceReport(
        kind=kind,
        status=status,
        action="failed" if permanent else "delayed",
        diagnostic=diagnostic,
        recipients=[clean_text(r, 320) for r in recipients[:10]],
        detector="flufl.bounce",
        points=points,
    )


def _scan_text(message: Message) -> str:
    chunks: list[str] = []
    size = 0
    for _depth, part in mailmod.walk(message):
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        text = mailmod.part_text(part, _TEXT_SCAN)
        chunks.append(text)
        size += len(text)
        if size >= _TEXT_SCAN:
            break
    return "\n".join(chunks)[:_TEXT_SCAN]


def read_bounce(mail: mailmod.Mail) -> BounceReport:
    """What the bounce says: a DSN first, then the other formats; else unrecognised."""
    if mail.message is None:
        return BounceReport(UNRECOGNISED, diagnostic="the message could not be parsed")
    report = read_dsn(mail.message) if mail.report_type == "delivery-status" else None
    if report is None:
        report = read_dsn(mail.message)  # some servers mislabel the report type
    if report is None:
        report = read_other(mail.message, mail.raw)
    return report or BounceReport(UNRECOGNISED, detector="none")


# --- applying it ---------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    bounce: Bounce
    score: float
    suppressed: bool
    summary: str


def stale_after(settings: Settings, subscriber: Subscriber | None) -> timedelta:
    days = settings.bounce_stale_days
    if subscriber is not None and subscriber.frequency is Frequency.WEEKLY:
        days += 7  # one digest a week: bounces a week apart are not stale
    return timedelta(days=days)


def score(session: Session, email_key: str, stale: timedelta, now: datetime) -> tuple[float, int]:
    """(the address's bounce score now, how many bounces make it), Mailman-style.

    Newest first: each bounce counts while it is within ``stale`` of the one after it
    (and the newest within ``stale`` of now), back to the last one that suppressed the
    address; one per digest (its worst).
    """
    rows = session.execute(
        select(Bounce.received_at, Bounce.points, Bounce.digest_id, Bounce.suppressed)
        .where(Bounce.email_key == email_key, (Bounce.points > 0) | Bounce.suppressed)
        .order_by(Bounce.received_at.desc(), Bounce.id.desc())
        .limit(SCORE_WINDOW)
    ).all()
    total = 0.0
    counted = 0
    per_digest: dict[int, float] = {}
    later = now
    for received_at, points, digest_id, suppressed in rows:
        if later - received_at > stale or suppressed:
            # A suppression ends a run of bounces: once an operator lifts it (the address
            # works again), the score starts from zero, as Mailman's re-enabling does.
            break
        later = received_at
        seen = per_digest.get(digest_id) if digest_id is not None else None
        if digest_id is not None and seen is not None:
            if points > seen:  # a later, worse report of the same digest
                total += points - seen
                per_digest[digest_id] = points
            continue
        if digest_id is not None:
            per_digest[digest_id] = points
        total += points
        counted += 1
    return round(total, 3), counted


def apply(
    settings: Settings,
    session: Session,
    report: BounceReport,
    digest: Digest,
    inbound_id: int | None,
    now: datetime | None = None,
) -> Applied:
    """Record the bounce of ``digest`` and act on it (suppress when hard, or over threshold)."""
    now = now or utcnow()
    subscriber = digest.subscriber
    row = Bounce(
        received_at=now,
        inbound_id=inbound_id,
        digest_id=digest.id,
        subscriber_id=subscriber.id,
        email_key=subscriber.email_key,
        kind=report.kind,
        status=report.status,
        action=report.action,
        diagnostic=clean_text(
            " ".join(x for x in (report.diagnostic, _named(report, subscriber)) if x), 2000
        )
        or None,
        detector=report.detector,
        points=report.points,
        suppressed=False,
    )
    session.add(row)
    session.flush()
    current, counted = score(session, subscriber.email_key, stale_after(settings, subscriber), now)
    code = None
    if report.status and report.status[0] in "45":
        code = 550 if report.status[0] == "5" else 450
    reason = ""
    if report.kind == HARD:
        reason = f"hard bounce {report.status} for digest {digest.id}: {report.diagnostic}".strip()
    elif report.points and current >= settings.bounce_score_threshold:
        reason = (
            f"bounce score {current:g} reached {settings.bounce_score_threshold:g} "
            f"({counted} bounces; the last {report.status or report.kind} for digest {digest.id})"
        )
    if reason:
        suppress(session, subscriber.email, reason.rstrip(": "), code)
        if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
            subscriber.status = SubscriberStatus.BOUNCED
        row.suppressed = True
    summary = f"{report.kind} bounce"
    if report.status:
        summary += f" {report.status}"
    summary += f" of digest {digest.id} to {subscriber.email}"
    if row.suppressed:
        summary += f": suppressed ({reason})"
    elif report.points:
        summary += f": score {current:g} of {settings.bounce_score_threshold:g}"
    return Applied(row, current, row.suppressed, summary[:2000])


def _named(report: BounceReport, subscriber: Subscriber) -> str:
    # A bounce naming another address (a forward that failed) is still this reader's:
    # the VERP address says so. Say which address the report named.
    others = [r for r in report.recipients if r.lower() != subscriber.email_key]
    return f"(the report names {', '.join(others[:3])})" if others else ""


__all__ = [
    "DELAYED",
    "HARD",
    "SOFT",
    "SOFT_POINTS",
    "UNRECOGNISED",
    "WARNING_POINTS",
    "Applied",
    "BounceReport",
    "apply",
    "read_bounce",
    "read_dsn",
    "read_other",
    "score",
    "stale_after",
]
