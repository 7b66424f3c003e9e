"""The stored state of digest, as SQLAlchemy 2 typed models.

Times are stored as naive UTC and handed back as aware UTC (:class:`UTCDateTime`),
so SQLite and PostgreSQL behave the same. Alembic migrations in
``digest/store/migrations`` are the schema's source of truth; these classes must match
them (a test compares the two).
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from digest.core.clock import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, naive UTC at rest."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings (no native ENUM type) so adding a value is a code change,
    # not a PostgreSQL ALTER TYPE migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
    )


class FeedKind(enum.StrEnum):
    ARXIV_RSS = "arxiv-rss"
    ARXIV_API = "arxiv-api"
    HF_DAILY = "hf-daily"
    RSS = "rss"


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[FeedKind] = mapped_column(_enum(FeedKind, "feed_kind"))
    # The tag this feed's papers carry in ``Paper.sources``, what ``source:`` matches:
    # "arxiv", "hf", or for a generic feed a slug of its name (older feeds: their host).
    # Fixed when the feed is added, so renaming a feed never changes what saved topics
    # match; ``digest feeds rename --source`` changes it everywhere at once.
    source: Mapped[str] = mapped_column(String(100), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Conditional GET validators from the last 200 response.
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # Outcome of the last fetch, for `digest fetch`, `digest feeds list` and `digest stats`.
    last_fetched_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(20))  # ok | not-modified | error
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0)
    last_new: Mapped[int] = mapped_column(Integer, default=0)
    last_updated: Mapped[int] = mapped_column(Integer, default=0)
    last_unchanged: Mapped[int] = mapped_column(Integer, default=0)


class Paper(Base):
    """One paper, however many feeds and versions it was seen in."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "arxiv:2401.00001", "doi:10.1101/2024.01.01.123456" or "url:https://…"
    key: Mapped[str] = mapped_column(String(600), unique=True)
    arxiv_id: Mapped[str | None] = mapped_column(String(40), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    doi: Mapped[str | None] = mapped_column(String(300), index=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    primary_category: Mapped[str | None] = mapped_column(String(40))
    url: Mapped[str | None] = mapped_column(String(2048))
    pdf_url: Mapped[str | None] = mapped_column(String(2048))
    hf_url: Mapped[str | None] = mapped_column(String(2048))
    upvotes: Mapped[int | None] = mapped_column(Integer)
    comments: Mapped[int | None] = mapped_column(Integer)
    # Source tags ("arxiv", "hf", a generic feed's ``Feed.source``) for `source:` queries.
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Which source set each field: field name -> "<feed kind>:<feed id>" (or a source tag),
    # so a generic feed can never overwrite what arXiv or Hugging Face own (ingest.merge).
    field_sources: Mapped[dict[str, str]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    published_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    # Digests are built from "first seen since the last digest": this is the clock.
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # float32 sentence embedding, filled at ingest when the `semantic` extra is installed.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Frequency(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


def new_link_secret() -> str:
    """A fresh random secret for one subscriber's links (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class Subscriber(Base):
    __tablename__ = "subscribers"
    # AUTOINCREMENT: SQLite otherwise hands the highest id out again after a deletion,
    # and an id must never name a second person (links, signed addresses, logs).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: one subscription per mailbox however it is typed.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus, "subscriber_status"), default=SubscriberStatus.PENDING, index=True
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    frequency: Mapped[Frequency] = mapped_column(
        _enum(Frequency, "frequency"), default=Frequency.DAILY
    )
    weekday: Mapped[int] = mapped_column(Integer, default=0)  # 0 = Monday, for weekly digests
    send_hour: Mapped[int] = mapped_column(Integer, default=7)  # local hour, 0-23
    max_papers: Mapped[int] = mapped_column(Integer, default=20)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # Consent record: kept after unsubscribing, as proof of how the address came to us.
    consent_source: Mapped[str] = mapped_column(String(20), default="cli")  # web|email|cli|import
    consent_at: Mapped[datetime] = mapped_column(default=utcnow)
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_detail: Mapped[str | None] = mapped_column(Text)
    # Bumped to invalidate every signed link sent so far (e.g. after re-subscribing).
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # Inside the MAC of every link and signed address made for this subscriber: a link
    # names this row, never a later one that got the same id (a restored backup, a
    # reused id). Random per row, made at insert, never changed or shown.
    link_secret: Mapped[str] = mapped_column(String(64), default=new_link_secret)
    # When the web forms last mailed this address a link a stranger could have asked for
    # (a confirmation, a new manage link): claimed with one conditional UPDATE, so two
    # submissions at once can never both send (pipeline.notify, subscriptions.signup).
    notified_at: Mapped[datetime | None]

    topics: Mapped[list[Topic]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", order_by="Topic.id"
    )


class Topic(Base):
    __tablename__ = "topics"
    # AUTOINCREMENT: a digest's "stop this topic" link names the topic by id; a removed
    # topic's id handed to the reader's next topic would make the old link remove it.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(200))
    query: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="topics")


class DigestStatus(enum.StrEnum):
    PLANNED = "planned"  # waiting for a worker
    SENDING = "sending"  # claimed under a lease
    RETRY = "retry"  # transient failure, due again at retry_at
    SENT = "sent"
    SKIPPED = "skipped"  # nothing matched and no quiet-day note wanted
    FAILED = "failed"  # permanent failure (5xx, suppressed address)
    UNKNOWN = "unknown"  # connection lost after DATA: the server may have it


class Digest(Base):
    """The ledger: one row per subscriber and period, the unit of exactly-once."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "period", name="uq_digests_subscriber_period"),
        Index("ix_digests_status_lease", "status", "lease_until"),
        # A complaint (ARF) names the digest only by the Message-ID it quotes.
        Index("ix_digests_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    period: Mapped[str] = mapped_column(String(20))  # "2026-11-29" or "2026-W48"
    status: Mapped[DigestStatus] = mapped_column(
        _enum(DigestStatus, "digest_status"), default=DigestStatus.PLANNED
    )
    planned_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When a wake-up for this row was last put on the broker (plan or sweep): the sweeper
    # leaves a row alone for a lease after that, so a backlog is not queued again and again.
    queued_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None]
    # The papers window (first_seen_at in (window_start, window_end]), fixed at the first
    # claim so a retried digest shows the same papers and the next one starts where it ends.
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    paper_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    message_id: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    # The transport's last answer: the SMTP server's reply, or the outbox file written.
    reply: Mapped[str | None] = mapped_column(Text)

    subscriber: Mapped[Subscriber] = relationship()
    resends: Mapped[list[DigestResend]] = relationship(
        back_populates="digest", cascade="all, delete-orphan", order_by="DigestResend.id"
    )


class DigestResend(Base):
    """An admin's resend of a digest: what the row said before it went out again.

    The digest row itself is sent again (same period, window and papers, a new
    Message-ID); this keeps the earlier delivery on record.
    """

    __tablename__ = "digest_resends"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"), index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(200))
    previous_status: Mapped[str] = mapped_column(String(20))
    previous_message_id: Mapped[str | None] = mapped_column(String(300))
    previous_sent_at: Mapped[datetime | None]
    previous_finished_at: Mapped[datetime | None]
    previous_attempts: Mapped[int] = mapped_column(Integer, default=0)
    previous_smtp_code: Mapped[int | None] = mapped_column(Integer)
    previous_reply: Mapped[str | None] = mapped_column(Text)
    previous_error: Mapped[str | None] = mapped_column(Text)

    digest: Mapped[Digest] = relationship(back_populates="resends")


class Suppression(Base):
    """Addresses we must never send to again until an admin lifts it."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"  # recorded, not yet acted on (a crash here: finished on next start)
    ACTED = "acted"  # acted on and committed; the reply (if any) not yet sent
    DONE = "done"
    IGNORED = "ignored"  # nothing to do (a loop, a duplicate, no sender to answer)
    FAILED = "failed"  # could not be handled after several attempts


class InboundMessage(Base):
    """Every message `digest inbound` accepted, recorded before it is acted on.

    One row per message and recipient (an LMTP delivery to two of our addresses is two
    pieces of work). ``dedupe_key`` makes a second delivery of the same message a no-op.
    ``raw`` is kept only until the message is handled (or while it fails).
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_messages_reply_key", "reply_key", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    recipient: Mapped[str] = mapped_column(String(320))
    # request | reply | confirm | unsubscribe | bounce: which of our addresses it came to.
    kind: Mapped[str] = mapped_column(String(20))
    from_addr: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[InboundStatus] = mapped_column(
        _enum(InboundStatus, "inbound_status"), default=InboundStatus.RECEIVED, index=True
    )
    # What it turned out to be: commands, steer, confirm, unsubscribe, bounce, complaint, …
    action: Mapped[str | None] = mapped_column(String(30))
    result: Mapped[str | None] = mapped_column(Text)  # what was done, for people
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="SET NULL"))
    reply_to: Mapped[str | None] = mapped_column(String(320))  # whom we answer
    reply_key: Mapped[str | None] = mapped_column(String(320))  # lower-cased, for the rate limit
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the answer, until it is sent
    replied_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]


class Bounce(Base):
    """One bounce (DSN or another format) or complaint (ARF), with the digest it names."""

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL")
    )
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("digests.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    email_key: Mapped[str] = mapped_column(String(320), index=True)
    # hard | soft | delayed | unrecognised | complaint | not-spam
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(40))  # "5.1.1", or the feedback type
    action: Mapped[str | None] = mapped_column(String(40))  # the DSN's Action
    diagnostic: Mapped[str | None] = mapped_column(Text)
    detector: Mapped[str] = mapped_column(String(40), default="")
    points: Mapped[float] = mapped_column(Float, default=0.0)  # added to the bounce score
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)  # this one suppressed it


class ReaderSignal(Base):
    """A reader's steering by reply: an author muted, or papers like one demoted ("less")."""

    __tablename__ = "reader_signals"
    __table_args__ = (
        UniqueConstraint(
            "subscriber_id", "kind", "value", name="uq_reader_signals_subscriber_kind_value"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # mute-author | less
    value: Mapped[str] = mapped_column(String(300))  # the author's name, or the paper's key
    terms: Mapped[list[str]] = mapped_column(JSON, default=list)  # "less": the paper's words
    paper_id: Mapped[int | None] = mapped_column(ForeignKey("papers.id", ondelete="SET NULL"))
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentAction(enum.StrEnum):
    SIGNUP = "signup"  # the subscribe form was sent with this address
    CONFIRM = "confirm"  # the confirmation link's button was pressed: the consent itself
    RESUBSCRIBE = "resubscribe"  # asked to come back after unsubscribing


class Consent(Base):
    """One consent event: who agreed to what, when, from where, on which wording."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[ConsentAction] = mapped_column(_enum(ConsentAction, "consent_action"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(20))  # web | email | cli | import
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    # The version of the words the reader saw next to the button (web.wording).
    wording: Mapped[str | None] = mapped_column(String(40))


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"  # committed with the form, not sent yet
    SENDING = "sending"  # claimed until due_at
    RETRY = "retry"  # transient failure, due again at due_at
    SENT = "sent"
    FAILED = "failed"  # permanent failure, or too many attempts
    SKIPPED = "skipped"  # suppressed address, or the email no longer makes sense


class Notification(Base):
    """One transactional email (confirm, welcome, new link): the queue and its record.

    Written in the transaction of the form that asked for it, so an email is sent if and
    only if what it announces was committed; sent at once in-process, or by beat's
    ``digest.notify`` task when a broker is configured.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # confirm | welcome | link
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320))
    status: Mapped[NotificationStatus] = mapped_column(
        _enum(NotificationStatus, "notification_status"), default=NotificationStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it is next worth looking at: created, a retry time, or a claim's end.
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))

    subscriber: Mapped[Subscriber] = relationship()


class AppMeta(Base):
    """Small installation-wide values (e.g. a generated signing key)."""

    __tablename__ = "app_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


__all__ = [
    "AppMeta",
    "Base",
    "Bounce",
    "Consent",
    "ConsentAction",
    "Digest",
    "DigestResend",
    "DigestStatus",
    "Feed",
    "FeedKind",
    "Frequency",
    "InboundMessage",
    "InboundStatus",
    "Notification",
    "NotificationStatus",
    "Paper",
    "ReaderSignal",
    "Subscriber",
    "SubscriberStatus",
    "Suppression",
    "Topic",
    "UTCDateTime",
    "new_link_secret",
    "utcnow",
]
