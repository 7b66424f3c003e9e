"""`digest preview` shows what `digest run` sends: the same builder, the same bytes.

The preview and the sent message of one reader, built at the same moment, may differ
only in their Message-ID (a preview is no ledger row); Date is the moment itself.
Both on SQLite and PostgreSQL, with the parts that used to drift: the "N more
matched" note of a reader capped at their maximum, and the paper window of a reader
who already had a digest.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from support.factories import T, make_papers, make_subscriber, seed_titles

from digest import pipeline
from digest.config import Settings
from digest.pipeline.preview import preview
from digest.store import db
from digest.store.models import Digest, DigestStatus
from digest.subscriptions.lifecycle import get_subscriber

pytestmark = pytest.mark.integration

READER = "ada@example.org"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


def preview_bytes(settings: Settings, now: object) -> bytes:
    with db.session_scope(settings) as session:
        subscriber = get_subscriber(session, READER)
        assert subscriber is not None
        message = preview(settings, session, subscriber, now).composed.message  # type: ignore[arg-type]
        assert message is not None
        return message.data


def sent_bytes(settings: Settings, message_id: str) -> bytes:
    (eml,) = [p for p in settings.outbox.glob("*.eml") if message_id.strip("<>") in p.read_text()]
    return eml.read_bytes()


def without_message_id(data: bytes) -> bytes:
    return re.sub(rb"^Message-ID: [^\r\n]*\r\n", b"", data, flags=re.M)


def run_and_fetch(settings: Settings, now: object) -> bytes:
    summary = pipeline.run_once(settings, now, fetch=False)  # type: ignore[arg-type]
    assert summary.by_status == {"sent": 1}, summary
    with db.session_scope(settings) as session:
        row = session.query(Digest).order_by(Digest.id.desc()).first()
        assert row is not None and row.status is DigestStatus.SENT and row.message_id
        message_id = row.message_id
    return sent_bytes(settings, message_id)


def test_preview_is_the_sent_message_but_for_its_message_id(settings: Settings) -> None:
    broad = seed_titles("language model", "LLM", "reasoning", "agent", "safety")
    with db.session_scope(settings) as session:
        make_papers(session, broad, T - timedelta(hours=3))
        # Capped at 2, so the email must say how many more matched.
        make_subscriber(session, READER, "language models", "safety", max_papers=2)

    previewed = preview_bytes(settings, T)
    sent = run_and_fetch(settings, T)
    assert without_message_id(previewed) == without_message_id(sent)
    assert previewed != sent  # the Message-ID is the one difference

    message = email.message_from_bytes(sent, policy=email.policy.default)
    body = " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert re.search(r"\d+ more papers? matched your topics", body)

    # The next day: the window starts where the sent digest's ended, for both.
    later = seed_titles("diffusion models", "fraud")
    with db.session_scope(settings) as session:
        make_papers(session, later, T + timedelta(hours=5))
        subscriber = get_subscriber(session, READER)
        assert subscriber is not None
        subscriber.max_papers = 20
    tomorrow = T + timedelta(days=1)
    with db.session_scope(settings) as session:
        subscriber = get_subscriber(session, READER)
        assert subscriber is not None
        subscriber.topics[0].query = "diffusion OR fraud"
    previewed = preview_bytes(settings, tomorrow)
    sent = run_and_fetch(settings, tomorrow)
    assert without_message_id(previewed) == without_message_id(sent)
    message = email.message_from_bytes(sent, policy=email.policy.default)
    body = " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert all(" ".join(t.split()) not in body for t in broad)  # yesterday's stay yesterday's
    assert any(" ".join(t.split()) in body for t in later)
