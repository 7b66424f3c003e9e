"""Every error digest raises on purpose: one base, one subclass per area.

``str(exc)`` of any of these is one sentence a user can act on; the CLI group
prints it as the command's one-line error (``digest.cli.group``), the web pages
show it next to the field it is about. Anything that is not a :class:`DigestError`
is a bug and keeps its traceback.

The ``ValueError`` mixins say which of these are about a bad value (a setting, a
query, an address): code that validates input may catch ``ValueError`` alone.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error digest raises for a user to read."""


# --- configuration and storage -----------------------------------------------------------


class ConfigError(DigestError, ValueError):
    """A ``DIGEST_*`` variable has a value we cannot use; the message names it."""


class DatabaseError(DigestError):
    """The database cannot be reached, written, or is not at the expected schema."""


class BrokerError(DigestError):
    """The Celery broker (``DIGEST_BROKER_URL``) cannot be reached or refuses us."""


# --- feeds -------------------------------------------------------------------------------


class FeedError(DigestError, ValueError):
    """A feed cannot be added, found, fetched or read; the message says why."""


class FetchError(FeedError):
    """The feed could not be fetched; the message says why, in one line."""


class FeedFormatError(FeedError):
    """The body is not a feed of the expected kind; the message says why."""


# --- matching ----------------------------------------------------------------------------


class QueryError(DigestError, ValueError):
    """A topic query that cannot be parsed; ``str()`` says what and where."""

    def __init__(self, message: str, column: int | None = None, hint: str = "") -> None:
        where = "" if column is None else f" at column {column}"
        super().__init__(f"{message}{where}{hint}")
        self.column = column


# --- delivery ----------------------------------------------------------------------------


class DeliveryError(DigestError):
    """A message cannot be built or handed over."""


class MessageError(DeliveryError, ValueError):
    """The message cannot be built (e.g. an address we cannot put in a header)."""


# --- the ledger --------------------------------------------------------------------------


class LedgerError(DigestError):
    """No such digest, or a change the ledger refuses (e.g. resending one still on its way)."""


# --- subscriptions -----------------------------------------------------------------------


class SubscriptionError(DigestError, ValueError):
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


class AddressError(TokenError):
    """A signed mail address that does not verify (forged, cut, or for a deleted row)."""


__all__ = [
    "AddressError",
    "BrokerError",
    "ConfigError",
    "DatabaseError",
    "DeliveryError",
    "DigestError",
    "FeedError",
    "FeedFormatError",
    "FetchError",
    "InvalidEmail",
    "LedgerError",
    "MessageError",
    "QueryError",
    "SubscriptionError",
    "TokenError",
]
