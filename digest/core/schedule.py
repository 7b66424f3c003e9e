"""When is a subscriber's digest due? Periods in the subscriber's own time zone.

A period is a label unique per subscriber and digest: the local date for daily
digests (``2026-11-29``), the ISO week of the local send day for weekly ones
(``2026-W48``). Its due moment is the local send hour on that day, converted to
UTC with zoneinfo, so daylight-saving changes move it with the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.core.caches import memoize

#: Frequencies as stored (``digest.store.models.Frequency`` is a StrEnum of these).
DAILY, WEEKLY = "daily", "weekly"


@dataclass(frozen=True)
class Period:
    label: str
    due_at: datetime  # aware UTC
    length: timedelta  # how far back a first digest looks


@memoize(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_due(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """``hour``:00 local time on ``day``, as aware UTC.

    In a spring-forward gap (02:00 that never happens) zoneinfo's fold=0 reading
    gives the wall-clock time an hour later, which is what a reader expects.
    """

    return datetime.combine(day, time(hour), tzinfo=tz).astimezone(UTC)


def current_period(
    now: datetime, timezone: str, frequency: str, send_hour: int, weekday: int = 0
) -> Period:
    """The period whose send time came most recently, at or before ``now``.

    Daily: today's local date once the local send hour has passed, else yesterday's.
    Weekly: the ISO week of the latest local send day whose send hour has passed.
    """
    tz = zone(timezone)
    today = now.astimezone(tz).date()
    if frequency not in (DAILY, WEEKLY):
        raise ValueError(f"unknown frequency {frequency!r}")
    if frequency == DAILY:
        step, day = timedelta(days=1), today
    else:
        step, day = timedelta(days=7), today - timedelta(days=(today.weekday() - weekday) % 7)
    due = local_due(day, send_hour, tz)
    if now < due:
        day -= step
        due = local_due(day, send_hour, tz)
    if step.days == 1:
        return Period(day.isoformat(), due, step)
    year, week, _ = day.isocalendar()
    return Period(f"{year}-W{week:02d}", due, step)


def next_send(
    now: datetime, timezone: str, frequency: str, send_hour: int, weekday: int = 0
) -> datetime:
    """The next local send time after ``now``, as an aware datetime in the reader's zone."""
    tz = zone(timezone)
    day = now.astimezone(tz).date()
    if frequency == WEEKLY:
        day += timedelta(days=(weekday - day.weekday()) % 7)
        step = timedelta(days=7)
    else:
        step = timedelta(days=1)
    due = local_due(day, send_hour, tz)
    if due <= now:
        due = local_due(day + step, send_hour, tz)
    return due.astimezone(tz)


__all__ = ["DAILY", "WEEKLY", "Period", "current_period", "local_due", "next_send", "zone"]
