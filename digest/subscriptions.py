"""Subscribe, confirm, manage, unsubscribe: plain functions over a Session.

Every function that takes input from a stranger (an address typed in a form, a
row of a CSV file, a link clicked in an email) raises :class:`SubscriptionError`
with one sentence naming what was wrong; callers show ``str(exc)`` as is.

Status transitions::

    pending --confirm--> active <--pause/resume--> paused
    any --unsubscribe--> unsubscribed      (record and consent kept, never deleted)
    delivery marks bounced (permanent SMTP failure)

Signed links (confirm, manage, one-click unsubscribe) are HMAC-SHA256 over the
subscriber id, its ``token_version`` and the issue time, keyed by
``settings.secret_key`` or, when that is empty (the embedded default), by a
random key generated once and kept in ``app_meta`` so links survive restarts.
Bumping ``token_version`` (:func:`rotate_tokens`) invalidates every link sent so far.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from digest import query as query_language
from digest import suppression
from digest.config import Settings
from digest.models import (
    AppMeta,
    Digest,
    Frequency,
    Subscriber,
    SubscriberStatus,
    Topic,
    utcnow,
)

CONSENT_SOURCES = ("web", "email", "cli", "import")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_TOPICS = 50
MAX_QUERY_LENGTH = 1000
MAX_LABEL_LENGTH = 200
DEFAULT_LABEL_LENGTH = 60
MAX_PAPERS_LIMIT = 100

PURPOSES = ("confirm", "manage", "unsubscribe")
#: A confirmation link older than this is refused (the reader asks for a new one).
CONFIRM_MAX_AGE = timedelta(days=7)
SECRET_KEY_META = "secret_key"
# Links are printed in emails years later: allow a little clock skew, not the future.
_CLOCK_SKEW = 300


class SubscriptionError(ValueError):
    """Bad input or an impossible change; ``str()`` is one sentence for the user."""


class InvalidEmail(SubscriptionError):
    """An address email-validator refused; ``reason`` is without the address."""

    def __init__(self, address: str, detail: str) -> None:
        self.address = address
        self.reason = f"the email address is not valid: {detail}"
        super().__init__(f'"{address}": {self.reason}')


class TokenError(SubscriptionError):
    """A signed link that is malformed, tampered with, expired or superseded.

    ``kind`` is ``"invalid"``, ``"expired"`` or ``"superseded"`` so a web page can
    offer to send a fresh link when it is only old.
    """

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


# --- validation -------------------------------------------------------------------------


def normalise_email(text: str) -> tuple[str, str]:
    """``(email, email_key)``: the address as we store and send to, and its unique key.

    No DNS lookup (a subscribe form must not hang on a slow resolver). The key is
    lower-cased whole: mailbox local parts are case-sensitive by the RFC and
    case-insensitive everywhere in practice, and two subscriptions for
    ``Ann@x.org`` and ``ann@x.org`` would send two digests to one inbox.
    """
    address = (text or "").strip()
    if not address:
        raise InvalidEmail(address, "it is empty.")
    try:
        # No SMTPUTF8: most relays refuse a non-ASCII mailbox name, and we could never
        # deliver to it. Non-ASCII domains are fine (they go out as punycode).
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(address, str(exc)) from None
    return result.normalized, result.normalized.lower()


#: The only zones that are not a place: a reader who wants no daylight saving at all.
_UTC_ZONES = frozenset({"UTC", "Etc/UTC"})
_CITY_HINT = "use a city zone such as America/New_York or Europe/Paris (or UTC)"


def _is_place(name: str) -> bool:
    # Only a zone that names a place (Area/Location) follows the clock of the people who
    # live there, daylight saving included. "Etc/GMT+5" is UTC−5 all year (the sign is
    # POSIX's), "EST" and "MST" never have summer time, and "EST5EDT" is a rule, not a place.
    return name in _UTC_ZONES or ("/" in name and not name.startswith("Etc/"))


@lru_cache(maxsize=1)
def _zones() -> tuple[frozenset[str], dict[str, str], dict[str, list[str]], frozenset[str]]:
    """Zones we accept, by folded name and by city, and the folded names of those we refuse."""
    every = frozenset(n for n in available_timezones() if n not in ("Factory", "localtime"))
    names = frozenset(n for n in every if _is_place(n))
    by_folded = {_fold_zone(n): n for n in names}
    by_city: dict[str, list[str]] = {}
    for name in names:
        if "/" in name:
            by_city.setdefault(_fold_zone(name.rsplit("/", 1)[1]), []).append(name)
    refused = frozenset(_fold_zone(n) for n in every - names)
    return names, by_folded, by_city, refused


def _fold_zone(name: str) -> str:
    return name.strip().replace(" ", "_").lower()


_OFFSET = re.compile(r"^(?:utc|gmt)?\s*[+-]\s*\d{1,2}(?::?\d{2})?$", re.IGNORECASE)


def validate_timezone(name: str) -> str:
    """The canonical IANA name for ``name``, or a :class:`SubscriptionError` with a hint.

    Differences of case and spaces for underscores are forgiven (``europe/paris``,
    ``America/New York``): they are unambiguous. Anything else gets the closest
    names as a suggestion. Only places (and UTC) are accepted: fixed offsets, however
    they are written (``UTC+2``, ``Etc/GMT-2``, ``EST``), do not follow daylight
    saving, so the digest would arrive an hour off half the year.
    """
    result = _timezone(name)
    if isinstance(result, SubscriptionError):
        raise SubscriptionError(str(result))
    return result


@lru_cache(maxsize=4096)
def _timezone(name: str) -> str | SubscriptionError:
    # Failures are cached too: an import repeating one typo 10,000 times computes one
    # suggestion, not 10,000.
    try:
        return _lookup_timezone(name)
    except SubscriptionError as exc:
        return exc


def _lookup_timezone(name: str) -> str:
    names, by_folded, by_city, refused = _zones()
    text = (name or "").strip()
    if text in names:
        return text
    folded = _fold_zone(text)
    if folded in by_folded:
        return by_folded[folded]
    if not text:
        raise SubscriptionError(f"the time zone is empty: {_CITY_HINT}")
    if folded in refused or _OFFSET.match(text):
        raise SubscriptionError(
            f'the time zone "{text}" is a fixed offset or an abbreviation, not a place: '
            f"offsets do not follow daylight saving; {_CITY_HINT}"
        )
    candidates = sorted(by_city.get(folded, []))
    if not candidates:
        matches = difflib.get_close_matches(folded, list(by_folded), n=3, cutoff=0.75)
        candidates = [by_folded[m] for m in matches]
        if not candidates:
            cities = difflib.get_close_matches(folded, list(by_city), n=2, cutoff=0.8)
            candidates = [z for c in cities for z in by_city[c]]
    if candidates:
        options = " or ".join(f'"{c}"' for c in candidates[:3])
        raise SubscriptionError(f'unknown time zone "{text}": did you mean {options}?')
    raise SubscriptionError(
        f'unknown time zone "{text}": use an IANA time zone name such as Europe/Paris '
        "or America/New_York"
    )


def parse_weekday(value: int | str) -> int:
    """0 (Monday) … 6 (Sunday) from an int or a name: ``mon``, ``Monday``, ``wed``…"""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 6:
            return value
    else:
        text = str(value).strip().lower()
        for index, day in enumerate(_WEEKDAY_NAMES):
            if len(text) >= 3 and day.startswith(text):
                return index
    raise SubscriptionError(
        f'the weekday "{value}" is not one of {", ".join(WEEKDAYS)} (Monday to Sunday)'
    )


def weekday_name(index: int) -> str:
    return WEEKDAYS[index]


def validate_frequency(value: Frequency | str) -> Frequency:
    try:
        return Frequency(str(value).strip().lower())
    except ValueError:
        raise SubscriptionError(f'the frequency "{value}" is not one of daily, weekly') from None


def validate_hour(value: int | str) -> int:
    try:
        hour = int(str(value).strip())
    except ValueError:
        hour = -1
    if not 0 <= hour <= 23:
        raise SubscriptionError(f'the send hour "{value}" is not a whole hour from 0 to 23')
    return hour


def validate_max_papers(value: int | str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PAPERS_LIMIT:
        raise SubscriptionError(
            f'the maximum papers per digest "{value}" is not a number from 1 to {MAX_PAPERS_LIMIT}'
        )
    return number


def normalise_query(text: str) -> str:
    """The query as stored: runs of whitespace (line breaks from a CSV cell, tabs) made one space.

    A run of whitespace never means more than one space in the query language, so every
    path that stores a topic goes through this, and two topics differing only in spacing are one topic.
    """
    return " ".join((text or "").split())


def topic_key(query: str) -> str:
    """What makes two topics the same: the normalised query, ignoring case.

    Words, fields and ``trending`` match case-insensitively, so ``X`` next to ``x`` would
    only send the same papers twice. (Lower-case ``or``/``and``/``not`` are not operators,
    so ``a or b`` differs from ``a OR b``; a reader wanting both is rare enough not to
    justify a second notion of "same".)
    """
    return normalise_query(query).casefold()


def validate_query(text: str) -> str:
    """The query, normalised (:func:`normalise_query`), if the query language accepts it."""
    query = normalise_query(text)
    if len(query) > MAX_QUERY_LENGTH:
        raise SubscriptionError(
            f"the topic query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}"
        )
    try:
        query_language.parse(query)
    except query_language.QueryError as exc:
        raise SubscriptionError(f'bad topic query "{query}": {exc}') from None
    return query


def validate_label(label: str | None, query: str) -> str:
    """The label to store for ``query``: ``label`` with its whitespace collapsed, or the default."""
    name = " ".join((label or "").split()) or default_label(query)
    if len(name) > MAX_LABEL_LENGTH:
        raise SubscriptionError(
            f"the topic label is {len(name)} characters long; the limit is {MAX_LABEL_LENGTH}"
        )
    return name


def default_label(query: str) -> str:
    """The query itself, shortened at a word boundary when it is long."""
    text = " ".join(query.split())
    if len(text) <= DEFAULT_LABEL_LENGTH:
        return text
    cut = text[: DEFAULT_LABEL_LENGTH - 1]
    if " " in cut[DEFAULT_LABEL_LENGTH // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def _validate_consent_source(source: str) -> str:
    if source not in CONSENT_SOURCES:
        raise SubscriptionError(
            f'the consent source "{source}" is not one of {", ".join(CONSENT_SOURCES)}'
        )
    return source


# --- subscribers ------------------------------------------------------------------------


def add_subscriber(
    session: Session,
    email: str,
    *,
    topics: Iterable[str] = (),
    confirmed: bool = False,
    timezone: str = "UTC",
    frequency: Frequency | str = "daily",
    weekday: int | str = 0,
    hour: int = 7,
    max_papers: int = 20,
    consent_source: str = "cli",
    consent_ip: str | None = None,
    consent_detail: str | None = None,
    now: datetime | None = None,
) -> Subscriber:
    """Validate everything, then add one subscriber and its topics (flushed, not committed).

    ``confirmed=False`` makes a ``pending`` subscriber who gets nothing until they
    click the link from :func:`confirm_url`; ``confirmed=True`` (an admin adding
    someone explicitly, or an import) makes them ``active`` at once. ``now`` stamps
    the creation, consent and confirmation (default: the clock; the demo replays a day).
    """
    address, key = normalise_email(email)
    zone = validate_timezone(timezone)
    freq = validate_frequency(frequency)
    day = parse_weekday(weekday)
    send_hour = validate_hour(hour)
    maximum = validate_max_papers(max_papers)
    _validate_consent_source(consent_source)
    queries = dedupe_topics(validate_query(q) for q in topics)
    if len(queries) > MAX_TOPICS:
        raise SubscriptionError(f"{len(queries)} topics: the limit is {MAX_TOPICS}")
    existing = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()
    if existing is not None:
        raise SubscriptionError(_exists_message(existing))
    _refuse_suppressed(session, key, address)
    now = now or utcnow()
    subscriber = Subscriber(
        email=address,
        email_key=key,
        status=SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
        timezone=zone,
        frequency=freq,
        weekday=day,
        send_hour=send_hour,
        max_papers=maximum,
        created_at=now,
        confirmed_at=now if confirmed else None,
        consent_source=consent_source,
        consent_at=now,
        consent_ip=consent_ip,
        consent_detail=consent_detail,
        token_version=0,
    )
    subscriber.topics = [Topic(label=default_label(q), query=q, created_at=now) for q in queries]
    session.add(subscriber)
    try:
        session.flush()
    except IntegrityError as exc:  # added by someone else between our check and insert
        raise SubscriptionError(
            f"{address} was subscribed at the same moment by someone else"
        ) from exc
    return subscriber


def _exists_message(subscriber: Subscriber) -> str:
    """Why an address that has a row cannot simply be added (or re-subscribed)."""
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return (
            f"{subscriber.email} unsubscribed on {_day(subscriber.unsubscribed_at)}: "
            "subscribing them again needs their fresh consent"
        )
    if subscriber.status is SubscriberStatus.BOUNCED:
        return f"{subscriber.email} is bounced: {_unsuppress_hint(subscriber.email)}"
    return f"{subscriber.email} is already subscribed (status: {subscriber.status.value})"


def _day(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d}" if when is not None else "an unknown date"


def _unsuppress_hint(address: str) -> str:
    return (
        "mail to it failed permanently; if the address works again, "
        f"lift that with `digest subscribers unsuppress {address}`"
    )


def _refuse_suppressed(session: Session, key: str, address: str) -> None:
    # Delivery skips a suppressed address, so subscribing it would look fine and send nothing.
    if suppression.is_suppressed(session, key):
        raise SubscriptionError(
            f"{address} is on the suppression list: {_unsuppress_hint(address)}"
        )


def dedupe_topics(queries: Iterable[str]) -> list[str]:
    """Validated queries without repeats in the sense of :func:`topic_key`; the first one wins."""
    first: dict[str, str] = {}
    for query in queries:
        first.setdefault(topic_key(query), query)
    return list(first.values())


def get_subscriber(session: Session, email: str) -> Subscriber | None:
    """The subscriber for this address however it is typed, or None."""
    try:
        _, key = normalise_email(email)
    except SubscriptionError:
        key = (email or "").strip().lower()
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()


def update_subscriber(
    session: Session,
    subscriber: Subscriber,
    *,
    timezone: str | None = None,
    frequency: Frequency | str | None = None,
    weekday: int | str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
) -> Subscriber:
    """Change delivery settings (the manage page); ``None`` leaves a value as it is."""
    changes = _setting_changes(timezone, frequency, weekday, hour, max_papers)
    for name, value in changes.items():
        setattr(subscriber, name, value)
    session.flush()
    return subscriber


def _setting_changes(
    timezone: str | None,
    frequency: Frequency | str | None,
    weekday: int | str | None,
    hour: int | None,
    max_papers: int | None,
) -> dict[str, Any]:
    """Validated column values for the settings given; ``None`` means not given."""
    changes: dict[str, Any] = {}
    if timezone is not None:
        changes["timezone"] = validate_timezone(timezone)
    if frequency is not None:
        changes["frequency"] = validate_frequency(frequency)
    if weekday is not None:
        changes["weekday"] = parse_weekday(weekday)
    if hour is not None:
        changes["send_hour"] = validate_hour(hour)
    if max_papers is not None:
        changes["max_papers"] = validate_max_papers(max_papers)
    return changes


def confirm(
    session: Session,
    token: str,
    *,
    settings: Settings | None = None,
    max_age: timedelta | float | None = CONFIRM_MAX_AGE,
) -> Subscriber:
    """pending → active for the subscriber named by a confirmation token.

    Clicking the link twice (or after pausing) is fine and changes nothing; a link
    for an address that has since unsubscribed or bounced is refused, so an old
    email cannot re-subscribe someone who left.
    """
    if settings is None:
        from digest.config import get_settings

        settings = get_settings()
    subscriber_id = read_token(settings, token, "confirm", max_age, session=session)
    subscriber = session.get(Subscriber, subscriber_id)
    assert subscriber is not None  # read_token checked it exists
    if subscriber.status is SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = utcnow()
        session.flush()
    elif subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
        raise SubscriptionError(
            f"{subscriber.email} is {subscriber.status.value}: subscribe again to get digests"
        )
    return subscriber


def pause(session: Session, subscriber: Subscriber) -> bool:
    """active → paused; True if it changed, False if it was already paused."""
    if subscriber.status is SubscriberStatus.PAUSED:
        return False
    if subscriber.status is not SubscriberStatus.ACTIVE:
        raise SubscriptionError(_cannot("pause", subscriber))
    subscriber.status = SubscriberStatus.PAUSED
    session.flush()
    return True


def resume(session: Session, subscriber: Subscriber) -> bool:
    """paused → active; True if it changed, False if it was already active."""
    if subscriber.status is SubscriberStatus.ACTIVE:
        return False
    if subscriber.status is not SubscriberStatus.PAUSED:
        raise SubscriptionError(_cannot("resume", subscriber))
    subscriber.status = SubscriberStatus.ACTIVE
    session.flush()
    return True


def _cannot(action: str, subscriber: Subscriber) -> str:
    why = {
        SubscriberStatus.PENDING: "has not confirmed the subscription yet",
        SubscriberStatus.UNSUBSCRIBED: "has unsubscribed (only they can subscribe again)",
        SubscriberStatus.BOUNCED: "is bounced: mail to the address failed permanently",
    }.get(subscriber.status, f"is {subscriber.status.value}")
    return f"cannot {action} {subscriber.email}: the subscriber {why}"


def unsubscribe(session: Session, subscriber: Subscriber) -> bool:
    """Any status → unsubscribed. The row, topics and consent record are kept.

    True if it changed; a second click keeps the first unsubscription time.
    """
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return False
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = utcnow()
    session.flush()
    return True


def resubscribe(
    session: Session,
    subscriber: Subscriber,
    *,
    consent_source: str,
    confirmed: bool = False,
    consent_ip: str | None = None,
    consent_detail: str | None = None,
    topics: Iterable[str] = (),
    timezone: str | None = None,
    frequency: Frequency | str | None = None,
    weekday: int | str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
    now: datetime | None = None,
) -> Subscriber:
    """unsubscribed → pending (or active), for someone who left and gave consent again.

    Without ``confirmed`` (a web signup, or an admin asking by email) nothing is sent
    until the new confirmation link is clicked; ``confirmed`` is an admin's word that
    they hold the reader's fresh consent. The row stays: the new consent record
    replaces the old one, which is summarised in the new detail together with the
    unsubscription date (the column is cleared: the subscriber is no longer
    unsubscribed). Every link sent before stops working, except the way out. Settings
    given replace the stored ones (``None`` keeps them), ``topics`` are added to the
    kept ones; everything is validated before anything changes. Any other status, or
    an address on the suppression list, is an error naming it.
    """
    if subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        raise SubscriptionError(_exists_message(subscriber))
    _refuse_suppressed(session, subscriber.email_key, subscriber.email)
    _validate_consent_source(consent_source)
    changes = _setting_changes(timezone, frequency, weekday, hour, max_papers)
    kept = {topic_key(t.query) for t in subscriber.topics}
    added = [
        q for q in dedupe_topics(validate_query(q) for q in topics) if topic_key(q) not in kept
    ]
    if len(subscriber.topics) + len(added) > MAX_TOPICS:
        raise SubscriptionError(
            f"{len(subscriber.topics) + len(added)} topics: the limit is {MAX_TOPICS}"
        )
    now = now or utcnow()
    previous = f"previously {subscriber.consent_source} consent at {subscriber.consent_at:%Y-%m-%d %H:%M} UTC"
    if subscriber.consent_ip:
        previous += f" from {subscriber.consent_ip}"
    if subscriber.consent_detail:
        previous += f" ({subscriber.consent_detail})"
    if subscriber.unsubscribed_at is not None:
        previous += f", unsubscribed at {subscriber.unsubscribed_at:%Y-%m-%d %H:%M} UTC"
    for name, value in changes.items():
        setattr(subscriber, name, value)
    subscriber.topics.extend(Topic(label=default_label(q), query=q, created_at=now) for q in added)
    subscriber.status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
    subscriber.confirmed_at = now if confirmed else None
    subscriber.unsubscribed_at = None
    subscriber.consent_source = consent_source
    subscriber.consent_at = now
    subscriber.consent_ip = consent_ip
    subscriber.consent_detail = f"{consent_detail}; {previous}" if consent_detail else previous
    subscriber.token_version += 1
    session.flush()
    return subscriber


def remove(session: Session, subscriber: Subscriber) -> None:
    """Delete the subscriber, their topics and digest history (an admin's erasure)."""
    session.delete(subscriber)
    session.flush()


def rotate_tokens(session: Session, subscriber: Subscriber) -> None:
    """Invalidate every confirm/manage/unsubscribe link sent to this subscriber so far."""
    subscriber.token_version += 1
    session.flush()


def add_topic(
    session: Session, subscriber: Subscriber, query: str, label: str | None = None
) -> Topic:
    """Add a saved topic; the label defaults to the query, shortened."""
    text = validate_query(query)
    name = validate_label(label, text)
    key = topic_key(text)
    for existing in subscriber.topics:
        if topic_key(existing.query) == key:
            raise SubscriptionError(f'{subscriber.email} already has the topic "{existing.query}"')
    if len(subscriber.topics) >= MAX_TOPICS:
        raise SubscriptionError(f"{subscriber.email} has {MAX_TOPICS} topics, the limit")
    topic = Topic(label=name, query=text, created_at=utcnow())
    subscriber.topics.append(topic)
    session.flush()
    return topic


def remove_topic(session: Session, subscriber: Subscriber, topic_id: int) -> Topic:
    """Remove one of this subscriber's topics by id (someone else's id is an error)."""
    for topic in subscriber.topics:
        if topic.id == topic_id:
            subscriber.topics.remove(topic)
            session.flush()
            return topic
    raise SubscriptionError(f"{subscriber.email} has no topic with id {topic_id}")


def subscriber_record(
    subscriber: Subscriber, topics: Iterable[Topic] | None = None
) -> dict[str, Any]:
    """Everything about a subscriber as plain data (for JSON output and exports).

    Pass ``topics`` when they were loaded in bulk, to avoid a query per subscriber.
    """
    topics = subscriber.topics if topics is None else topics
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "status": subscriber.status.value,
        "timezone": subscriber.timezone,
        "frequency": subscriber.frequency.value,
        "weekday": weekday_name(subscriber.weekday),
        "hour": subscriber.send_hour,
        "max": subscriber.max_papers,
        "created_at": subscriber.created_at,
        "confirmed_at": subscriber.confirmed_at,
        "unsubscribed_at": subscriber.unsubscribed_at,
        "consent": {
            "source": subscriber.consent_source,
            "at": subscriber.consent_at,
            "ip": subscriber.consent_ip,
            "detail": subscriber.consent_detail,
        },
        "topics": [{"id": t.id, "label": t.label, "query": t.query} for t in topics],
    }


def recent_digests(session: Session, subscriber: Subscriber, limit: int = 10) -> list[Digest]:
    return list(
        session.scalars(
            select(Digest)
            .where(Digest.subscriber_id == subscriber.id)
            .order_by(Digest.planned_at.desc(), Digest.id.desc())
            .limit(limit)
        )
    )


# --- signed links -----------------------------------------------------------------------


def insert_ignore(session: Session, table: Any, index_elements: list[str]) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=index_elements)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=index_elements)
    raise NotImplementedError(f"no INSERT … ON CONFLICT for {dialect}")


def signing_key(session: Session, settings: Settings) -> bytes:
    """``settings.secret_key``, or the installation's generated key from ``app_meta``.

    Cached on the session: a batch rendering thousands of unsubscribe links reads
    the table once. The key is written in the caller's transaction with ON
    CONFLICT DO NOTHING and read back, so two processes starting at once agree on
    one key. (Set DIGEST_SECRET_KEY in production: it survives a database restore.)
    """
    if settings.secret_key:
        return settings.secret_key.encode()
    cached = session.info.get("digest_signing_key")
    if cached is not None:
        return cached
    stored = session.get(AppMeta, SECRET_KEY_META)
    if stored is None:
        session.execute(
            insert_ignore(session, AppMeta.__table__, ["key"]).values(
                key=SECRET_KEY_META, value=secrets.token_urlsafe(48)
            )
        )
        stored = session.get(AppMeta, SECRET_KEY_META, populate_existing=True)
        assert stored is not None
    key = stored.value.encode()
    session.info["digest_signing_key"] = key
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(key: bytes, purpose: str, body: str) -> str:
    digest = hmac.new(key, f"digest-link|{purpose}|{body}".encode(), hashlib.sha256).digest()
    return _b64(digest[:18])


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; use one of {PURPOSES}")


def _with_session(settings: Settings, session: Session | None, fn: Any) -> Any:
    if session is not None:
        return fn(session)
    from digest.db import session_scope

    with session_scope(settings) as own:
        return fn(own)


def make_token(
    settings: Settings,
    subscriber: Subscriber,
    purpose: str,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    """A URL-safe signed token ``<id>.<version>.<issued>.<mac>`` for one purpose.

    The session defaults to the subscriber's own (or a short one of our own when the
    subscriber is detached); it is needed only when the key lives in ``app_meta``.
    """
    _check_purpose(purpose)
    if subscriber.id is None:
        raise ValueError("flush the subscriber before making a token for it")
    issued = int((now or utcnow()).timestamp())
    body = f"{subscriber.id}.{subscriber.token_version}.{issued}"
    key = _with_session(
        settings, session or object_session(subscriber), lambda s: signing_key(s, settings)
    )
    return f"{body}.{_mac(key, purpose, body)}"


_TOKEN = re.compile(r"^(\d{1,18})\.(\d{1,9})\.(\d{1,12})\.([A-Za-z0-9_-]{24})$")


def read_token(
    settings: Settings,
    token: str,
    purpose: str,
    max_age: timedelta | float | None = None,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> int:
    """The subscriber id a token was made for, or :class:`TokenError`.

    Checks, in order: shape, signature (constant time; a token for another purpose
    fails here), age (``max_age`` in seconds or a timedelta; None = no limit, right
    for unsubscribe links, which must work forever), that the subscriber still
    exists and that its ``token_version`` has not moved on (except for unsubscribe
    links, which stay valid for good).
    """
    _check_purpose(purpose)
    match = _TOKEN.match((token or "").strip())
    if not match:
        raise TokenError("this link is not valid: it may have been cut short or changed")
    sub_id, version, issued = (int(g) for g in match.groups()[:3])
    body = ".".join(match.groups()[:3])

    def check(s: Session) -> int:
        key = signing_key(s, settings)
        if not hmac.compare_digest(_mac(key, purpose, body), match.group(4)):
            raise TokenError("this link is not valid: it may have been cut short or changed")
        current = (now or utcnow()).timestamp()
        if issued > current + _CLOCK_SKEW:
            raise TokenError("this link is not valid: it was issued in the future")
        if max_age is not None:
            limit = max_age.total_seconds() if isinstance(max_age, timedelta) else max_age
            if current - issued > limit:
                raise TokenError("this link has expired: ask for a new one", "expired")
        row = s.execute(select(Subscriber.token_version).where(Subscriber.id == sub_id)).first()
        if row is None:
            raise TokenError("this link is not valid: the subscription no longer exists")
        # Rotating tokens retires confirm and manage links, never the way out: an
        # unsubscribe link in any email we ever sent must keep working (RFC 8058).
        if row[0] != version and purpose != "unsubscribe":
            raise TokenError(
                "this link is no longer valid: a newer one has been sent", "superseded"
            )
        return sub_id

    return _with_session(settings, session, check)


def _url(settings: Settings, kind: str, subscriber: Subscriber, session: Session | None) -> str:
    token = make_token(settings, subscriber, kind, session=session)
    return f"{settings.base_url.rstrip('/')}/{kind}/{token}"


def confirm_url(
    settings: Settings, subscriber: Subscriber, *, session: Session | None = None
) -> str:
    return _url(settings, "confirm", subscriber, session)


def manage_url(
    settings: Settings, subscriber: Subscriber, *, session: Session | None = None
) -> str:
    return _url(settings, "manage", subscriber, session)


def unsubscribe_url(
    settings: Settings, subscriber: Subscriber, *, session: Session | None = None
) -> str:
    """The one-click unsubscribe link (RFC 8058 POST target and the footer link)."""
    return _url(settings, "unsubscribe", subscriber, session)
