"""The form fields pages share: the choices they offer and the values they re-show.

Every choice offered is one :mod:`digest.subscriptions.validate` accepts; every value
posted is still checked there (a select can be edited, a request can be forged).
"""

from __future__ import annotations

from typing import Any

from digest.store.models import Subscriber
from digest.subscriptions.validate import WEEKDAYS, timezone_choices, weekday_name
from digest.web.wording import QUERY_EXAMPLES, WEEKDAY_NAMES

#: The schedule fields of the subscribe and manage forms.
SCHEDULE_FIELDS = ("frequency", "weekday", "hour", "timezone")
SIGNUP_FIELDS = ("email", "topics", *SCHEDULE_FIELDS)
SETTINGS_FIELDS = (*SCHEDULE_FIELDS, "max_papers")

DEFAULT_SIGNUP = {
    "email": "",
    "topics": "",
    "frequency": "daily",
    "weekday": "mon",
    "hour": "7",
    "timezone": "UTC",
}


def choices() -> dict[str, Any]:
    """What the schedule selects offer (template variables)."""
    return {
        "timezones": timezone_choices(),
        "hours": [(str(h), f"{h:02d}:00") for h in range(24)],
        "weekdays": list(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)),
        "examples": QUERY_EXAMPLES,
    }


def subscriber_values(subscriber: Subscriber) -> dict[str, str]:
    """A subscription's settings as the manage form shows them."""
    return {
        "frequency": subscriber.frequency.value,
        "weekday": weekday_name(subscriber.weekday),
        "hour": str(subscriber.send_hour),
        "timezone": subscriber.timezone,
        "max_papers": str(subscriber.max_papers),
    }


__all__ = [
    "DEFAULT_SIGNUP",
    "SCHEDULE_FIELDS",
    "SETTINGS_FIELDS",
    "SIGNUP_FIELDS",
    "choices",
    "subscriber_values",
]
