"""What happens next: when the next digests are due and for how many readers.

For `digest run` (especially when nothing was due) and `digest stats`. Readers are
grouped by schedule as :mod:`digest.pipeline.plan` groups them (time zone,
frequency, weekday, hour), so this is one query however many readers there are;
each group's next send time comes from :func:`digest.core.schedule.next_send` in
its own zone, daylight saving included, and the earliest moment wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.core.schedule import next_send
from digest.store.models import Digest, DigestStatus, Subscriber, SubscriberStatus


@dataclass(frozen=True)
class ZoneShare:
    timezone: str
    readers: int
    local: datetime  # the moment on that zone's clock


@dataclass(frozen=True)
class Upcoming:
    now: datetime
    active: int  # active readers
    pending: int  # waiting for their confirmation click
    at: datetime | None = None  # the next moment digests fall due (UTC), None if none will
    readers: int = 0  # how many fall due at that moment
    zones: list[ZoneShare] = field(default_factory=list)  # most readers first
    retrying: int = 0  # digests waiting for a retry after a transient failure
    next_retry: datetime | None = None

    def describe(self) -> str:
        """``next: 212 digests at 07:00 Europe/London, in 3 h 12 min`` (one line)."""
        if self.at is None or not self.zones:
            if self.pending:
                return f"next: no digests: no active readers ({self.pending} pending confirmation)"
            return "next: no digests: no active readers (add one with `digest subscribers add`)"
        first = self.zones[0]
        others = len(self.zones) - 1
        where = f"{_clock(first.local, self.now)} {first.timezone}"
        if others:
            where += f" (and {others} other time zone{'' if others == 1 else 's'})"
        noun = "digest" if self.readers == 1 else "digests"
        line = f"next: {self.readers} {noun} {where}, {in_(self.at - self.now)}"
        if self.retrying:
            when = (
                f", the first {in_(self.next_retry - self.now)}"
                if self.next_retry is not None and self.next_retry > self.now
                else ""
            )
            line += f"; {self.retrying} waiting to retry{when}"
        return line

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "readers": self.readers,
            "zones": [
                {"timezone": z.timezone, "readers": z.readers, "local": z.local.isoformat()}
                for z in self.zones
            ],
            "active": self.active,
            "pending": self.pending,
            "retrying": self.retrying,
            "next_retry": self.next_retry,
        }


def upcoming(session: Session, now: datetime) -> Upcoming:
    """The next moment any active reader's digest falls due, and who falls due then."""
    counts = dict(
        session.execute(
            select(Subscriber.status, func.count())
            .where(Subscriber.status.in_([SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]))
            .group_by(Subscriber.status)
        ).all()
    )
    schedules = session.execute(
        select(
            Subscriber.timezone,
            Subscriber.frequency,
            Subscriber.weekday,
            Subscriber.send_hour,
            func.count(),
        )
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(
            Subscriber.timezone, Subscriber.frequency, Subscriber.weekday, Subscriber.send_hour
        )
    ).all()
    retrying, next_retry = session.execute(
        select(func.count(), func.min(Digest.retry_at)).where(Digest.status == DigestStatus.RETRY)
    ).one()
    earliest: datetime | None = None
    shares: dict[str, tuple[int, datetime]] = {}
    for tz, frequency, weekday, hour, n in schedules:
        try:
            local = next_send(now, tz, str(frequency.value), hour, weekday)
        except ValueError:
            continue  # an unknown zone: plan skips (and logs) these readers too
        if earliest is None or local < earliest:
            earliest, shares = local, {}
        if local == earliest:
            readers, _ = shares.get(tz, (0, local))
            shares[tz] = (readers + n, local)
    zones = sorted(
        (ZoneShare(tz, n, local) for tz, (n, local) in shares.items()),
        key=lambda z: (-z.readers, z.timezone),
    )
    return Upcoming(
        now=now,
        active=counts.get(SubscriberStatus.ACTIVE, 0),
        pending=counts.get(SubscriberStatus.PENDING, 0),
        at=None if earliest is None else earliest.astimezone(now.tzinfo),
        readers=sum(z.readers for z in zones),
        zones=zones,
        retrying=retrying or 0,
        next_retry=next_retry,
    )


def _clock(local: datetime, now: datetime) -> str:
    """``at 07:00``, ``tomorrow at 07:00`` or ``on Fri 4 Dec at 07:00``, on that zone's clock."""
    today = now.astimezone(local.tzinfo).date()
    days = (local.date() - today).days
    if days == 0:
        return f"at {local:%H:%M}"
    if days == 1:
        return f"tomorrow at {local:%H:%M}"
    return f"on {local:%a} {local.day} {local:%b} at {local:%H:%M}"


def in_(delta: timedelta) -> str:
    """``in 3 h 12 min``, ``in 2 d 5 h``, ``in 40 s``; ``now`` for no time at all."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "now"
    if seconds < 60:
        return f"in {seconds} s"
    minutes = (seconds + 59) // 60  # never "in 0 min" for 59 seconds
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"in {days} d {hours} h" if hours else f"in {days} d"
    if hours:
        return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"
    return f"in {minutes} min"


__all__ = ["Upcoming", "ZoneShare", "in_", "upcoming"]
