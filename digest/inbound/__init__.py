"""Mail in: the listener (`digest inbound`) and what it does with what arrives.

``listener`` is the SMTP/LMTP server (RCPT-time address checks, the size cap);
``addresses`` says which of our addresses a recipient is; ``record`` keeps every
message in ``inbound_messages`` before it is acted on; ``process`` dispatches one
recorded message to ``commands`` and ``actions`` (subscribe and steer by email: reading
them, carrying them out), ``bounces`` (DSNs
and other formats, the bounce score), ``complaints`` (ARF) or the unsubscribe by
mail; ``replies`` decides whether an answer may be sent and plans it; ``mail``
reads a message defensively. The signed addresses themselves are
:mod:`digest.subscriptions.mailtokens` (the outgoing side makes them).

A top layer, beside ``web`` and ``cli``: nothing below imports it.
"""

from digest.inbound.listener import serve
from digest.inbound.process import handle

__all__ = ["handle", "serve"]
