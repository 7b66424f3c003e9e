from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from support.factories import make_paper

from digest.config import Settings
from digest.store import db
from digest.store.models import Base, Digest, Paper, Subscriber


def test_migrations_match_models(settings: Settings) -> None:
    with db.engine_for(settings.database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_schema_is_at_head(settings: Settings) -> None:
    assert db.current_revision(settings.database_url) == db.head_revision()
    db.ensure_schema(settings)  # nothing to do, no error


def test_datetimes_round_trip_as_aware_utc(session: Session) -> None:
    seen = datetime(2026, 11, 29, 8, 30, tzinfo=timezone(timedelta(hours=9)))
    make_paper(session, "T", seen=seen, arxiv_id="2401.00001")
    session.commit()
    session.expire_all()
    paper = session.scalars(select(Paper)).one()
    assert paper.first_seen_at == seen
    assert paper.first_seen_at.tzinfo == UTC


def test_naive_datetimes_are_refused(session: Session) -> None:
    session.add(Paper(key="arxiv:1", title="T", first_seen_at=datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        session.commit()


def test_one_digest_per_subscriber_and_period(session: Session) -> None:
    sub = Subscriber(email="A@Example.org", email_key="a@example.org")
    session.add(sub)
    session.flush()
    session.add(Digest(subscriber_id=sub.id, period="2026-11-29"))
    session.commit()
    session.add(Digest(subscriber_id=sub.id, period="2026-11-29"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_fresh_sqlite_file_is_migrated_on_first_use(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'new.db'}")
    db.ensure_schema(settings)
    assert db.current_revision(settings.database_url) == db.head_revision()
