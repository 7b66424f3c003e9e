"""Deliver into a folder: each message as ``<id>.eml`` plus an ``<id>.html`` preview.

The embedded default: no mail server needed, and every email can be opened in a
browser or a mail program. Files are written atomically, the ``.eml`` last, so
its presence means the message is complete.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import tempfile
from pathlib import Path

from digest.deliver.transport import Outcome, RateLimiter, Transport, transient


def outbox_paths(outbox: Path, message_id: str) -> tuple[Path, Path]:
    """The ``.eml`` and ``.html`` files a message id is written to in the outbox."""
    name = re.sub(r"[^A-Za-z0-9._@+-]+", "_", message_id.strip().strip("<>")).strip("._")
    name = name[:180] or "message"
    return outbox / f"{name}.eml", outbox / f"{name}.html"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def html_part(data: bytes) -> str | None:
    message = email.message_from_bytes(data, policy=email.policy.default)
    body = message.get_body(("html",))
    return None if body is None else body.get_content()


class OutboxTransport(Transport):
    """Writes each message as ``<id>.eml`` plus an ``<id>.html`` preview (the default)."""

    name = "outbox"

    def __init__(self, outbox: Path, rate: float = 0.0, limiter: RateLimiter | None = None):
        super().__init__(rate, limiter)
        self.outbox = Path(outbox)

    def open(self) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)

    def _send(
        self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int
    ) -> Outcome:
        eml, html = outbox_paths(self.outbox, message_id)
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            preview = html_part(data)
            if preview is not None:
                _atomic_write(html, preview.replace("\r\n", "\n").encode("utf-8"))
            # The .eml last: its presence means the message is complete.
            _atomic_write(eml, data)
        except OSError as exc:
            return transient(f"cannot write to the outbox {self.outbox}: {exc}", attempt)
        return Outcome("sent", None, f"written to {eml}", None, "message")
