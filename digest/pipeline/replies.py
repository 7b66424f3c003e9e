"""The answers to mail `digest inbound` received: render, build, send, at once.

Unlike the queued transactional emails (``pipeline.notify``), an answer is sent by
the listener's worker right after the message it answers was acted on and
recorded; the inbound record is its queue (``inbound_messages.reply``), so a crash
between the two sends it at the next start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from digest.config import Settings
from digest.deliver import Outcome, build_message, make_message_id, transport_from_settings
from digest.render.replies import render_reply
from digest.store import db
from digest.store.suppression import is_suppressed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """The answer to one message received (digest.inbound): a view, and its headers.

    Sent "auto-replied" (RFC 3834) in the thread of the message answered, from the
    request address as envelope sender: a bounce of it is mail with a null sender,
    which the listener never answers.
    """

    to: str
    message_key: str  # fixes the Message-ID: a resend after a crash is the same message
    view: dict[str, Any]
    in_reply_to: str | None = None
    reply_to: str | None = None  # where an answer to the answer goes (confirm+, reply+)
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    help_lines: tuple[tuple[str, str], ...] = ()


def send_reply(settings: Settings, reply: Reply) -> Outcome | None:
    """Send an answer through the configured transport; None if the address is suppressed."""
    with db.session_scope(settings) as session:
        if is_suppressed(session, reply.to):
            log.info("reply %s skipped: the address is suppressed", reply.message_key)
            return None
    rendered = render_reply(settings, reply.to, reply.view, reply.help_lines)
    built = build_message(
        settings,
        rendered,
        to=reply.to,
        message_id=make_message_id(reply.message_key, settings.from_domain),
        unsubscribe_url=reply.unsubscribe_url,
        return_path=settings.request_addr,
        reply_to=reply.reply_to or settings.request_addr,
        unsubscribe_mailto=reply.unsubscribe_mailto,
        in_reply_to=reply.in_reply_to,
        auto_submitted="auto-replied",
    )
    with transport_from_settings(settings) as transport:
        outcome = transport.send(built.envelope_from, built.to, built.data, built.message_id)
    if not outcome.ok:
        log.warning("reply %s not sent: %s", reply.message_key, outcome.describe())
    return outcome


__all__ = ["Reply", "send_reply"]
