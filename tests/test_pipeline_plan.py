"""plan / claim / sweep on the digest ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from digest import pipeline
from digest.config import Settings
from digest.store import db
from digest.store.models import Digest, DigestStatus, Frequency, Subscriber, SubscriberStatus

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def add(session: Session, email: str, **kw: object) -> Subscriber:
    values: dict[str, object] = {
        "email": email,
        "email_key": email.lower(),
        "status": SubscriberStatus.ACTIVE,
        "timezone": "UTC",
        "send_hour": 7,
        "confirmed_at": T0 - timedelta(days=30),
    }
    values.update(kw)
    sub = Subscriber(**values)
    session.add(sub)
    session.commit()
    return sub


def digests(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(
        select(Subscriber.email, Digest.period)
        .join(Digest.subscriber)
        # Both keys: with fresh statistics (the plan ANALYZEs) the join's order changes.
        .order_by(Subscriber.email, Digest.period)
    )
    return [tuple(r) for r in rows]


def test_plan_inserts_one_row_per_due_active_subscriber(
    settings: Settings, session: Session
) -> None:
    add(session, "due@x.org")
    add(session, "tokyo@x.org", timezone="Asia/Tokyo", send_hour=7)  # 07:00 JST long passed
    add(session, "later@x.org", send_hour=18)  # due at 18:00 UTC: yesterday's period
    add(session, "pending@x.org", status=SubscriberStatus.PENDING)
    add(session, "paused@x.org", status=SubscriberStatus.PAUSED)
    add(session, "new@x.org", confirmed_at=T0 - timedelta(hours=1))  # joined after 07:00
    ids = pipeline.plan(settings, T0)
    assert len(ids) == 3
    assert digests(session) == [
        ("due@x.org", "2026-11-29"),
        ("later@x.org", "2026-11-28"),
        ("tokyo@x.org", "2026-11-29"),
    ]


def test_plan_twice_inserts_nothing_the_second_time(settings: Settings, session: Session) -> None:
    for i in range(5):
        add(session, f"s{i}@x.org")
    assert len(pipeline.plan(settings, T0)) == 5
    assert pipeline.plan(settings, T0) == []
    assert pipeline.plan(settings, T0 + timedelta(hours=3)) == []
    assert session.scalar(select(func.count()).select_from(Digest)) == 5
    # The next day is a new period.
    assert len(pipeline.plan(settings, T0 + timedelta(days=1))) == 5


def test_concurrent_plans_never_duplicate(settings: Settings, session: Session) -> None:
    for i in range(50):
        add(session, f"s{i}@x.org", timezone=["UTC", "Europe/Paris", "America/Denver"][i % 3])
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(pipeline.plan(settings, T0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    all_ids = [i for r in results for i in r]
    assert len(all_ids) == len(set(all_ids)) == 50
    assert session.scalar(select(func.count()).select_from(Digest)) == 50


def test_weekly_subscribers_get_one_row_per_week(settings: Settings, session: Session) -> None:
    add(session, "weekly@x.org", frequency=Frequency.WEEKLY, weekday=0, send_hour=8)
    monday = datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert len(pipeline.plan(settings, monday)) == 1
    for day in range(1, 7):
        assert pipeline.plan(settings, monday + timedelta(days=day)) == []
    assert len(pipeline.plan(settings, monday + timedelta(days=7))) == 1
    assert [p for _, p in digests(session)] == ["2026-W49", "2026-W50"]


def test_claim_is_exclusive_and_leases_expire(settings: Settings, session: Session) -> None:
    for i in range(6):
        add(session, f"s{i}@x.org")
    ids = pipeline.plan(settings, T0)
    factory = db.session_factory(settings)
    with factory() as a, factory() as b:
        first = pipeline.claim(a, ids[:4], T0, LEASE, "a")
        a.commit()
        second = pipeline.claim(b, ids, T0, LEASE, "b")
        b.commit()
    assert first == ids[:4]
    assert second == ids[4:]
    with factory() as c:
        assert pipeline.claim(c, ids, T0 + LEASE - timedelta(seconds=1), LEASE, "c") == []
        assert pipeline.claim(c, ids, T0 + LEASE + timedelta(seconds=1), LEASE, "c") == ids
        c.commit()
    attempts = session.scalars(select(Digest.attempts).order_by(Digest.id)).all()
    assert attempts == [2, 2, 2, 2, 2, 2]


def test_sweep_finds_expired_leases_due_retries_and_lost_wakeups(
    settings: Settings, session: Session
) -> None:
    lease = timedelta(seconds=settings.lease_seconds)
    for i in range(5):
        add(session, f"s{i}@x.org")
    ids = pipeline.plan(settings, T0)
    # Fresh planned rows: their wake-up is probably in flight.
    assert pipeline.sweep(settings, T0) == []
    later = T0 + lease + timedelta(seconds=1)
    assert pipeline.sweep(settings, later) == ids
    # Queued again just now: the next sweeps leave them alone for a lease, so a
    # backlog does not pile up wake-ups in the broker.
    assert pipeline.sweep(settings, later + timedelta(seconds=30)) == []
    states = {
        ids[0]: {"status": DigestStatus.SENT},
        ids[1]: {"status": DigestStatus.RETRY, "retry_at": later + timedelta(hours=1)},
        ids[2]: {"status": DigestStatus.RETRY, "retry_at": later + timedelta(minutes=1)},
        ids[3]: {"status": DigestStatus.SENDING, "lease_until": later + timedelta(minutes=1)},
        ids[4]: {"status": DigestStatus.SENDING, "lease_until": later + timedelta(hours=1)},
    }
    for digest_id, values in states.items():
        session.execute(update(Digest).where(Digest.id == digest_id).values(**values))
    session.commit()
    even_later = later + lease + timedelta(minutes=1)
    assert pipeline.sweep(settings, even_later) == [ids[2], ids[3]]
    # An in-process run takes everything claimable, queued or not.
    assert pipeline.sweep(settings, even_later, grace=False) == [ids[2], ids[3]]
