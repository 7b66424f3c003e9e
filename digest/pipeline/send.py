"""Send one batch: claim it, build every digest through the one builder, send, record.

Outcomes are committed in groups of ``DIGEST_COMMIT_EVERY`` messages (one UPDATE
per group, sent as one executemany by the ORM, and one COMMIT), so a duplicate is
possible only for the messages of the group in flight when a sender dies between
the server's 250s and our commit: at most that many per killed sender, each
carrying its digest's one Message-ID (fixed with the window, before anything is
sent). A commit per message cost 2 ms per digest, mostly round trips.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver import require_safe_links, transport_from_settings
from digest.pipeline.lease import claim, renew_lease, worker_id
from digest.pipeline.ledger import LedgerBatch
from digest.store import db
from digest.store.models import Digest, DigestStatus, Subscriber

#: Consecutive transient failures after which a batch stops hammering the server.
BREAKER_THRESHOLD = 5


@dataclass
class BatchResult:
    claimed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: DigestStatus) -> None:
        self.by_status[status.value] = self.by_status.get(status.value, 0) + 1


def send_batch(settings: Settings, ids: Sequence[int], now: datetime | None = None) -> BatchResult:
    """Claim, build, send and record a batch of digests. Safe to run twice or concurrently.

    The lease is renewed at half-time while the batch runs (a slow server can make
    100 messages outlast one lease); a row whose lease we lost is left to its new
    owner instead of being sent twice.
    """
    now = now or utcnow()
    # Before claiming: a refused configuration leaves every row planned, not leased.
    require_safe_links(settings)
    db.ensure_schema(settings)
    owner = f"{worker_id()}:{uuid.uuid4().hex[:8]}"
    lease = timedelta(seconds=settings.lease_seconds)
    result = BatchResult()
    factory = db.session_factory(settings)
    with factory() as session:
        claimed = claim(session, ids, now, lease, owner)
        session.commit()
    result.claimed = len(claimed)
    if not claimed:
        return result
    started = time.monotonic()
    renewed = started
    with factory() as session:
        digests = _load(session, claimed)
        batch = LedgerBatch(settings, session, digests, now)
        session.commit()  # windows fixed before anything is sent
        batch.match()
        transient_in_a_row = 0
        uncommitted = 0
        with transport_from_settings(settings) as transport:
            for position, digest in enumerate(digests):
                if time.monotonic() - renewed > lease.total_seconds() / 2:
                    renewed = time.monotonic()
                    until = now + timedelta(seconds=renewed - started) + lease
                    renew_lease(session, digests[position:], owner, until)
                    session.commit()
                    uncommitted = 0
                    session.expire_all()  # re-read who holds each row
                if digest.status is not DigestStatus.SENDING or digest.lease_owner != owner:
                    continue  # the lease ran out under us and someone else has it now
                if transient_in_a_row >= BREAKER_THRESHOLD:
                    # The server is failing: give the rest back instead of burning attempts.
                    batch.defer(digest, now, "not attempted: mail server failing")
                    result.count(DigestStatus.RETRY)
                else:
                    status = batch.send_one(digest, transport)
                    result.count(status)
                    transient_in_a_row = (
                        transient_in_a_row + 1 if status is DigestStatus.RETRY else 0
                    )
                uncommitted += 1
                if uncommitted >= settings.commit_every:
                    session.commit()  # these outcomes are durable before the next group
                    uncommitted = 0
            session.commit()
    return result


def _load(session: Session, ids: Sequence[int]) -> list[Digest]:
    return list(
        session.scalars(
            select(Digest)
            .where(Digest.id.in_(ids))
            .options(selectinload(Digest.subscriber).selectinload(Subscriber.topics))
            .order_by(Digest.id)
        )
    )
