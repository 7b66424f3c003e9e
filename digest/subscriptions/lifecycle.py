"""Subscribe, confirm, manage, unsubscribe: plain functions over a Session.

Every function that takes input from a stranger (an address typed in a form, a
row of a CSV file, a link clicked in an email) raises :class:`SubscriptionError`
with one sentence naming what was wrong; callers show ``str(exc)`` as is.

Status transitions::

    pending --confirm--> active <--pause/resume--> paused
    any --unsubscribe--> unsubscribed      (record and consent kept, never deleted)
    delivery marks bounced (permanent SMTP failure)

Signed links are :mod:`digest.subscriptions.tokens`; input checks are
:mod:`digest.subscriptions.validate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.config import Settings, get_settings
from digest.core.addresses import email_key
from digest.core.clock import utcnow
from digest.errors import SubscriptionError
from digest.store import suppression
from digest.store.models import (
    Digest,
    Frequency,
    Subscriber,
    SubscriberStatus,
    Topic,
    new_link_secret,
)
from digest.subscriptions.tokens import CONFIRM_MAX_AGE, read_token
from digest.subscriptions.validate import (
    MAX_TOPICS,
    dedupe_topics,
    default_label,
    normalise_email,
    parse_weekday,
    topic_key,
    validate_consent_source,
    validate_frequency,
    validate_hour,
    validate_label,
    validate_max_papers,
    validate_query,
    validate_timezone,
    weekday_name,
)


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
    allow_erased: bool = False,
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
    validate_consent_source(consent_source)
    queries = dedupe_topics(validate_query(q) for q in topics)
    if len(queries) > MAX_TOPICS:
        raise SubscriptionError(f"{len(queries)} topics: the limit is {MAX_TOPICS}")
    existing = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()
    if existing is not None:
        raise SubscriptionError(_exists_message(existing))
    _refuse_suppressed(session, key, address, allow_erased)
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
        link_secret=new_link_secret(),
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


def _refuse_suppressed(
    session: Session, key: str, address: str, allow_erased: bool = False
) -> None:
    # Delivery skips a suppressed address, so subscribing it would look fine and send nothing.
    # An erased reader coming back through the web's double opt-in is the one exception
    # (``allow_erased``): their confirmation lifts the fingerprint (subscriptions.signup).
    if not suppression.is_suppressed(session, key, erased=not allow_erased):
        return
    if suppression.is_erased(session, key) and not suppression.is_suppressed(
        session, key, erased=False
    ):
        raise SubscriptionError(
            f"{address} was erased at the reader's request: only they can subscribe it "
            "again, on the web page (or lift it with "
            f"`digest subscribers unsuppress {address}` if they asked you)"
        )
    raise SubscriptionError(f"{address} is on the suppression list: {_unsuppress_hint(address)}")


def get_subscriber(session: Session, email: str) -> Subscriber | None:
    """The subscriber for this address however it is typed, or None."""
    try:
        _, key = normalise_email(email)
    except SubscriptionError:  # an address stored before today's rules still has a row
        key = email_key(email)
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
    change_subscriber(
        session,
        subscriber,
        timezone=timezone,
        frequency=frequency,
        weekday=weekday,
        hour=hour,
        max_papers=max_papers,
    )
    return subscriber


def change_subscriber(
    session: Session,
    subscriber: Subscriber,
    *,
    timezone: str | None = None,
    frequency: Frequency | str | None = None,
    weekday: int | str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
    labels: Mapping[int, str | None] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """Change settings and topic labels; returns ``{what: (before, after)}`` of what changed.

    ``None`` leaves a setting as it is. ``labels`` maps a topic id of this subscriber
    to its new label (``None`` or blank: back to the default, the query in plain
    words); an id that is not one of theirs is an error. Everything is validated
    before anything changes; the consent record and status are never touched.
    """
    settings = _setting_changes(timezone, frequency, weekday, hour, max_papers)
    topics = {t.id: t for t in subscriber.topics}
    new_labels: dict[int, str] = {}
    for topic_id, label in (labels or {}).items():
        topic = topics.get(topic_id)
        if topic is None:
            ids = ", ".join(str(i) for i in topics) or "none"
            raise SubscriptionError(
                f"{subscriber.email} has no topic with id {topic_id} (their topics: {ids})"
            )
        new_labels[topic_id] = validate_label(label, topic.query)
    changed: dict[str, tuple[Any, Any]] = {}
    for name, value in settings.items():
        before = getattr(subscriber, name)
        if before != value:
            changed[name] = (before, value)
            setattr(subscriber, name, value)
    for topic_id, label in new_labels.items():
        topic = topics[topic_id]
        if topic.label != label:
            changed[f"label of topic {topic_id}"] = (topic.label, label)
            topic.label = label
    session.flush()
    return changed


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
    allow_erased: bool = False,
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
    _refuse_suppressed(session, subscriber.email_key, subscriber.email, allow_erased)
    validate_consent_source(consent_source)
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


def list_subscribers(
    session: Session, statuses: Iterable[SubscriberStatus | str] = ()
) -> list[tuple[Subscriber, int]]:
    """Subscribers (of these statuses; default all) by id, with their topic counts.

    Two statements whatever the count: one grouped count, one list.
    """
    topic_counts = (
        select(Topic.subscriber_id, func.count().label("n"))
        .group_by(Topic.subscriber_id)
        .subquery()
    )
    query = (
        select(Subscriber, func.coalesce(topic_counts.c.n, 0))
        .outerjoin(topic_counts, topic_counts.c.subscriber_id == Subscriber.id)
        .order_by(Subscriber.id)
    )
    wanted = [SubscriberStatus(s) for s in statuses]
    if wanted:
        query = query.where(Subscriber.status.in_(wanted))
    return [(s, int(n)) for s, n in session.execute(query).all()]


def recent_digests(session: Session, subscriber: Subscriber, limit: int = 10) -> list[Digest]:
    return list(
        session.scalars(
            select(Digest)
            .where(Digest.subscriber_id == subscriber.id)
            .order_by(Digest.planned_at.desc(), Digest.id.desc())
            .limit(limit)
        )
    )
