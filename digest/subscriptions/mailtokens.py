"""Signed mail addresses: where bounces, replies, unsubscribe and confirm mail come back.

Every digest goes out with addresses that name it, so whatever comes back is
attributed without guessing:

``bounce+<subscriber id>-<period>-<mac>@domain``
    the envelope sender (VERP): a bounce names the digest, hence the reader.
``reply+<subscriber id>-<period>-<mac>@domain``
    the Reply-To: a reply steers that reader's digests ("more 3").
``unsubscribe+<subscriber id>-<mac>@domain``
    the List-Unsubscribe ``mailto:`` (RFC 8058 §5): mail to it unsubscribes.
``confirm+<subscriber id>-<day>-<mac>@domain``
    the Reply-To of a confirmation asked for by email: replying confirms.

A digest is named by its reader and period (``20261129`` for a daily digest of
2026-11-29, ``2026w48`` for a weekly one), the ledger's own unique key, not by its
row id: the address is known before the row exists, so a preview of the digest is
the same bytes as the email sent, and a resend of it keeps its addresses.

The MAC is HMAC-SHA256 with the installation key (:func:`tokens.signing_key`), over
the purpose, the ids, the reader's address *and the reader's own random*
``link_secret``: an address names one person forever, whatever row later holds the
same id (a restored backup, a re-created subscriber). It is base32, lower case,
because mail systems may change the case of a local part. The domain is
``settings.mail_domain``. An unsubscribe address from before migration 0008 (no
secret in its MAC) still works for a row created before then: leaving must work from
any email ever sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.clock import utcnow
from digest.errors import AddressError
from digest.store.models import AppMeta, Digest, Subscriber
from digest.subscriptions.tokens import CONFIRM_MAX_AGE, LINKS_BOUND_AT_META, signing_key

KINDS = ("bounce", "reply", "unsubscribe", "confirm")
_MAC_CHARS = 16
_LOCAL = re.compile(
    r"^(bounce|reply|unsubscribe|confirm)\+([0-9]{1,18})"
    r"(?:-([0-9]{1,6}|[0-9]{8}|[0-9]{4}w[0-9]{2}))?-([a-z2-7]{16})$"
)
_DAILY = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
_WEEKLY = re.compile(r"^([0-9]{4})-W([0-9]{2})$")
_EPOCH_DAY = 86400


def _mac(key: bytes, *parts: object) -> str:
    message = "digest-mail|" + "|".join(str(p) for p in parts)
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def _require_flushed(subscriber: Subscriber) -> None:
    # Before the flush there is no id and no secret to sign.
    if subscriber.id is None or not subscriber.link_secret:
        raise ValueError("flush the subscriber before making an address for it")


def _address(settings: Settings, local: str) -> str:
    return f"{local}@{settings.mail_domain}"


def verp_address(settings: Settings, session: Session, subscriber: Subscriber, period: str) -> str:
    """The envelope sender of one digest: a bounce to it names the digest and reader."""
    return _digest_address(settings, session, "bounce", subscriber, period)


def reply_address(settings: Settings, session: Session, subscriber: Subscriber, period: str) -> str:
    """The Reply-To of one digest: a reply to it steers that reader's digests."""
    return _digest_address(settings, session, "reply", subscriber, period)


def period_token(period: str) -> str:
    """``2026-11-29`` -> ``20261129``, ``2026-W48`` -> ``2026w48`` (one local-part atom)."""
    if _DAILY.match(period) or _WEEKLY.match(period):
        return period.replace("-", "").lower()
    raise ValueError(f"not a digest period: {period!r}")


def _period_label(token: str) -> str:
    if "w" in token:
        return f"{token[:4]}-W{token[5:]}"
    return f"{token[:4]}-{token[4:6]}-{token[6:]}"


def _digest_address(
    settings: Settings, session: Session, kind: str, subscriber: Subscriber, period: str
) -> str:
    _require_flushed(subscriber)
    token = period_token(period)
    key = signing_key(session, settings)
    mac = _mac(key, kind, subscriber.id, token, subscriber.email_key, subscriber.link_secret)
    return _address(settings, f"{kind}+{subscriber.id}-{token}-{mac}")


def unsubscribe_address(settings: Settings, session: Session, subscriber: Subscriber) -> str:
    """The List-Unsubscribe mailto address: mail to it unsubscribes this reader, forever."""
    _require_flushed(subscriber)
    key = signing_key(session, settings)
    mac = _mac(key, "unsubscribe", subscriber.id, subscriber.email_key, subscriber.link_secret)
    return _address(settings, f"unsubscribe+{subscriber.id}-{mac}")


def confirm_address(
    settings: Settings, session: Session, subscriber: Subscriber, now: datetime | None = None
) -> str:
    """The Reply-To of a confirmation: a reply confirms, for :data:`CONFIRM_MAX_AGE`."""
    _require_flushed(subscriber)
    day = int((now or utcnow()).timestamp()) // _EPOCH_DAY
    key = signing_key(session, settings)
    mac = _mac(
        key,
        "confirm",
        subscriber.id,
        subscriber.token_version,
        day,
        subscriber.email_key,
        subscriber.link_secret,
    )
    return _address(settings, f"confirm+{subscriber.id}-{day}-{mac}")


@dataclass(frozen=True)
class ParsedAddress:
    """The parts of one of our signed addresses, not yet checked against the database."""

    kind: str
    row_id: int  # the subscriber's id
    day: int | None  # confirm addresses: the day they were made
    mac: str
    period: str | None = None  # bounce and reply addresses: the digest's period token


def parse_address(settings: Settings, address: str) -> ParsedAddress | None:
    """The signed address's parts, or None if ``address`` is not of that shape here."""
    local, at, domain = (address or "").strip().lower().rpartition("@")
    if not at or domain != settings.mail_domain.lower() or len(local) > 64:
        return None
    match = _LOCAL.match(local)
    if match is None:
        return None
    kind, row_id, middle, mac = match.groups()
    if kind in ("bounce", "reply"):
        if middle is None or len(middle) < 7:
            return None
        return ParsedAddress(kind, int(row_id), None, mac, middle)
    if kind == "confirm":
        if middle is None or not middle.isdigit() or len(middle) > 6:
            return None
        return ParsedAddress(kind, int(row_id), int(middle), mac)
    if middle is not None:
        return None
    return ParsedAddress(kind, int(row_id), None, mac)


@dataclass(frozen=True)
class Resolved:
    kind: str
    subscriber: Subscriber
    digest: Digest | None = None
    expired: bool = False  # a confirm address past CONFIRM_MAX_AGE


def resolve(
    settings: Settings, session: Session, parsed: ParsedAddress, now: datetime | None = None
) -> Resolved:
    """The digest and reader a signed address names, or :class:`AddressError`.

    The MAC is compared in constant time and only after the row is loaded: a forged
    address and one naming a deleted row fail the same way.
    """
    key = signing_key(session, settings)
    subscriber = session.get(Subscriber, parsed.row_id)
    if subscriber is None:
        raise AddressError("no such subscriber")
    if parsed.kind in ("bounce", "reply"):
        assert parsed.period is not None
        expected = _mac(
            key,
            parsed.kind,
            subscriber.id,
            parsed.period,
            subscriber.email_key,
            subscriber.link_secret,
        )
        _check(expected, parsed.mac)
        digest = session.scalar(
            select(Digest).where(
                Digest.subscriber_id == subscriber.id,
                Digest.period == _period_label(parsed.period),
            )
        )
        if digest is None:
            raise AddressError("no such digest")
        return Resolved(parsed.kind, subscriber, digest)
    if parsed.kind == "unsubscribe":
        expected = _mac(
            key, "unsubscribe", subscriber.id, subscriber.email_key, subscriber.link_secret
        )
        if not _legacy_unsubscribe(session, key, subscriber, parsed.mac):
            _check(expected, parsed.mac)
        return Resolved("unsubscribe", subscriber)
    expected = _mac(
        key,
        "confirm",
        subscriber.id,
        subscriber.token_version,
        parsed.day,
        subscriber.email_key,
        subscriber.link_secret,
    )
    _check(expected, parsed.mac)
    today = int((now or utcnow()).timestamp()) // _EPOCH_DAY
    age = timedelta(days=today - (parsed.day or 0))
    return Resolved("confirm", subscriber, expired=age > CONFIRM_MAX_AGE or age.days < -1)


def _legacy_unsubscribe(session: Session, key: bytes, subscriber: Subscriber, given: str) -> bool:
    """A List-Unsubscribe address from before migration 0008, for a row from before it.

    Its MAC already named the address; a row created after 0008 never had one."""
    legacy = _mac(key, "unsubscribe", subscriber.id, subscriber.email_key)
    if not hmac.compare_digest(legacy, given):
        return False
    bound = session.get(AppMeta, LINKS_BOUND_AT_META)
    if bound is None or not bound.value.isdigit():
        return False
    return subscriber.created_at.timestamp() < int(bound.value)


def _check(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected, given):
        raise AddressError("the signature does not match")


__all__ = [
    "KINDS",
    "AddressError",
    "ParsedAddress",
    "Resolved",
    "confirm_address",
    "parse_address",
    "period_token",
    "reply_address",
    "resolve",
    "unsubscribe_address",
    "verp_address",
]
