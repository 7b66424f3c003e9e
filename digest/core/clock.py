"""The one clock: aware UTC datetimes everywhere (naive ones are refused at the database)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = ["utcnow"]
