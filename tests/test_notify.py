"""Transactional emails (confirm, welcome, new link): the queue and its senders.

In-process against a real SMTP server on SQLite and PostgreSQL (retries, permanent
failures, two senders racing for one row, `digest run` picking up what is left), then
for real with a broker: the web queues, beat's ``digest.notify`` task on a real Celery
worker sends, and the web process never talks SMTP.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import select
from support.services import BeatFactory, RedisServer, WorkerFactory, wait_until
from support.smtpserver import SmtpSink
from support.webkit import SIGNUP, Visitor

from digest import pipeline
from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.pipeline import notify
from digest.store import db, suppression
from digest.store.models import Notification, NotificationStatus, Subscriber, SubscriberStatus

pytestmark = pytest.mark.integration

ADA = "ada@example.org"


@pytest.fixture
def smtp_settings(db_url: str, tmp_path: Path, smtp_server: SmtpSink) -> Settings:
    return make_settings(db_url, tmp_path, smtp_url=smtp_server.url)


def queue_confirm(settings: Settings, address: str = ADA) -> int:
    with db.session_scope(settings) as session:
        sub = subs.add_subscriber(session, address, topics=["agents"])
        return notify.queue(session, "confirm", sub).id


def row(settings: Settings, notification_id: int) -> Notification:
    with db.session_scope(settings) as session:
        found = session.get(Notification, notification_id)
        assert found is not None
        session.expunge(found)
        return found


def test_sent_at_once_without_a_broker(smtp_settings: Settings, smtp_server: SmtpSink) -> None:
    nid = queue_confirm(smtp_settings)
    assert notify.deliver(smtp_settings, [nid]) == {nid: NotificationStatus.SENT}
    (message,) = smtp_server.to(ADA)
    assert b"Subject: Confirm your subscription to Paper Digest" in message.data
    done = row(smtp_settings, nid)
    assert done.status is NotificationStatus.SENT and done.sent_at is not None
    assert done.attempts == 1 and done.message_id and done.message_id.encode() in message.data
    # Nothing is sent twice: the row is finished.
    assert notify.send_now(smtp_settings, [nid]) == {}
    assert notify.send_pending(smtp_settings) == {}
    assert len(smtp_server.to(ADA)) == 1


def test_a_transient_failure_is_retried_later_with_the_same_message_id(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    smtp_server.data_replies[ADA] = "451 4.3.0 try again later"
    nid = queue_confirm(smtp_settings)
    assert notify.deliver(smtp_settings, [nid]) == {nid: NotificationStatus.RETRY}
    waiting = row(smtp_settings, nid)
    assert waiting.due_at > utcnow() and "451" in (waiting.outcome or "")
    assert notify.send_pending(smtp_settings) == {}  # not due yet
    smtp_server.data_replies.clear()
    later = waiting.due_at + timedelta(seconds=1)
    assert notify.send_pending(smtp_settings, later) == {"sent": 1}
    (message,) = smtp_server.to(ADA)
    assert waiting.message_id and waiting.message_id.encode() in message.data
    assert row(smtp_settings, nid).attempts == 2


def test_no_such_mailbox_suppresses_the_address(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    smtp_server.rcpt_replies[ADA] = "550 5.1.1 No such user"
    nid = queue_confirm(smtp_settings)
    assert notify.deliver(smtp_settings, [nid]) == {nid: NotificationStatus.FAILED}
    with db.session_scope(smtp_settings) as session:
        assert suppression.is_suppressed(session, ADA)
        sub = session.scalars(select(Subscriber)).one()
        assert sub.status is SubscriberStatus.BOUNCED


def test_an_email_that_no_longer_makes_sense_is_skipped(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    nid = queue_confirm(smtp_settings)
    with db.session_scope(smtp_settings) as session:
        session.scalars(select(Subscriber)).one().status = SubscriberStatus.ACTIVE
    assert notify.deliver(smtp_settings, [nid]) == {nid: NotificationStatus.SKIPPED}
    assert "no confirmation needed" in (row(smtp_settings, nid).outcome or "")
    assert smtp_server.messages == []


def test_two_senders_racing_for_one_row_send_it_once(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    ids = [queue_confirm(smtp_settings, f"reader{i}@example.org") for i in range(20)]
    results: list[dict[int, NotificationStatus]] = []
    start = threading.Barrier(3)

    def sender() -> None:
        start.wait()
        results.append(notify.send_now(smtp_settings, ids))

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    claimed = [nid for r in results for nid in r]
    assert sorted(claimed) == sorted(ids)  # each row claimed by exactly one sender
    assert len(smtp_server.messages) == 20


def test_digest_run_sends_what_the_web_could_not(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    smtp_server.mail_reply = "421 4.3.2 shutting down"
    web = Visitor(smtp_settings)
    assert web.post("/subscribe", SIGNUP).status_code == 200  # the page does not wait on mail
    assert smtp_server.messages == []
    smtp_server.mail_reply = None
    with db.session_scope(smtp_settings) as session:
        for pending in session.scalars(select(Notification)):
            pending.due_at = utcnow() - timedelta(seconds=1)  # its retry time has come
    summary = pipeline.run_once(smtp_settings, fetch=False)
    assert summary.notifications == {"sent": 1}
    assert len(smtp_server.to(ADA)) == 1


def test_with_a_broker_beat_sends_the_queued_emails_on_a_real_worker(
    pg_url: str,
    tmp_path: Path,
    redis_server: RedisServer,
    smtp_server: SmtpSink,
    celery_worker_factory: WorkerFactory,
    celery_beat_factory: BeatFactory,
) -> None:
    settings = make_settings(
        pg_url,
        tmp_path,
        broker_url=redis_server.url,
        smtp_url=smtp_server.url,
        notify_interval_seconds=1,
    )
    celery_worker_factory(settings)
    beat = celery_beat_factory(replace(settings, notify_interval_seconds=1))
    web = Visitor(settings)
    assert web.post("/subscribe", SIGNUP).status_code == 200
    with db.session_scope(settings) as session:
        (queued,) = session.scalars(select(Notification)).all()
        assert queued.kind == "confirm"
    # The worker, not the web process, sends it (within a beat tick or two).
    wait_until(lambda: smtp_server.to(ADA), 60, "beat's notify task to send the email")
    assert beat.sent("notify") >= 1
    wait_until(
        lambda: row(settings, queued.id).status is NotificationStatus.SENT,
        30,
        "the row marked sent",
    )
    assert len(smtp_server.to(ADA)) == 1
