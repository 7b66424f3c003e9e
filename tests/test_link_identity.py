"""A link names exactly one person, forever (issue 9, item 1).

The review's attack: remove carl (the highest id), add dave; on SQLite dave got carl's
id, and carl's old manage link showed dave's page, his one-click link unsubscribed
dave, his pending confirm link activated dave. Here the same, through the real web app
(Flask's test client) and the inbound mail code, on SQLite and PostgreSQL, plus a
database restored from a backup (same secret key, a re-created subscriber).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import PG_ADMIN_URL, make_settings
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session
from support.webkit import Visitor, path_of
from support.webkit import text as page_text

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.errors import AddressError
from digest.inbound import addresses
from digest.store import db
from digest.store.models import AppMeta, Digest, Subscriber, SubscriberStatus, Topic
from digest.subscriptions import links, mailtokens, privacy, tokens

CARL = "carl@example.org"
DAVE = "dave@example.org"
PERIOD = "2026-12-01"


def _carl_links(settings: Settings, session: Session, carl: Subscriber) -> dict[str, str]:
    """Every web link an email could have carried to carl (paths for the test client)."""
    topic = carl.topics[0].id
    return {
        "manage": path_of(settings, subs.manage_url(settings, carl, session=session)),
        "unsubscribe": path_of(settings, subs.unsubscribe_url(settings, carl, session=session)),
        "confirm": path_of(settings, subs.confirm_url(settings, carl, session=session)),
        "stop": path_of(settings, links.topic_stop_url(settings, carl, topic, session=session)),
        "view": path_of(settings, links.view_url(settings, carl, session=session)),
    }


def _carl_addresses(settings: Settings, session: Session, carl: Subscriber) -> list[str]:
    session.add(Digest(subscriber_id=carl.id, period=PERIOD))
    session.flush()
    return [
        mailtokens.verp_address(settings, session, carl, PERIOD),
        mailtokens.reply_address(settings, session, carl, PERIOD),
        mailtokens.unsubscribe_address(settings, session, carl),
        mailtokens.confirm_address(settings, session, carl),
    ]


def _status(settings: Settings, address: str) -> tuple[SubscriberStatus, list[str]]:
    with db.session_scope(settings) as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email_key == address)).one()
        return row.status, [t.query for t in row.topics]


def _assert_links_do_not_reach(settings: Settings, paths: dict[str, str], mail: list[str]) -> None:
    web = Visitor(settings)
    before = _status(settings, DAVE)
    for purpose, path in paths.items():
        shown = web.get(path)
        assert DAVE not in page_text(shown), f"carl's {purpose} link shows dave's address"
        assert shown.status_code == 400, (purpose, shown.status_code)
    # One-click (RFC 8058: no cookie, no CSRF token), confirm, stop: all refused.
    one_click = web.post_bare(paths["unsubscribe"], data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    assert web.post(paths["confirm"]).status_code == 400
    assert web.post(paths["stop"]).status_code == 400
    assert web.post(paths["manage"] + "/pause").status_code == 400
    assert _status(settings, DAVE) == before
    # The signed mail addresses carl's emails carried: refused at RCPT by the listener's
    # own check, whatever row now holds the id.
    with db.session_scope(settings) as s:
        for address in mail:
            recipient = addresses.classify(settings, address)
            assert recipient is not None and recipient.parsed is not None
            with pytest.raises(AddressError):
                addresses.verify(settings, s, recipient)


def test_a_removed_readers_links_never_act_on_the_next_reader(
    settings: Settings, session: Session
) -> None:
    subs.add_subscriber(session, "ada@example.org", topics=["diffusion"], confirmed=True)
    carl = subs.add_subscriber(session, CARL, topics=["jailbreak"])  # pending, highest id
    paths = _carl_links(settings, session, carl)
    mail = _carl_addresses(settings, session, carl)
    carl_id = carl.id
    subs.remove(session, carl)
    session.commit()
    dave = subs.add_subscriber(session, DAVE, topics=["unlearning"])
    session.commit()
    assert dave.id != carl_id, "a deleted subscriber's id was handed out again"
    _assert_links_do_not_reach(settings, paths, mail)
    assert _status(settings, DAVE) == (SubscriberStatus.PENDING, ["unlearning"])


def test_links_are_bound_to_the_row_not_to_its_id(settings: Settings, session: Session) -> None:
    """However an id comes to name somebody else (a restore, a hand-made row), carl's
    links and addresses do not work for them."""
    carl = subs.add_subscriber(session, CARL, topics=["jailbreak"])
    paths = _carl_links(settings, session, carl)
    mail = _carl_addresses(settings, session, carl)
    carl_id = carl.id
    subs.remove(session, carl)
    session.commit()
    # dave in carl's id, exactly as a restored backup or a reused rowid would have him.
    dave = subs.add_subscriber(session, DAVE, confirmed=True)
    session.execute(
        text("UPDATE subscribers SET id = :new WHERE id = :old"), {"new": carl_id, "old": dave.id}
    )
    session.commit()
    session.expire_all()
    moved = session.get(Subscriber, carl_id)
    assert moved is not None
    subs.add_topic(session, moved, "unlearning")
    session.commit()
    session.expire_all()
    assert _status(settings, DAVE) == (SubscriberStatus.ACTIVE, ["unlearning"])
    _assert_links_do_not_reach(settings, paths, mail)
    # dave's own links work, of course.
    dave = session.get(Subscriber, carl_id)  # type: ignore[assignment]
    assert dave is not None and dave.email == DAVE
    token = subs.make_token(settings, dave, "unsubscribe", session=session)
    assert subs.read_token(settings, token, "unsubscribe", session=session) == carl_id


def test_a_restored_backup_does_not_accept_the_old_link(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Same secret key, backup restored, the subscriber re-created (same address, same
    id): links sent to the row that was lost with the restore are refused."""
    path = tmp_path / "digest.db"
    path.write_bytes(sqlite_template.read_bytes())
    settings = make_settings(f"sqlite:///{path}", tmp_path)
    with db.session_scope(settings) as s:
        subs.add_subscriber(s, "ada@example.org", topics=["diffusion"], confirmed=True)
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)
    with db.session_scope(settings) as s:
        carl = subs.add_subscriber(s, CARL, topics=["jailbreak"], confirmed=True)
        old = {
            purpose: subs.make_token(settings, carl, purpose, session=s)
            for purpose in ("manage", "unsubscribe", "stop", "view")
        }
        old_mail = mailtokens.unsubscribe_address(settings, s, carl)
        carl_id = carl.id
    db.dispose_engines()
    with sqlite3.connect(backup) as copy, sqlite3.connect(path) as live:
        copy.backup(live)  # the operator restores last night's backup
    with db.session_scope(settings) as s:
        again = subs.add_subscriber(s, CARL, topics=["jailbreak"], confirmed=True)
        assert again.id == carl_id  # the backup's sequence hands the id out again
    with db.session_scope(settings) as s:
        for purpose, token in old.items():
            with pytest.raises(subs.TokenError):
                links.read_link(settings, token, purpose, session=s)
        parsed = mailtokens.parse_address(settings, old_mail)
        assert parsed is not None
        with pytest.raises(AddressError):
            mailtokens.resolve(settings, s, parsed)
    web = Visitor(settings)
    assert web.post_bare(f"/unsubscribe/{old['unsubscribe']}").status_code == 400
    assert _status(settings, CARL)[0] is SubscriberStatus.ACTIVE


def test_unsubscribe_links_survive_rotation_for_the_same_person(
    settings: Settings, session: Session
) -> None:
    carl = subs.add_subscriber(session, CARL, topics=["jailbreak"], confirmed=True)
    leave = subs.make_token(settings, carl, "unsubscribe", session=session)
    manage = subs.make_token(settings, carl, "manage", session=session)
    mailto = mailtokens.unsubscribe_address(settings, session, carl)
    subs.rotate_tokens(session, carl)
    session.commit()
    assert subs.read_token(settings, leave, "unsubscribe", session=session) == carl.id
    with pytest.raises(subs.TokenError, match="newer one"):
        subs.read_token(settings, manage, "manage", session=session)
    parsed = mailtokens.parse_address(settings, mailto)
    assert parsed is not None
    assert mailtokens.resolve(settings, session, parsed).subscriber is carl


def test_unsubscribe_links_from_before_the_migration_keep_working_for_their_row(
    settings: Settings, session: Session
) -> None:
    """Leaving must work from any email ever sent: a pre-0008 unsubscribe link (no
    secret in its MAC) works for a row created before it, never for a later row."""
    key = tokens.signing_key(session, settings)
    carl = subs.add_subscriber(session, CARL, confirmed=True, now=utcnow() - timedelta(days=30))
    issued = int((utcnow() - timedelta(days=10)).timestamp())
    body = f"{carl.id}.{carl.token_version}.{issued}"
    legacy = f"{body}.{tokens._legacy_mac(key, 'unsubscribe', body)}"
    legacy_manage = f"{body}.{tokens._legacy_mac(key, 'manage', body)}"
    legacy_mailto = mailtokens._address(
        settings,
        f"unsubscribe+{carl.id}-{mailtokens._mac(key, 'unsubscribe', carl.id, carl.email_key)}",
    )
    bound = session.get(AppMeta, tokens.LINKS_BOUND_AT_META)
    if bound is None:  # PostgreSQL tests truncate app_meta; the migration wrote it
        session.add(AppMeta(key=tokens.LINKS_BOUND_AT_META, value=str(int(utcnow().timestamp()))))
    session.commit()
    assert subs.read_token(settings, legacy, "unsubscribe", session=session) == carl.id
    parsed = mailtokens.parse_address(settings, legacy_mailto)
    assert parsed is not None and mailtokens.resolve(settings, session, parsed).subscriber is carl
    with pytest.raises(subs.TokenError):  # only the way out is kept, nothing else
        subs.read_token(settings, legacy_manage, "manage", session=session)
    # A row created after the link was issued (its id reused) is not the person it was for.
    carl.created_at = utcnow() - timedelta(days=1)
    session.commit()
    with pytest.raises(subs.TokenError):
        subs.read_token(settings, legacy, "unsubscribe", session=session)
    # And nothing made after the migration is accepted the old way.
    bound_row = session.get(AppMeta, tokens.LINKS_BOUND_AT_META)
    assert bound_row is not None
    bound_row.value = str(issued - 1)
    carl.created_at = utcnow() - timedelta(days=30)
    session.commit()
    with pytest.raises(subs.TokenError):
        subs.read_token(settings, legacy, "unsubscribe", session=session)


def test_every_insert_path_gives_each_row_its_own_secret(
    settings: Settings, session: Session
) -> None:
    """The lifecycle, a Core INSERT (the model's default), and the CSV import (an
    executemany on SQLite, COPY on PostgreSQL): each row a secret of its own."""
    subs.add_subscriber(session, "ada@example.org", confirmed=True)
    session.execute(insert(Subscriber), [{"email": "b@x.org", "email_key": "b@x.org"}])
    report = subs.import_csv(session, b"email,topics\nc@x.org,diffusion\nd@x.org,\n")
    assert report.imported == 2 and not report.errors
    session.commit()
    secrets_ = session.scalars(select(Subscriber.link_secret)).all()
    assert len(secrets_) == 4
    assert all(len(s) >= 32 for s in secrets_)
    assert len(set(secrets_)) == len(secrets_)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated only to 0004 (before link secrets), for the upgrade."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        db.upgrade(url, "0004")
        yield url
        return
    name = f"digest_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    db.upgrade(url, "0004")
    yield url
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_upgrade_keeps_every_row_and_gives_each_a_secret(db_at_0004: str) -> None:
    engine = db.engine_for(db_at_0004)
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, email_key, status, timezone, frequency,"
                    " weekday, send_hour, max_papers, created_at, consent_source, consent_at,"
                    " token_version) VALUES (:id, :e, :e, 'active', 'UTC', 'daily', 0, 7, 20,"
                    " '2026-11-01 00:00:00', 'cli', '2026-11-01 00:00:00', 0)"
                ),
                {"id": n, "e": f"r{n}@example.org"},
            )
            conn.execute(
                text(
                    "INSERT INTO topics (subscriber_id, label, query, created_at)"
                    " VALUES (:id, 'x', 'diffusion', '2026-11-01 00:00:00')"
                ),
                {"id": n},
            )
            conn.execute(
                text(
                    "INSERT INTO digests (subscriber_id, period, status, planned_at, due_at,"
                    " attempts, paper_ids) VALUES (:id, '2026-11-30', 'sent',"
                    " '2026-11-30 07:00:00', '2026-11-30 07:00:00', 1, '[]')"
                ),
                {"id": n},
            )
        if conn.dialect.name == "postgresql":  # explicit ids do not move the sequence
            conn.execute(text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), 3)"))
        conn.execute(text("DELETE FROM subscribers WHERE id = 3"))  # frees the highest id
    db.dispose_engines()
    db.upgrade(db_at_0004)
    settings = Settings(database_url=db_at_0004, secret_key="k" * 32)
    with db.session_scope(settings) as s:
        rows = s.execute(select(Subscriber.id, Subscriber.link_secret)).all()
        assert sorted(r[0] for r in rows) == [1, 2]
        assert len({r[1] for r in rows}) == 2 and all(len(r[1]) >= 32 for r in rows)
        assert s.scalar(select(func.count()).select_from(Topic)) == 2
        assert s.scalar(select(func.count()).select_from(Digest)) == 2
        assert s.get(AppMeta, tokens.LINKS_BOUND_AT_META) is not None
        if db_at_0004.startswith("sqlite"):
            assert s.execute(text("PRAGMA foreign_key_check")).all() == []
            schema = s.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'subscribers'"))
            assert "AUTOINCREMENT" in (schema or "")
        fresh = subs.add_subscriber(s, "new@example.org")
        s.flush()
        # SQLite: the sequence starts at the highest id present at the upgrade.
        assert fresh.id == (3 if db_at_0004.startswith("sqlite") else 4)
        s.delete(fresh)
    with db.session_scope(settings) as s:
        again = subs.add_subscriber(s, "again@example.org")
        s.flush()
        assert again.id > fresh.id  # the id of the one just deleted is not handed out again


def test_erasure_does_not_free_the_id(settings: Settings, session: Session) -> None:
    subs.add_subscriber(session, "ada@example.org", confirmed=True)
    carl = subs.add_subscriber(session, CARL, confirmed=True)
    carl_id = carl.id
    leave = subs.make_token(settings, carl, "unsubscribe", session=session)
    privacy.erase(session, carl)
    session.commit()
    dave = subs.add_subscriber(session, DAVE, confirmed=True)
    session.commit()
    assert dave.id != carl_id
    with pytest.raises(subs.TokenError):
        subs.read_token(settings, leave, "unsubscribe", session=session)


def test_a_stop_link_for_a_removed_topic_never_removes_a_later_one(
    settings: Settings, session: Session
) -> None:
    ada = subs.add_subscriber(session, "ada@example.org", topics=["diffusion", "jailbreak"])
    gone = ada.topics[-1].id  # the highest topic id
    stop = path_of(settings, links.topic_stop_url(settings, ada, gone, session=session))
    subs.remove_topic(session, ada, gone)
    later = subs.add_topic(session, ada, "unlearning")
    session.commit()
    assert later.id != gone
    web = Visitor(settings)
    assert "already gone" in page_text(web.post(stop))
    assert _status(settings, "ada@example.org")[1] == ["diffusion", "unlearning"]
