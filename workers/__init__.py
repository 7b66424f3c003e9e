"""Celery workers: `celery -A workers worker -Q ingest,send` and `celery -A workers beat`."""

from workers import tasks  # noqa: F401  - registers the tasks on the app
from workers.celery_app import app

__all__ = ["app"]
