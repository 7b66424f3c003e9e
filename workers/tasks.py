"""Thin tasks: each calls one function of digest.pipeline and declares its retry policy.

Tasks enqueue follow-up work only after the function they call has committed,
so a worker never wakes another for a row that does not exist yet.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import OperationalError

from digest import pipeline
from digest.config import get_settings
from digest.core.clock import utcnow
from workers.celery_app import app

# Database hiccups are worth a quick retry; anything else is left to the sweeper.
RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 5, "max_retries": 5}


@app.task(name="digest.ingest", **RETRY)
def ingest() -> dict[str, int]:
    outcomes = pipeline.ingest_feeds(get_settings())
    return {o.name: o.new for o in outcomes}


@app.task(name="digest.plan", **RETRY)
def plan(at: str | None = None) -> int:
    """Plan due digests and wake the senders. ``at`` (ISO 8601) replays a moment."""
    settings = get_settings()
    ids = pipeline.plan(settings, _when(at))
    enqueue_sends(ids, settings.batch_size, at)
    return len(ids)


@app.task(name="digest.sweep", **RETRY)
def sweep(at: str | None = None) -> int:
    settings = get_settings()
    ids = pipeline.sweep(settings, _when(at))
    enqueue_sends(ids, settings.batch_size, at)
    return len(ids)


@app.task(name="digest.send_batch", **RETRY)
def send_batch(ids: list[int], at: str | None = None) -> dict[str, int]:
    return pipeline.send_batch(get_settings(), ids, _when(at)).by_status


@app.task(name="digest.notify", **RETRY)
def notify() -> dict[str, int]:
    """Send the transactional emails the web queued (confirm, welcome, new link)."""
    return pipeline.notify.send_pending(get_settings())


@app.task(name="digest.run", ignore_result=False)
def run(at: str | None = None, fetch: bool = True) -> dict[str, object] | None:
    """`digest run` with a broker: ingest, plan, enqueue; returns the scope of the
    digests it covers (for `--wait`), or None when none were due."""
    settings = get_settings()
    now = _when(at)
    if fetch:
        pipeline.ingest_feeds(settings, now if at else None)
    ids = sorted(
        set(pipeline.plan(settings, now)) | set(pipeline.sweep(settings, now, grace=False))
    )
    enqueue_sends(ids, settings.batch_size, at)
    scope = pipeline.run_scope(settings, ids)
    return scope.as_dict() if scope else None


def enqueue_sends(ids: list[int], batch_size: int, at: str | None = None) -> None:
    for batch in pipeline.batches(ids, batch_size):
        send_batch.delay(batch, at)


def _when(at: str | None) -> datetime:
    return datetime.fromisoformat(at) if at else utcnow()
