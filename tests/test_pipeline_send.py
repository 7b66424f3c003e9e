"""send_batch end to end in-process: the ledger, paper windows and SMTP outcomes.

A real SMTP server (aiosmtpd over TCP) and both databases. The Celery-level
versions of these guarantees (killed workers, lost messages) are in test_workers.py.
"""

from __future__ import annotations

import email
import threading
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import select, text
from support.factories import T, make_papers, make_subscriber, seed
from support.smtpserver import SmtpSink

from digest import pipeline
from digest.config import Settings
from digest.pipeline import send as send_module
from digest.store import db
from digest.store.dialect import lock_paper_stamps
from digest.store.models import (
    Digest,
    DigestStatus,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from digest.subscriptions.lifecycle import unsubscribe

pytestmark = pytest.mark.integration

SEED = seed()
UNLEARNING = [
    "Open Problems in Machine Unlearning for AI Safety",
    "Corrective Machine Unlearning",
]
LATER_UNLEARNING = "Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine Unlearning"
UNRELATED = "Accident Risk Prediction based on Heterogeneous Sparse Data: New Dataset and Insights"


@pytest.fixture
def smtp_settings(db_url: str, tmp_path: Path, smtp_server: SmtpSink) -> Settings:
    return make_settings(db_url, tmp_path, smtp_url=f"{smtp_server.url}?timeout=5")


def add_papers(settings: Settings, titles: list[str], seen: datetime) -> list[int]:
    with db.session_scope(settings) as session:
        return [p.id for p in make_papers(session, titles, seen, last_seen_at=seen)]


def add_reader(settings: Settings, address: str, *topics: str, **kw: object) -> None:
    with db.session_scope(settings) as session:
        make_subscriber(session, address, *topics, **kw)


def run(settings: Settings, now: datetime) -> dict[str, int]:
    return pipeline.run_once(settings, now, fetch=False).by_status


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data)


def body_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")


def digest_rows(settings: Settings) -> list[Digest]:
    with db.session_scope(settings) as session:
        return list(session.scalars(select(Digest).order_by(Digest.id)))


def test_each_paper_reaches_a_reader_once_across_days(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, [*UNLEARNING, UNRELATED], T - timedelta(hours=3))
    add_reader(smtp_settings, "ada@example.org", "machine unlearning")
    assert run(smtp_settings, T) == {"sent": 1}
    first = body_text(parse(smtp_server.messages[0].data))
    assert all(title in first for title in UNLEARNING)
    assert UNRELATED not in first
    # The same day again: nothing new is planned or sent.
    assert run(smtp_settings, T + timedelta(hours=2)) == {}
    add_papers(smtp_settings, [LATER_UNLEARNING], T + timedelta(hours=5))
    assert run(smtp_settings, T + timedelta(days=1)) == {"sent": 1}
    second = body_text(parse(smtp_server.messages[1].data))
    assert LATER_UNLEARNING.split(":")[0] in second
    assert not any(title in second for title in UNLEARNING)
    rows = digest_rows(smtp_settings)
    assert [r.period for r in rows] == ["2026-11-29", "2026-11-30"]
    assert not set(rows[0].paper_ids) & set(rows[1].paper_ids)
    assert rows[0].window_end == rows[1].window_start  # windows tile, no gap, no overlap
    ids = {m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in smtp_server.messages}
    assert len(ids) == 2


def test_a_retried_digest_shows_the_same_papers(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    add_reader(smtp_settings, "ada@example.org", "machine unlearning")
    smtp_server.rcpt_replies["ada@example.org"] = "451 4.3.0 Try again later"
    assert run(smtp_settings, T) == {"retry": 1}
    (row,) = digest_rows(smtp_settings)
    assert row.status is DigestStatus.RETRY
    assert row.retry_at is not None and row.retry_at > T
    assert "451" in (row.error or "")
    first_papers, first_id = row.paper_ids, row.message_id
    assert first_id, "the Message-ID is fixed (and committed) with the window"
    # A matching paper arrives while the digest waits; the server recovers.
    add_papers(smtp_settings, [LATER_UNLEARNING], T + timedelta(minutes=10))
    smtp_server.rcpt_replies.clear()
    assert pipeline.sweep(smtp_settings, row.retry_at - timedelta(seconds=1)) == []
    assert run(smtp_settings, row.retry_at + timedelta(seconds=1)) == {"sent": 1}
    (row,) = digest_rows(smtp_settings)
    assert row.paper_ids == first_papers and row.message_id == first_id
    assert row.attempts == 2
    assert parse(smtp_server.messages[0].data)["Message-ID"] == first_id
    text = body_text(parse(smtp_server.messages[0].data))
    assert LATER_UNLEARNING.split(":")[0] not in text
    # ... and goes out in the next digest instead: not lost, not twice.
    assert run(smtp_settings, T + timedelta(days=1)) == {"sent": 1}
    assert LATER_UNLEARNING.split(":")[0] in body_text(parse(smtp_server.messages[1].data))


def test_nothing_matched_is_skipped_or_a_quiet_note(
    db_url: str, tmp_path: Path, smtp_server: SmtpSink
) -> None:
    settings = make_settings(db_url, tmp_path, smtp_url=smtp_server.url)
    add_papers(settings, [UNRELATED], T - timedelta(hours=3))
    add_reader(settings, "ada@example.org", "machine unlearning")
    assert run(settings, T) == {"skipped": 1}
    assert smtp_server.messages == []
    (row,) = digest_rows(settings)
    assert row.error == "none of 1 new papers matched"
    quiet = make_settings(db_url, tmp_path, smtp_url=smtp_server.url, quiet_day_note=True)
    assert run(quiet, T + timedelta(days=1)) == {"sent": 1}
    assert "ada@example.org" in smtp_server.messages[0].rcpt_tos


def test_a_permanent_failure_suppresses_only_that_address(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    for name in ("ada", "gone", "grace"):
        add_reader(smtp_settings, f"{name}@example.org", "machine unlearning")
    smtp_server.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user"
    assert run(smtp_settings, T) == {"sent": 2, "failed": 1}
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "ada@example.org",
        "grace@example.org",
    ]
    with db.session_scope(smtp_settings) as session:
        suppression = session.scalars(select(Suppression)).one()
        assert suppression.email_key == "gone@example.org"
        assert suppression.smtp_code == 550
        gone = session.scalars(
            select(Subscriber).where(Subscriber.email_key == "gone@example.org")
        ).one()
        assert gone.status is SubscriberStatus.BOUNCED
    # Tomorrow: the bounced address is not even planned.
    smtp_server.rcpt_replies.clear()
    assert run(smtp_settings, T + timedelta(days=1)) in ({}, {"skipped": 2})
    assert not smtp_server.to("gone@example.org")


def test_a_connection_lost_after_data_is_unknown_and_never_resent(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    add_reader(smtp_settings, "flaky@example.org", "machine unlearning")
    smtp_server.drop_after_data.add("flaky@example.org")
    assert run(smtp_settings, T) == {"unknown": 1}
    (row,) = digest_rows(smtp_settings)
    assert row.status is DigestStatus.UNKNOWN
    assert row.message_id
    assert pipeline.sweep(smtp_settings, T + timedelta(days=2)) == []
    assert len(smtp_server.messages) == 1  # the server did store it once


def test_unsubscribed_between_plan_and_send_gets_nothing(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    add_reader(smtp_settings, "ada@example.org", "machine unlearning")
    ids = pipeline.plan(smtp_settings, T)
    with db.session_scope(smtp_settings) as session:
        sub = session.scalars(select(Subscriber)).one()
        unsubscribe(session, sub)
    assert pipeline.send_batch(smtp_settings, ids, T).by_status == {"skipped": 1}
    assert smtp_server.messages == []


def test_a_failing_server_stops_the_batch_without_burning_attempts(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    for i in range(8):
        add_reader(smtp_settings, f"r{i}@example.org", "machine unlearning")
    smtp_server.mail_reply = "421 4.3.2 Service shutting down"
    assert run(smtp_settings, T) == {"retry": 8}
    attempts = [r.attempts for r in digest_rows(smtp_settings)]
    assert attempts == [1] * pipeline.BREAKER_THRESHOLD + [0] * (8 - pipeline.BREAKER_THRESHOLD)
    assert all(r.retry_at and r.retry_at > T for r in digest_rows(smtp_settings))
    smtp_server.mail_reply = None
    later = max(r.retry_at for r in digest_rows(smtp_settings) if r.retry_at) + timedelta(seconds=1)
    assert run(smtp_settings, later) == {"sent": 8}
    assert len(smtp_server.messages) == 8


def test_concurrent_senders_never_send_one_digest_twice(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    for i in range(30):
        add_reader(smtp_settings, f"r{i}@example.org", "machine unlearning")
    ids = pipeline.plan(smtp_settings, T)
    barrier = threading.Barrier(3)
    results: list[dict[str, int]] = []

    def sender() -> None:
        barrier.wait()
        results.append(pipeline.send_batch(smtp_settings, ids, T).by_status)

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.get("sent", 0) for r in results) == 30
    recipients = [r for m in smtp_server.messages for r in m.rcpt_tos]
    assert len(recipients) == len(set(recipients)) == 30


def test_in_process_run_writes_the_outbox(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    add_papers(settings, UNLEARNING, T - timedelta(hours=3))
    add_reader(settings, "ada@example.org", "machine unlearning")
    assert run(settings, T) == {"sent": 1}
    emls = list(settings.outbox.glob("*.eml"))
    htmls = list(settings.outbox.glob("*.html"))
    assert len(emls) == len(htmls) == 1
    message = parse(emls[0].read_bytes())
    assert message["To"] == "ada@example.org"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert UNLEARNING[1] in htmls[0].read_text()


def test_a_relay_refusing_our_sender_keeps_every_digest(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    """A 5xx about us (not the address) must not fail or suppress anyone."""
    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    for i in range(3):
        add_reader(smtp_settings, f"r{i}@example.org", "machine unlearning")
    smtp_server.mail_reply = "530 5.7.0 Must issue a STARTTLS command first"
    assert run(smtp_settings, T) == {"retry": 3}
    with db.session_scope(smtp_settings) as session:
        assert session.scalars(select(Suppression)).first() is None
        statuses = set(session.scalars(select(Subscriber.status)))
    assert statuses == {SubscriberStatus.ACTIVE}
    assert all("530" in (r.error or "") for r in digest_rows(smtp_settings))
    smtp_server.mail_reply = None
    later = max(r.retry_at for r in digest_rows(smtp_settings) if r.retry_at) + timedelta(seconds=1)
    assert run(smtp_settings, later) == {"sent": 3}


def test_unsuppress_lifts_the_block(smtp_settings: Settings, smtp_server: SmtpSink) -> None:
    from click.testing import CliRunner

    from digest.cli import cli
    from digest.store.suppression import suppress

    add_papers(smtp_settings, UNLEARNING, T - timedelta(hours=3))
    add_reader(smtp_settings, "ada@example.org", "machine unlearning")
    with db.session_scope(smtp_settings) as session:
        suppress(session, "Ada@Example.org", "550 mailbox full for a year", 550)
    assert run(smtp_settings, T) == {"failed": 1}
    assert digest_rows(smtp_settings)[0].error == "address is on the suppression list"
    assert smtp_server.messages == []
    env = {"DIGEST_DATABASE_URL": smtp_settings.database_url}
    lifted = CliRunner().invoke(cli, ["subscribers", "unsuppress", "ada@example.org"], env=env)
    assert lifted.exit_code == 0, lifted.output
    again = CliRunner().invoke(cli, ["subscribers", "unsuppress", "ada@example.org"], env=env)
    assert again.exit_code == 1 and "not on the suppression list" in again.output
    add_papers(smtp_settings, [LATER_UNLEARNING], T + timedelta(hours=1))
    assert run(smtp_settings, T + timedelta(days=1)) == {"sent": 1}


def test_a_long_batch_renews_its_lease_and_skips_rows_it_lost(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow server can make a batch outlast its lease: we renew at half-time, and a
    row another worker took over in the meantime is left to it, not sent twice."""
    from sqlalchemy import update

    from digest import deliver as delivery

    settings = make_settings(db_url, tmp_path, lease_seconds=10)
    add_papers(settings, UNLEARNING, T - timedelta(hours=3))
    for i in range(5):
        add_reader(settings, f"r{i}@example.org", "machine unlearning")
    ids = pipeline.plan(settings, T)
    # Every clock reading is 6 s later than the last: more than half a 10 s lease.
    ticks = iter(range(0, 10_000, 6))
    monkeypatch.setattr(send_module.time, "monotonic", lambda: float(next(ticks)))
    sent: list[str] = []
    outbox = delivery.OutboxTransport(settings.outbox)

    class StealingTransport(delivery.Transport):
        def _send(self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int):  # type: ignore[no-untyped-def]
            sent.append(to)
            if len(sent) == 2:
                # Meanwhile another worker reclaimed the last row.
                with db.session_scope(settings) as other:
                    other.execute(
                        update(Digest).where(Digest.id == ids[-1]).values(lease_owner="other:1")
                    )
            return outbox._send(envelope_from, to, data, message_id, attempt)

    monkeypatch.setattr(send_module, "transport_from_settings", lambda s: StealingTransport())
    renewals: list[list[int]] = []
    real_renew = pipeline.renew_lease

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        renewals.append(real_renew(*args, **kwargs))
        return renewals[-1]

    monkeypatch.setattr(send_module, "renew_lease", spy)
    result = pipeline.send_batch(settings, ids, T)
    assert sent == [f"r{i}@example.org" for i in range(4)]
    assert result.by_status == {"sent": 4}
    rows = {r.id: r for r in digest_rows(settings)}
    assert rows[ids[-1]].status is DigestStatus.SENDING and rows[ids[-1]].lease_owner == "other:1"
    assert all(r.status is DigestStatus.SENT for i, r in rows.items() if i != ids[-1])
    # Renewed before each message; after the theft the lost row is no longer ours.
    assert sorted(renewals[0]) == ids
    assert renewals[-1] == []  # nothing left that we hold when the stolen row comes up
    assert all(ids[-1] not in r for r in renewals[3:])


def test_a_missed_day_is_carried_by_the_next_digest(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    """Yesterday's digest was planned but never built (the broker was down all day):
    today's digest takes its papers, and yesterday's is not sent on top of it."""
    add_reader(smtp_settings, "ada@example.org", "machine unlearning")
    add_papers(smtp_settings, [UNLEARNING[0]], T - timedelta(hours=20))  # yesterday's window
    yesterday = pipeline.plan(smtp_settings, T - timedelta(hours=23))  # never sent
    add_papers(smtp_settings, [UNLEARNING[1]], T + timedelta(hours=5))
    today = pipeline.plan(smtp_settings, T + timedelta(days=1))
    assert yesterday and today
    # Both rows are due now, in one batch; the older one is superseded.
    result = pipeline.send_batch(smtp_settings, yesterday + today, T + timedelta(days=1))
    assert result.by_status == {"skipped": 1, "sent": 1}
    rows = {r.id: r for r in digest_rows(smtp_settings)}
    assert rows[yesterday[0]].error == "superseded: a later digest carries its papers"
    assert len(smtp_server.messages) == 1
    text = body_text(parse(smtp_server.messages[0].data))
    assert all(title in text for title in UNLEARNING)
    # Built alone later, the old row is still superseded: never a second copy.
    assert pipeline.send_batch(smtp_settings, yesterday, T + timedelta(days=2)).claimed == 0


def test_a_window_never_closes_between_a_papers_stamp_and_its_commit(
    pg_url: str, tmp_path: Path
) -> None:
    """An ingest that stamped a paper but has not committed yet holds the window back:
    the digest waits for it and carries the paper, instead of missing it for good."""
    settings = make_settings(pg_url, tmp_path)
    add_reader(settings, "ada@example.org", "machine unlearning")
    ids = pipeline.plan(settings, T)
    ingest = db.session_factory(settings)()
    lock_paper_stamps(ingest, exclusive=False)
    ingest.add(
        Paper(
            key="arxiv:2511.99999",
            title=UNLEARNING[0],
            abstract=SEED[UNLEARNING[0]]["abstract"],
            first_seen_at=T - timedelta(seconds=1),
            last_seen_at=T,
        )
    )
    ingest.flush()  # stamped and written, not yet committed
    results: list[dict[str, int]] = []
    sender = threading.Thread(
        target=lambda: results.append(pipeline.send_batch(settings, ids, T).by_status)
    )
    sender.start()

    def sender_waits_for_the_lock() -> bool:
        with db.engine_for(pg_url).connect() as conn:
            waiting = conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
        return waiting == 1

    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while not sender_waits_for_the_lock():
        assert sender.is_alive() and datetime.now(UTC) < deadline, "the sender did not wait"
        sender.join(timeout=0.05)
    ingest.commit()
    ingest.close()
    sender.join(timeout=60)
    assert results == [{"sent": 1}]
    (row,) = digest_rows(settings)
    assert len(row.paper_ids) == 1


def test_message_ids_differ_between_installations_that_reuse_row_ids(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Staging and production, or a rebuilt database: digest 1 is not digest 1."""
    ids = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.db"
        path.write_bytes(sqlite_template.read_bytes())
        settings = make_settings(f"sqlite:///{path}", tmp_path / name)
        add_papers(settings, UNLEARNING, T - timedelta(hours=3))
        add_reader(settings, "ada@example.org", "machine unlearning")
        assert run(settings, T) == {"sent": 1}
        (row,) = digest_rows(settings)
        ids.append((row.id, row.message_id))
    assert ids[0][0] == ids[1][0] and ids[0][1] != ids[1][1]


def test_papers_beyond_the_readers_maximum_are_counted_in_the_email(
    smtp_settings: Settings, smtp_server: SmtpSink
) -> None:
    add_papers(smtp_settings, [*UNLEARNING, LATER_UNLEARNING], T - timedelta(hours=3))
    add_reader(smtp_settings, "ada@example.org", "machine unlearning", max_papers=1)
    assert run(smtp_settings, T) == {"sent": 1}
    (row,) = digest_rows(smtp_settings)
    assert len(row.paper_ids) == 1
    text = body_text(parse(smtp_server.messages[0].data))
    assert "2 more papers matched your topics; you get the best 1 paper a day" in text
