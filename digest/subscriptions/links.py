"""The links our emails carry, their URLs, and how long each kind keeps working.

Every link is a token of :mod:`digest.subscriptions.tokens` naming one reader and one
purpose. How long a link works is decided here, per purpose, so the email that carries
a link and the page that reads it agree:

* ``confirm``: 72 hours (:data:`~digest.subscriptions.tokens.CONFIRM_MAX_AGE`); a
  stranger's signup must not stay live for weeks.
* ``manage``, ``stop`` (remove one topic) and ``view`` (read a digest in the browser):
  90 days, so the links of any digest from the last two months work. Each digest
  carries fresh ones; an expired link's page offers a new one by email.
* ``unsubscribe``: never expires. Leaving must work from any email we ever sent
  (RFC 8058 one-click from a years-old message included); the worst a stolen one does
  is stop a digest its owner can restart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.store.models import Subscriber
from digest.subscriptions.tokens import CONFIRM_MAX_AGE, make_token, read_token

MANAGE_MAX_AGE = timedelta(days=90)
STOP_MAX_AGE = timedelta(days=90)
VIEW_MAX_AGE = timedelta(days=90)

#: How long a link of each purpose works (None: for good).
MAX_AGE: dict[str, timedelta | None] = {
    "confirm": CONFIRM_MAX_AGE,
    "manage": MANAGE_MAX_AGE,
    "stop": STOP_MAX_AGE,
    "view": VIEW_MAX_AGE,
    "unsubscribe": None,
}

#: The browser view lists the reader's digests of this many days.
HISTORY_DAYS = 60

_STAMP = "%Y%m%dT%H%MZ"


def digest_stamp(due_at: datetime) -> str:
    """A digest's name in a URL: the UTC minute it was due (``20261130T0700Z``).

    A reader's digests are one per period, each due at a different moment, so the due
    time names one of them; unlike a row id it is known before the row is written, so a
    preview carries the same link as the email that is sent.
    """
    return due_at.astimezone(UTC).strftime(_STAMP)


def parse_stamp(text: str) -> datetime | None:
    """The due time a :func:`digest_stamp` names, or None if ``text`` is not one."""
    if len(text) != 14:
        return None
    try:
        return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _base(settings: Settings) -> str:
    return settings.base_url.rstrip("/")


def view_url(
    settings: Settings,
    subscriber: Subscriber,
    due_at: datetime | None = None,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    """The digest due at ``due_at`` in the browser (without: the reader's latest)."""
    token = make_token(settings, subscriber, "view", session=session, now=now)
    url = f"{_base(settings)}/d/{token}"
    return f"{url}/{digest_stamp(due_at)}" if due_at is not None else url


def stop_url(
    settings: Settings,
    subscriber: Subscriber,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    """The base of the reader's per-topic stop links: ``<this>/<topic id>``."""
    token = make_token(settings, subscriber, "stop", session=session, now=now)
    return f"{_base(settings)}/stop/{token}"


def topic_stop_url(
    settings: Settings,
    subscriber: Subscriber,
    topic_id: int,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    return f"{stop_url(settings, subscriber, session=session, now=now)}/{topic_id}"


def read_link(
    settings: Settings,
    token: str,
    purpose: str,
    *,
    session: Session,
    now: datetime | None = None,
) -> int:
    """The subscriber id a link of ``purpose`` names, with that purpose's age limit."""
    return read_token(settings, token, purpose, MAX_AGE[purpose], session=session, now=now)


__all__ = [
    "HISTORY_DAYS",
    "MANAGE_MAX_AGE",
    "MAX_AGE",
    "STOP_MAX_AGE",
    "VIEW_MAX_AGE",
    "digest_stamp",
    "parse_stamp",
    "read_link",
    "stop_url",
    "topic_stop_url",
    "view_url",
]
