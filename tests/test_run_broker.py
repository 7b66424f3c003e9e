"""`digest run` with a broker: the CLI hands the run to real Celery workers.

The real console script in its own process, a real Redis, a real worker and a
real SMTP server, as an operator's cron job would run it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import _truncate_postgres, make_settings
from sqlalchemy import select
from support.factories import make_paper, make_subscriber
from support.services import RedisServer, WorkerFactory, child_env, wait_until
from support.smtpserver import SmtpSink

from digest.config import Settings
from digest.store import db
from digest.store.models import Digest, DigestStatus

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
    from support.services import free_port

    settings = make_settings(
        broker_settings.database_url,
        broker_settings.outbox.parent,
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    result = digest_run(settings, "--wait", "--timeout", "5")
    assert result.returncode == 1
    assert "could not hand the run to the workers" in result.stderr
    assert "Traceback" not in result.stderr
