"""The daily run as idempotent functions over the ledger: ``plan`` the due digests,
``lease`` them to workers (claim, renew, sweep), ``compose`` each through the one
builder, ``send`` a batch, ``run`` the whole day in-process; ``stats`` reports on it;
``notify`` queues and sends the short transactional emails.

Nothing here knows about Celery: ``workers/`` calls these functions, one per task,
and so does ``digest run`` in-process.
"""

from digest.pipeline import notify
from digest.pipeline.compose import ComposedDigest, DigestBuilder, DigestSpec, Window
from digest.pipeline.lease import SETTLED, claim, renew_lease, sweep, worker_id
from digest.pipeline.plan import plan
from digest.pipeline.run import (
    RunScope,
    RunSummary,
    batches,
    embed_new_papers,
    ingest_feeds,
    next_digests,
    period_progress,
    run_once,
    run_scope,
)
from digest.pipeline.send import BREAKER_THRESHOLD, BatchResult, send_batch
from digest.pipeline.upcoming import Upcoming, upcoming

__all__ = [
    "BREAKER_THRESHOLD",
    "SETTLED",
    "BatchResult",
    "ComposedDigest",
    "DigestBuilder",
    "DigestSpec",
    "RunScope",
    "RunSummary",
    "Upcoming",
    "Window",
    "batches",
    "claim",
    "embed_new_papers",
    "ingest_feeds",
    "next_digests",
    "notify",
    "period_progress",
    "plan",
    "renew_lease",
    "run_once",
    "run_scope",
    "send_batch",
    "sweep",
    "upcoming",
    "worker_id",
]
