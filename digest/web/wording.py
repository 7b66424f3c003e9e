"""How the pages describe a subscription in words: its status, schedule, next digest."""

from __future__ import annotations

from datetime import datetime

from digest.core import schedule
from digest.core.clock import utcnow
from digest.store.models import Frequency, Subscriber, SubscriberStatus

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


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


__all__ = ["describe_next", "describe_schedule", "describe_status", "next_send"]
