"""The Celery app, built from digest's settings in one place.

Reliability settings (the measurements behind them are in ARCHITECTURE.md):
late acks plus reject-on-worker-lost, so a SIGKILLed pool child's batch is
redelivered; a Redis visibility timeout longer than any task (we never use long
ETAs: retries wait in the database, not in the broker); time limits below it.
The database stays the source of truth: a lost message only delays a digest
until the next sweep.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import crontab

from digest.config import Settings, get_settings

#: Hard limit for one task; a send batch of 100 over a slow server fits well inside.
TASK_TIME_LIMIT = 30 * 60
#: Must exceed every task's run time, or Redis redelivers a task that is still running.
VISIBILITY_TIMEOUT = 2 * TASK_TIME_LIMIT

QUEUES = ("ingest", "send")


def _new_york_now() -> datetime:
    return datetime.now(ZoneInfo("America/New_York"))


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    return {
        "ingest-hourly": {
            "task": "digest.ingest",
            "schedule": settings.ingest_interval_minutes * 60.0,
        },
        # arXiv announces at 20:00 US Eastern, Sunday to Thursday.
        "ingest-after-arxiv-announcement": {
            "task": "digest.ingest",
            "schedule": crontab(hour=20, minute=5, day_of_week="sun-thu", nowfun=_new_york_now),
        },
        "plan": {"task": "digest.plan", "schedule": float(settings.plan_interval_seconds)},
        "sweep": {"task": "digest.sweep", "schedule": float(settings.sweep_interval_seconds)},
        # Confirmation, welcome and new-link emails the web queued: sent within seconds.
        "notify": {"task": "digest.notify", "schedule": float(settings.notify_interval_seconds)},
    }


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    broker = settings.broker_url or "redis://127.0.0.1:6379/0"
    # Results are off except for `digest run --wait`, which asks for the run task's.
    app = Celery("digest", broker=broker, backend=broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 60,
        task_ignore_result=True,
        result_expires=3600,
        task_default_queue="send",
        task_routes={"digest.ingest": {"queue": "ingest"}},
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        worker_hijack_root_logger=False,
    )
    return app


app = create_app()
