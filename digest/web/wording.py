"""How the pages describe a subscription in words: its status, schedule, next digest;
and the words a reader agrees to, with their version (kept with every consent)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from digest.core import schedule
from digest.core.clock import utcnow
from digest.store.models import Frequency, Subscriber, SubscriberStatus

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: The sentence next to the Subscribe and Confirm buttons: what the reader agrees to.
CONSENT_TEXT = (
    "We email you one digest per day or week with the new papers that match your topics, "
    "nothing else. Every email has a one-click unsubscribe link; nothing is sent until you "
    "confirm from the email we send you."
)
#: Recorded with each consent: a new wording gets a new version by itself.
WORDING_VERSION = "2026-12-01." + hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()[:8]

#: The query language, in examples (the index page's guide and the manage page's).
QUERY_EXAMPLES = (
    ("machine unlearning", "papers with both words (model finds models, LLM finds LLMs)"),
    ('"reward hacking"', "the exact phrase"),
    ("jailbreak OR guardrails", "either word; AND is implicit, NOT or -word leaves out"),
    ("title:agents", "only in the title (also abstract:, ti:, abs:)"),
    ("author:bengio", "by an author"),
    ("cat:cs.CL", "an arXiv category (cat:cs.* for all of cs)"),
    ("trending", "the day's most upvoted Hugging Face papers"),
)
WEEKDAY_NAMES = _WEEKDAYS


def describe_status(subscriber: Subscriber) -> str:
    return {
        SubscriberStatus.PENDING: "Waiting for you to confirm: click the link in the "
        "confirmation email. Nothing is sent until then.",
        SubscriberStatus.ACTIVE: "Active: you get digests.",
        SubscriberStatus.PAUSED: "Paused: no digests until the subscription is resumed.",
        SubscriberStatus.UNSUBSCRIBED: "Unsubscribed: you get no digests.",
        SubscriberStatus.BOUNCED: "Stopped: mail to this address failed permanently.",
    }[subscriber.status]


def describe_schedule(subscriber: Subscriber) -> str:
    """``Every day at 07:00 (Europe/Paris)`` or ``Every Monday at 07:00 (UTC)``."""
    at = f"{subscriber.send_hour:02d}:00 ({subscriber.timezone})"
    if subscriber.frequency is Frequency.WEEKLY:
        return f"Every {_WEEKDAYS[subscriber.weekday]} at {at}"
    return f"Every day at {at}"


def next_send(subscriber: Subscriber, now: datetime | None = None) -> datetime:
    """The reader's next local send time after ``now``, in their zone."""
    return schedule.next_send(
        now or utcnow(),
        subscriber.timezone,
        subscriber.frequency,
        subscriber.send_hour,
        subscriber.weekday,
    )


def describe_next(subscriber: Subscriber, now: datetime | None = None) -> str:
    """``Monday 30 November at 07:00 (Europe/Paris)``."""
    due = next_send(subscriber, now)
    return f"{due:%A} {due.day} {due:%B} at {due:%H}:00 ({subscriber.timezone})"


__all__ = [
    "CONSENT_TEXT",
    "QUERY_EXAMPLES",
    "WEEKDAY_NAMES",
    "WORDING_VERSION",
    "describe_next",
    "describe_schedule",
    "describe_status",
    "next_send",
]
