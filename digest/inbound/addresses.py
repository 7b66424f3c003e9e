"""Which of our addresses a recipient is, and whether a signed one verifies.

The addresses (all at ``settings.mail_domain`` except the request address, which
may be anywhere): the request address (commands), and the signed ``bounce+``,
``reply+``, ``unsubscribe+`` and ``confirm+`` forms of
:mod:`digest.subscriptions.mailtokens`. Anything else is refused at RCPT time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.addresses import split_from
from digest.subscriptions.mailtokens import (
    AddressError,
    ParsedAddress,
    Resolved,
    parse_address,
    resolve,
)

REQUEST = "request"
#: Local parts that are never a person: mail from them is machine mail.
_MACHINE_SENDERS = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?|mail-?daemon)([+-.].*)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Recipient:
    """A recipient as the listener sees it at RCPT time."""

    address: str
    kind: str  # request | bounce | reply | unsubscribe | confirm
    parsed: ParsedAddress | None = None


def classify(settings: Settings, address: str) -> Recipient | None:
    """The recipient if it is one of ours by its shape (the signature is checked later)."""
    text = (address or "").strip()
    if not text or len(text) > 320:
        return None
    if text.lower() == settings.request_addr.lower():
        return Recipient(text, REQUEST)
    parsed = parse_address(settings, text)
    if parsed is None:
        return None
    return Recipient(text, parsed.kind, parsed)


def verify(settings: Settings, session: Session, recipient: Recipient) -> Resolved | None:
    """What a signed recipient names (None for the request address), or AddressError."""
    if recipient.parsed is None:
        return None
    return resolve(settings, session, recipient.parsed)


def is_ours(settings: Settings, address: str | None) -> bool:
    """Is ``address`` one we send from (a message from it is one of our own, come back)?"""
    if not address:
        return False
    lowered = address.strip().lower()
    _name, from_address = split_from(settings.from_addr)
    if lowered in (from_address.lower(), settings.request_addr.lower()):
        return True
    return parse_address(settings, lowered) is not None


def is_machine(address: str | None) -> bool:
    """MAILER-DAEMON, postmaster, no-reply…: senders no person reads."""
    if not address:
        return True
    local = address.strip().rpartition("@")[0]
    return bool(_MACHINE_SENDERS.match(local))


__all__ = [
    "REQUEST",
    "AddressError",
    "Recipient",
    "classify",
    "is_machine",
    "is_ours",
    "verify",
]
