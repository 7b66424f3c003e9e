"""Deliver: build the bytes of a message (``message``) and hand them to a transport:
SMTP (``smtp``) or the outbox folder (``outbox``), behind one interface (``transport``).

The sequence for one email::

    built = build_message(settings, rendered, to=…, message_id=…, unsubscribe_url=…)
    outcome = transport.send(built.envelope_from, built.to, built.data,
                             built.message_id, attempt=n)

with one transport (``with transport_from_settings(settings) as transport``)
serving a whole batch, so SMTP sends many messages over one connection.
"""

from __future__ import annotations

from digest.config import Settings
from digest.deliver.message import BuiltMessage, build_message, make_message_id
from digest.deliver.outbox import OutboxTransport, outbox_paths
from digest.deliver.smtp import SmtpTransport
from digest.deliver.transport import (
    Envelope,
    Outcome,
    RateLimiter,
    Transport,
    backoff_seconds,
)
from digest.errors import ConfigError


def require_safe_links(settings: Settings) -> None:
    """Refuse (:class:`ConfigError`, one line) to mail readers links that cannot work."""
    problem = settings.insecure_links()
    if problem:
        raise ConfigError(problem)


def transport_from_settings(settings: Settings) -> Transport:
    """SMTP when ``DIGEST_SMTP_URL`` is set, else the outbox folder.

    SMTP with a localhost or plain-http ``DIGEST_BASE_URL`` is refused (see
    :meth:`Settings.insecure_links`) unless ``DIGEST_ALLOW_INSECURE_LINKS`` is on.
    """
    if settings.smtp_url:
        require_safe_links(settings)
        return SmtpTransport(settings.smtp_url, rate=settings.send_rate)
    return OutboxTransport(settings.outbox, rate=settings.send_rate)


__all__ = [
    "BuiltMessage",
    "Envelope",
    "OutboxTransport",
    "Outcome",
    "RateLimiter",
    "SmtpTransport",
    "Transport",
    "backoff_seconds",
    "build_message",
    "make_message_id",
    "outbox_paths",
    "require_safe_links",
    "transport_from_settings",
]
