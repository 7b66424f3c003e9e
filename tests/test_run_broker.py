"""`digest run` with a broker: the CLI hands the run to real Celery workers.

The real console script in its own process, a real Redis, a real worker and a
real SMTP server, as an operator's cron job would run it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import _truncate_postgres, make_settings
from sqlalchemy import select
from support.factories import make_paper, make_subscriber
from support.services import RedisServer, WorkerFactory, child_env, free_port, wait_until
from support.smtpserver import SmtpSink

from digest.config import Settings
from digest.store import db
from digest.store.models import Digest, DigestResend, DigestStatus

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 29, 9, tzinfo=UTC)
DIGEST = str(Path(sys.executable).with_name("digest"))


@pytest.fixture
def broker_settings(
    postgres_url: str, tmp_path: Path, redis_server: RedisServer, smtp_server: SmtpSink
) -> Settings:
    _truncate_postgres(postgres_url)
    settings = make_settings(
        postgres_url,
        tmp_path,
        broker_url=redis_server.url,
        smtp_url=smtp_server.url,
        lease_seconds=10,
    )
    with db.session_scope(settings) as session:
        make_paper(
            session,
            "Open Problems in Machine Unlearning for AI Safety",
            seen=T - timedelta(hours=2),
            abstract="Machine unlearning: the ability to selectively forget.",
            arxiv_id="2511.00001",
            last_seen_at=T,
        )
        for i in range(5):
            make_subscriber(
                session, f"reader{i}@example.org", "machine unlearning", now=T - timedelta(days=1)
            )
    return settings


def digest_run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, "run", "--no-fetch", "--at", T.isoformat(), *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_wait_follows_the_workers_until_settled(
    broker_settings: Settings, celery_worker_factory: WorkerFactory, smtp_server: SmtpSink
) -> None:
    celery_worker_factory(broker_settings)
    result = digest_run(broker_settings, "--wait", "--timeout", "90")
    assert result.returncode == 0, result.stderr
    assert "digests: 5 sent" in result.stdout
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        f"reader{i}@example.org" for i in range(5)
    ]
    # A second run covers nothing new and sends nothing.
    again = digest_run(broker_settings, "--wait", "--timeout", "60")
    assert again.returncode == 0, again.stderr
    assert len(smtp_server.messages) == 5


def test_run_without_wait_hands_off_and_returns(
    broker_settings: Settings, celery_worker_factory: WorkerFactory, smtp_server: SmtpSink
) -> None:
    worker = celery_worker_factory(broker_settings)
    result = digest_run(broker_settings)
    assert result.returncode == 0, result.stderr
    assert "handed to the workers" in result.stdout

    def settled() -> bool:
        with db.session_scope(broker_settings) as session:
            statuses = list(session.scalars(select(Digest.status)))
        return len(statuses) == 5 and set(statuses) == {DigestStatus.SENT}

    wait_until(settled, timeout=60, what="the handed-off run to settle", details=worker.tail)
    assert len(smtp_server.messages) == 5


def test_run_with_an_unreachable_broker_is_one_clear_line(broker_settings: Settings) -> None:
    """A closed port: one line naming the broker and why, in seconds (the bound below is a
    generous sanity limit on this test's own clock, not a speed assertion)."""
    port = free_port()
    settings = make_settings(
        broker_settings.database_url,
        broker_settings.outbox.parent,
        broker_url=f"redis://127.0.0.1:{port}/0",
    )
    for args in ((), ("--wait", "--timeout", "5")):
        started = time.monotonic()
        result = digest_run(settings, *args)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"Error: cannot reach the broker at redis://127.0.0.1:{port}/0: connection refused"
        )
        assert "Traceback" not in result.stderr and "result store" not in result.stderr
        assert elapsed < 40, f"took {elapsed:.0f} s"
    with db.session_scope(broker_settings) as session:
        assert list(session.scalars(select(Digest))) == []  # nothing was planned meanwhile


def test_resend_wakes_the_workers(
    broker_settings: Settings, celery_worker_factory: WorkerFactory, smtp_server: SmtpSink
) -> None:
    worker = celery_worker_factory(broker_settings)
    first = digest_run(broker_settings, "--wait", "--timeout", "90")
    assert first.returncode == 0, first.stderr
    with db.session_scope(broker_settings) as session:
        digest_id, message_id = session.execute(
            select(Digest.id, Digest.message_id).order_by(Digest.id).limit(1)
        ).one()
    env = child_env(broker_settings)
    result = subprocess.run(
        [DIGEST, "digests", "resend", str(digest_id), "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "handed to the workers" in result.stdout

    def resent() -> bool:
        with db.session_scope(broker_settings) as session:
            row = session.get(Digest, digest_id)
            return row is not None and row.status is DigestStatus.SENT and row.resends != []

    wait_until(resent, timeout=60, what="the resend to be sent", details=worker.tail)
    assert len(smtp_server.messages) == 6
    ids = [m.data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for m in smtp_server.messages]
    assert ids.count(message_id.encode()) == 1 and len(set(ids)) == 6
    # With the broker down, the resend is refused before anything is recorded.
    down = make_settings(
        broker_settings.database_url,
        broker_settings.outbox.parent,
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        smtp_url=smtp_server.url,
    )
    refused = subprocess.run(
        [DIGEST, "digests", "resend", str(digest_id), "--yes"],
        env=child_env(down),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: cannot reach the broker at redis://127.0.0.1:")
    with db.session_scope(broker_settings) as session:
        assert len(list(session.scalars(select(DigestResend)))) == 1
