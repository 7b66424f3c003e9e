"""The pipeline under real workers: Redis, `celery worker`/`celery beat` subprocesses, SMTP.

Each test proves one invariant of ARCHITECTURE.md for real, with real processes killed,
a real Redis flushed and stopped, and a real SMTP server refusing mail:

* a whole simulated day delivers exactly one digest per subscriber, with the right papers;
* kill -9 mid-batch loses nothing, and duplicates stay within the group of outcomes not
  yet committed (at most DIGEST_COMMIT_EVERY per killed sender);
* lost broker messages (FLUSHALL, Redis down) delay digests but never drop them;
* 421 is retried until delivered once; 550 fails, suppresses and bounces one address;
* planning twice and two beats at once never create a second digest;
* the embedded SQLite default also works under a real multi-process worker
  (driven by the ``digest.run`` task, as `digest run --at` does with a broker);
* one digest that cannot be built fails alone; its batch-mates are delivered.

Simulated days replay a moment with the tasks' ``at`` argument; the tests that
depend on leases expiring (kill -9, lost messages) run on the real clock, with
leases of 10 s. Deadlines are generous and only turn a hang into a clear failure.
"""
# ruff: noqa: F811 - pytest fixtures imported from the services plugin module

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from celery import Celery
from conftest import make_settings
from sqlalchemy import func, select
from support.factories import make_paper
from support.services import (  # noqa: F401 - fixtures, until conftest registers the plugin
    BeatFactory,
    CeleryWorker,
    RedisServer,
    WorkerFactory,
    celery_beat_factory,
    celery_worker_factory,
    redis_server,
    wait_until,
)
from support.smtpserver import start_sink

from digest import pipeline
from digest.config import Settings
from digest.core.schedule import current_period
from digest.store import db
from digest.store.models import (
    Digest,
    DigestStatus,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
    utcnow,
)
from workers.celery_app import create_app

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
SEED: list[dict[str, str]] = json.loads((DATA / "seed_papers.json").read_text())
SEED_IDS: dict[str, str] = json.loads((DATA / "seed_ids.json").read_text())
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
OPEN = (DigestStatus.PLANNED, DigestStatus.SENDING, DigestStatus.RETRY)


# --- the world: papers and subscribers inserted directly ---------------------------------


@dataclass
class PaperSpec:
    seed: int  # index into seed_papers.json
    first_seen_at: datetime
    upvotes: int | None = None

    @property
    def title(self) -> str:
        return SEED[self.seed]["title"]

    @property
    def abstract(self) -> str:
        return SEED[self.seed]["abstract"]


@dataclass
class SubSpec:
    email: str
    timezone: str = "UTC"
    send_hour: int = 7
    topics: tuple[str, ...] = ()
    max_papers: int = 50
    last_late: timedelta = timedelta(0)  # how late yesterday's digest was built
    id: int = 0
    topic_ids: list[int] = field(default_factory=list)
    last_window_end: datetime | None = None


def add_papers(settings: Settings, papers: Sequence[PaperSpec]) -> dict[int, int]:
    """Insert the papers; returns seed index -> paper id."""
    with db.session_scope(settings) as session:
        rows = [
            make_paper(
                session,
                p.title,
                abstract=p.abstract,
                seen=p.first_seen_at,
                arxiv_id=SEED_IDS.get(p.title) or f"2607.{p.seed:05d}",
                authors=["Ada Lovelace", "Alan Turing"],
                primary_category="cs.LG",
                upvotes=p.upvotes,
                sources=["arxiv", "hf"] if p.upvotes else ["arxiv"],
                published_at=p.first_seen_at,
            )
            for p in papers
        ]
        return {p.seed: row.id for p, row in zip(papers, rows, strict=True)}


def add_subscribers(settings: Settings, subs: Sequence[SubSpec]) -> None:
    with db.session_scope(settings) as session:
        rows = []
        for s in subs:
            row = Subscriber(
                email=s.email,
                email_key=s.email.lower(),
                status=SubscriberStatus.ACTIVE,
                timezone=s.timezone,
                send_hour=s.send_hour,
                max_papers=s.max_papers,
                confirmed_at=LONG_AGO,
                consent_at=LONG_AGO,
                consent_source="cli",
                topics=[Topic(label=q, query=q) for q in s.topics],
            )
            rows.append(row)
        session.add_all(rows)
        session.flush()
        for s, row in zip(subs, rows, strict=True):
            s.id = row.id
            s.topic_ids = [t.id for t in row.topics]


def add_history(settings: Settings, subs: Sequence[SubSpec], before: datetime) -> None:
    """A sent digest for each subscriber's last period before ``before``: a running service.

    Its window ends when it was built (``SubSpec.last_late`` after its due moment, as
    when yesterday's run was late), so papers first seen until then were already shown
    and must never be shown again, even those of the last 24 hours.
    """
    with db.session_scope(settings) as session:
        for s in subs:
            period = current_period(before - timedelta(seconds=1), s.timezone, "daily", s.send_hour)
            s.last_window_end = period.due_at + s.last_late
            session.add(
                Digest(
                    subscriber_id=s.id,
                    period=period.label,
                    status=DigestStatus.SENT,
                    planned_at=period.due_at,
                    due_at=period.due_at,
                    attempts=1,
                    window_start=period.due_at - timedelta(days=1),
                    window_end=s.last_window_end,
                    message_id=f"<history-{s.id}@digest.example.org>",
                    sent_at=s.last_window_end,
                    finished_at=s.last_window_end,
                )
            )


# --- what each subscriber should get: an oracle independent of digest.matching ------------


def _word(term: str) -> str:
    # A word and its simple inflections (the topics below avoid irregular forms).
    return re.escape(term) + r"(?:s|es|ing|ed)?"


def oracle_matches(query: str, paper: PaperSpec) -> bool:
    """Every word of ``query`` in the paper, and more than a passing mention.

    The product's rule (digest.matching): all words present, and at least one of them
    in the title, said twice in the abstract, or the words standing together.
    """
    words = query.lower().split()
    title, abstract = paper.title.lower(), paper.abstract.lower()
    found = [re.compile(rf"\b{_word(w)}\b") for w in words]
    if not all(f.search(title) or f.search(abstract) for f in found):
        return False
    together = re.compile(r"\b" + r"\s+".join(_word(w) for w in words) + r"\b")
    strong = any(f.search(title) or len(f.findall(abstract)) >= 2 for f in found)
    adjacent = len(words) > 1 and bool(together.search(title) or together.search(abstract))
    return strong or adjacent


def expected_papers(sub: SubSpec, window: Iterable[PaperSpec]) -> list[PaperSpec]:
    papers = list(window)
    if not sub.topics:  # trending: the most upvoted new papers
        ranked = sorted((p for p in papers if p.upvotes), key=lambda p: -(p.upvotes or 0))
        return ranked[: sub.max_papers]
    hits = [p for p in papers if any(oracle_matches(q, p) for q in sub.topics)]
    assert len(hits) <= sub.max_papers, "test data: keep matches under the cap"
    return hits


# --- the mail that arrived -----------------------------------------------------------------


@dataclass
class Mail:
    rcpt: str
    message_id: str
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, f"no text/plain part in the message to {self.rcpt}"
        return part.get_content()

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, f"no text/html part in the message to {self.rcpt}"
        return part.get_content()


def parse_mail(rcpts: Sequence[str], data: bytes) -> list[Mail]:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    mid = str(msg["Message-ID"] or "").strip()
    return [Mail(r.lower(), mid, msg) for r in rcpts]


def by_recipient(mails: Iterable[Mail]) -> dict[str, list[Mail]]:
    grouped: dict[str, list[Mail]] = defaultdict(list)
    for m in mails:
        grouped[m.rcpt].append(m)
    return grouped


def squash(text: str) -> str:
    """Text without whitespace, so line wrapping in the text part cannot hide a title."""
    return "".join(text.split()).lower()


def assert_right_papers(mail: Mail, expected: Sequence[PaperSpec], universe: Sequence[PaperSpec]):  # type: ignore[no-untyped-def]
    body = squash(mail.text)
    wanted = {p.seed for p in expected}
    missing = [p.title for p in expected if squash(p.title) not in body]
    extra = [p.title for p in universe if p.seed not in wanted and squash(p.title) in body]
    assert not missing, f"{mail.rcpt}: papers that match its topics are missing: {missing}"
    assert not extra, f"{mail.rcpt}: papers that do not match its topics were sent: {extra}"
    count = re.search(r"\b(\d+) new papers?\b", str(mail.message["Subject"]))
    assert count is None or int(count.group(1)) == len(expected), (
        f"{mail.rcpt}: subject {mail.message['Subject']!r} for {len(expected)} papers"
    )


class Mailbox:
    """The SMTP server the workers deliver to (``smtpserver.SmtpSink``), as these tests drive it.

    ``set_delay`` makes the server store each message and then take its time before
    the 250, which widens the window in which a killed sender cannot know the
    message arrived; ``fail_all(421)`` refuses every transaction; ``fail_for``
    refuses one recipient permanently.
    """

    def __init__(self) -> None:
        self.sink, self._controller = start_sink()
        self._controller.handler = _SlowHandler(self._controller.handler)

    @property
    def url(self) -> str:
        return self.sink.url

    def set_delay(self, seconds: float) -> None:
        self._controller.handler.delay = seconds

    def fail_all(self, code: int | None) -> None:
        self.sink.mail_reply = (
            f"{code} 4.3.2 Service not available, try again later" if code else None
        )

    def fail_for(self, address: str, code: int) -> None:
        self.sink.rcpt_replies[address.lower()] = f"{code} 5.1.1 <{address}>: no such user"

    def mails(self) -> list[Mail]:
        with self.sink.lock:
            received = list(self.sink.messages)
        return [m for r in received for m in parse_mail(r.rcpt_tos, r.data)]

    def stop(self) -> None:
        self._controller.stop()


class _SlowHandler:
    """Delegates to the sink's handler; answers DATA only after ``delay`` seconds."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.delay = 0.0

    async def handle_MAIL(self, *args):  # type: ignore[no-untyped-def]
        return await self.inner.handle_MAIL(*args)  # type: ignore[attr-defined]

    async def handle_RCPT(self, *args):  # type: ignore[no-untyped-def]
        return await self.inner.handle_RCPT(*args)  # type: ignore[attr-defined]

    async def handle_DATA(self, *args):  # type: ignore[no-untyped-def]
        reply = await self.inner.handle_DATA(*args)  # type: ignore[attr-defined]
        if self.delay:
            await asyncio.sleep(self.delay)
        return reply


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.stop()


# --- database polling -------------------------------------------------------------------


def status_counts(settings: Settings, since_id: int = 0) -> Counter[str]:
    with db.session_scope(settings) as session:
        rows = session.execute(
            select(Digest.status, func.count()).where(Digest.id > since_id).group_by(Digest.status)
        ).all()
    return Counter({status.value: n for status, n in rows})


def all_digests(settings: Settings, since_id: int = 0) -> list[Digest]:
    with db.session_scope(settings) as session:
        return list(session.scalars(select(Digest).where(Digest.id > since_id).order_by(Digest.id)))


def settled(settings: Settings, expected: int, since_id: int = 0) -> bool:
    counts = status_counts(settings, since_id)
    return sum(counts.values()) == expected and not any(counts[s.value] for s in OPEN)


def describe(settings: Settings, *processes: object, since_id: int = 0) -> str:
    lines = [f"digests by status: {dict(status_counts(settings, since_id))}"]
    lines += [p.tail(30) for p in processes if hasattr(p, "tail")]  # type: ignore[attr-defined]
    return "\n".join(lines)


def wait_settled(
    settings: Settings,
    expected: int,
    *processes: object,
    since_id: int = 0,
    timeout: float = 60,
    what: str = "",
) -> None:
    wait_until(
        lambda: settled(settings, expected, since_id),
        timeout,
        what or f"{expected} digests to settle",
        interval=0.05,
        details=lambda: describe(settings, *processes, since_id=since_id),
    )


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def apps() -> Iterator[list[Celery]]:
    """Celery apps built in the test process to enqueue tasks; closed at the end."""
    made: list[Celery] = []
    yield made
    for app in made:
        app.close()


def service_settings(
    db_url: str, tmp_path: Path, redis: RedisServer, smtp_url: str, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "broker_url": redis.url,
        "smtp_url": smtp_url,
        "lease_seconds": 10,
        "batch_size": 10,
    }
    values.update(overrides)
    return make_settings(db_url, tmp_path, **values)


def client_app(settings: Settings, apps: list[Celery]) -> Celery:
    app = create_app(settings)
    apps.append(app)
    return app


def iso(moment: datetime) -> str:
    return moment.isoformat()


def owner_pid(owner: str | None) -> int | None:
    """The pid in a lease owner (``host:pid:batch``, see ``digest.pipeline.send_batch``)."""
    return int(owner.split(":")[1]) if owner else None


def real_time_subscribers(n: int, prefix: str, topics: tuple[str, ...]) -> list[SubSpec]:
    """Subscribers whose digest for the current real period is due now and stays due.

    The send hour is the previous UTC hour, so the period cannot roll over while the
    test runs (that happens only 23 hours later).
    """
    hour = (utcnow().hour - 1) % 24
    return [SubSpec(f"{prefix}{i:03d}@example.org", "UTC", hour, topics) for i in range(n)]


def recent_papers(now: datetime) -> list[PaperSpec]:
    return [PaperSpec(i, now - timedelta(minutes=30), upvotes=i + 1) for i in range(len(SEED))]


@dataclass
class Rig:
    """The services one worker test runs against: Redis, the Celery worker factory, the
    SMTP server, and the client apps it enqueues with (closed by the ``apps`` fixture)."""

    tmp_path: Path
    redis: RedisServer
    workers: WorkerFactory
    mailbox: Mailbox
    apps: list[Celery]

    def settings(self, db_url: str, **overrides: object) -> Settings:
        return service_settings(db_url, self.tmp_path, self.redis, self.mailbox.url, **overrides)

    def start(self, settings: Settings) -> tuple[CeleryWorker, Celery]:
        """A real worker on ``settings`` and a client app to send it tasks."""
        return self.workers(settings), client_app(settings, self.apps)


@pytest.fixture
def rig(
    tmp_path: Path,
    redis_server: RedisServer,
    celery_worker_factory: WorkerFactory,
    mailbox: Mailbox,
    apps: list[Celery],
) -> Rig:
    return Rig(tmp_path, redis_server, celery_worker_factory, mailbox, apps)


def add_world(settings: Settings, papers: Sequence[PaperSpec], subs: Sequence[SubSpec]) -> None:
    add_papers(settings, papers)
    add_subscribers(settings, subs)


def plan_at(worker: CeleryWorker, app: Celery, at: datetime) -> None:
    """Plan the digests due at ``at`` and wait until the worker has done it."""
    worker.wait_task(app.send_task("digest.plan", args=[iso(at)]).id)


def papers_seen_at(moment: datetime) -> list[PaperSpec]:
    """Every seed paper, all first seen at ``moment``, none upvoted."""
    return [PaperSpec(i, moment) for i in range(len(SEED))]


def max_digest_id(settings: Settings) -> int:
    with db.session_scope(settings) as session:
        return int(session.scalar(select(func.coalesce(func.max(Digest.id), 0))) or 0)


def assert_one_mail_each(
    mails: Sequence[Mail], subs: Sequence[SubSpec], rows: Sequence[Digest]
) -> dict[str, Mail]:
    """Exactly one message per subscriber, carrying its digest's Message-ID."""
    grouped = by_recipient(mails)
    emails = {s.email.lower() for s in subs}
    assert set(grouped) == emails, (
        f"missing: {sorted(emails - set(grouped))[:5]}, unexpected: {sorted(set(grouped) - emails)[:5]}"
    )
    extra = {r: len(m) for r, m in grouped.items() if len(m) != 1}
    assert not extra, f"recipients with more than one message: {extra}"
    message_ids = {s.email.lower(): None for s in subs} | {
        r.subscriber.email.lower(): r.message_id for r in rows if r.subscriber is not None
    }
    wrong = {r: (m[0].message_id, message_ids[r]) for r, m in grouped.items()
             if m[0].message_id != message_ids[r]}  # fmt: skip
    assert not wrong, f"Message-ID differs from the ledger's: {wrong}"
    return {r: m[0] for r, m in grouped.items()}


def digests_with_subscribers(settings: Settings, since_id: int = 0) -> list[Digest]:
    from sqlalchemy.orm import selectinload

    with db.session_scope(settings) as session:
        return list(
            session.scalars(
                select(Digest)
                .where(Digest.id > since_id)
                .options(selectinload(Digest.subscriber))
                .order_by(Digest.id)
            )
        )


def drive(app: Celery, task: str, every: float, until, timeout: float, what: str, details=None):  # type: ignore[no-untyped-def]
    """Send ``task`` every ``every`` seconds (a stand-in for beat) until ``until()`` holds."""
    last = 0.0

    def tick() -> bool:
        nonlocal last
        if until():
            return True
        if time.monotonic() - last >= every:
            app.send_task(task)
            last = time.monotonic()
        return False

    wait_until(tick, timeout, what, interval=0.1, details=details)


# --- 1. a full day ------------------------------------------------------------------------

DAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday; no zone below changes its clocks today
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
HOURS = (0, 5, 6, 7, 8, 9, 12, 13, 17, 18, 21, 23)
TOPIC_SETS: tuple[tuple[str, ...], ...] = (
    ("machine unlearning",),
    ("diffusion", "reasoning"),
    (),  # trending
    ("agent",),
    ("privacy", "backdoor"),
    ("survey",),
    ("benchmark", "robustness"),
)
LATE = DAY + timedelta(hours=11, minutes=30)


def day_papers() -> list[PaperSpec]:
    """Old papers (long shown, and the most upvoted), papers first seen through the last
    day (some of them shown yesterday to readers whose digest was built late), and papers
    arriving in the middle of the simulated day."""
    arrivals = [
        DAY - timedelta(days=3),
        LATE,
        DAY - timedelta(hours=20),
        DAY - timedelta(hours=8),
        DAY - timedelta(hours=3),
        DAY - timedelta(minutes=30),
    ]
    papers = []
    for i in range(len(SEED)):
        seen = arrivals[i % len(arrivals)]
        if seen < DAY - timedelta(days=1):
            votes: int | None = 500 + i
        elif seen == LATE:
            votes = 100 + i if i % 2 else None
        else:
            votes = 10 + i if i % 3 == 0 else None
        papers.append(PaperSpec(i, seen, votes))
    return papers


def test_full_day_300_subscribers_five_time_zones(pg_url: str, rig: Rig) -> None:
    settings = rig.settings(pg_url)
    papers = day_papers()
    subs = [
        SubSpec(
            f"reader{i:03d}@example.org",
            ZONES[i % len(ZONES)],
            HOURS[(i // len(ZONES)) % len(HOURS)],
            TOPIC_SETS[i % len(TOPIC_SETS)],
            max_papers=50 if TOPIC_SETS[i % len(TOPIC_SETS)] else 5,
            last_late=timedelta(hours=(0, 2, 5)[i % 3]),
        )
        for i in range(300)
    ]
    add_world(settings, papers, subs)
    add_history(settings, subs, DAY)
    history = max_digest_id(settings)

    due = {s.email: current_period(DAY + timedelta(hours=23), s.timezone, "daily", s.send_hour)
           for s in subs}  # fmt: skip
    assert all(DAY <= p.due_at < DAY + timedelta(days=1) for p in due.values())
    # What each reader should get: papers first seen since their last digest was built
    # up to their due moment today, matched by the oracle; nothing matched: skipped.
    expected = {
        s.email: expected_papers(
            s, (p for p in papers if s.last_window_end < p.first_seen_at <= due[s.email].due_at)
        )
        for s in subs
    }
    late = {p.seed for p in papers if p.first_seen_at == LATE}
    gets_late = [e for e, ps in expected.items() if late & {p.seed for p in ps}]
    assert gets_late and len(gets_late) < len(subs), "test data: late papers split the readers"
    quiet = {e for e, ps in expected.items() if not ps}
    assert len(quiet) < len(subs) // 4, "test data: most readers get something"
    # Readers whose digest was late yesterday already saw some papers of the last 24 h.
    seen_late = [
        s for s in subs
        if any(due[s.email].due_at - timedelta(days=1) < p.first_seen_at <= s.last_window_end
               and p in expected_papers(s, papers) for p in papers)
    ]  # fmt: skip
    assert seen_late, "test data: some papers of the last day were shown yesterday"

    worker, app = rig.start(settings)
    for hour in range(24):
        at = DAY + timedelta(hours=hour)
        plan_at(worker, app, at)
        n_due = sum(1 for p in due.values() if p.due_at <= at)
        wait_settled(settings, n_due, worker, since_id=history, what=f"the digests due by {at}")

    rows = digests_with_subscribers(settings, since_id=history)
    assert len(rows) == len(subs)
    assert Counter(r.subscriber_id for r in rows) == Counter({s.id: 1 for s in subs})
    by_email = {r.subscriber.email: r for r in rows}
    statuses = {e: r.status for e, r in by_email.items()}
    assert statuses == {
        s.email: DigestStatus.SKIPPED if s.email in quiet else DigestStatus.SENT for s in subs
    }, Counter(statuses.values())
    for s in subs:
        assert by_email[s.email].period == due[s.email].label

    readers = [s for s in subs if s.email not in quiet]
    delivered = assert_one_mail_each(rig.mailbox.mails(), readers, rows)
    ids = {p.seed: p for p in papers}
    seed_of = _seed_by_paper_id(settings)
    for s in readers:
        row = by_email[s.email]
        got = sorted(seed_of[i] for i in row.paper_ids)
        assert got == sorted(p.seed for p in expected[s.email]), (
            f"{s.email} ({s.timezone} {s.send_hour}:00, topics {s.topics}): ledger has "
            f"{[ids[g].title for g in got]}"
        )
        assert_right_papers(delivered[s.email], expected[s.email], papers)


def _seed_by_paper_id(settings: Settings) -> dict[int, int]:
    index = {d["title"]: i for i, d in enumerate(SEED)}
    with db.session_scope(settings) as session:
        return {pid: index[title] for pid, title in session.execute(select(Paper.id, Paper.title))}


# --- 2. kill -9 in the middle of a send batch ----------------------------------------------


def sending_owners(settings: Settings) -> dict[int, int | None]:
    """digest id -> pid of the process holding its lease, for rows being sent."""
    with db.session_scope(settings) as session:
        rows = session.execute(
            select(Digest.id, Digest.lease_owner).where(Digest.status == DigestStatus.SENDING)
        ).all()
    return {i: owner_pid(o) for i, o in rows}


def test_kill9_mid_batch_loses_nothing_and_duplicates_only_in_flight(pg_url: str, rig: Rig) -> None:
    # Outcomes are committed in groups of 3 (batches are 10): a killed sender may
    # resend the group it had not committed, never more.
    settings = rig.settings(pg_url, commit_every=3)
    subs = real_time_subscribers(60, "kill", ("agent",))
    add_world(settings, recent_papers(utcnow()), subs)
    rig.mailbox.set_delay(0.25)  # a batch of 10 takes a few seconds: kills land mid-batch

    worker, app = rig.start(settings)
    app.send_task("digest.plan")

    def mid_batch(pids: Iterable[int]) -> bool:
        owners = set(sending_owners(settings).values())
        return bool(status_counts(settings)["sent"]) and bool(owners & set(pids))

    details = lambda: describe(settings, worker)  # noqa: E731
    first = worker.children()
    wait_until(lambda: mid_batch(first), 30, "the pool to be mid-batch", details=details)
    killed = set(worker.kill9_children())
    # The main process forks fresh children, which take the next batches off the queue.
    wait_until(
        lambda: mid_batch(set(worker.children()) - killed),
        30,
        "the replacement pool children to be mid-batch",
        details=details,
    )
    killed |= set(worker.kill9())
    in_flight = sending_owners(settings)
    sending_processes = set(in_flight.values())
    assert sending_processes <= killed, "only killed processes hold leases now"
    assert len(sending_processes) >= 2, "the kills fell in the middle of sends"
    before_restart = status_counts(settings)
    assert before_restart["sent"] < len(subs)

    restarted = rig.workers(settings)
    # Leases last 10 s; sweeps hand the killed processes' rows to the new worker.
    drive(
        app,
        "digest.sweep",
        every=1.0,
        until=lambda: settled(settings, len(subs)),
        timeout=90,
        what="every digest to settle after the kill",
        details=lambda: describe(settings, restarted),
    )
    rows = digests_with_subscribers(settings)
    assert {r.status for r in rows} == {DigestStatus.SENT}, Counter(r.status for r in rows)

    grouped = by_recipient(rig.mailbox.mails())
    assert set(grouped) == {s.email for s in subs}, "every subscriber got their digest"
    by_email = {r.subscriber.email: r for r in rows}
    duplicates: Counter[int | None] = Counter()
    for email, mails in grouped.items():
        row = by_email[email]
        assert {m.message_id for m in mails} == {row.message_id}, (
            f"{email}: a resend must carry the digest's one Message-ID"
        )
        if len(mails) > 1:
            assert row.id in in_flight, f"{email} got {len(mails)} copies but was not in flight"
            duplicates[in_flight[row.id]] += len(mails) - 1
    # At most one group of outcomes is between the server's 250s and our commit per
    # killed sender.
    assert all(n <= settings.commit_every for n in duplicates.values()), duplicates
    assert sum(duplicates.values()) <= settings.commit_every * len(sending_processes)
    print(
        f"killed {len(killed)} processes, {len(sending_processes)} mid-send, "
        f"{len(in_flight)} digests under a dead lease, {sum(duplicates.values())} duplicates"
    )


# --- 3. lost broker messages: FLUSHALL, then Redis down ---------------------------------


def test_lost_messages_and_redis_outage_delay_but_never_drop(
    pg_url: str, rig: Rig, celery_beat_factory: BeatFactory
) -> None:
    settings = rig.settings(pg_url)
    subs = real_time_subscribers(60, "flush", ("machine unlearning",))
    add_world(settings, recent_papers(utcnow()), subs)
    rig.mailbox.set_delay(0.1)

    worker, app = rig.start(settings)
    app.send_task("digest.plan")
    wait_until(
        lambda: status_counts(settings)["sent"] and rig.redis.queue_length("send"),
        30,
        "sends under way with batches still queued",
        details=lambda: describe(settings, worker),
    )
    rig.redis.flush()  # the queued wake-ups are gone
    assert rig.redis.queue_length("send") == 0
    wait_until(lambda: not status_counts(settings)["sending"], 30, "the running batches to finish")
    lost = status_counts(settings)["planned"]
    assert lost, "some digests lost their wake-up"
    # The sweeper (a real beat: sweep every 2 s) finds them once they waited a lease.
    beat = celery_beat_factory(settings)
    wait_settled(settings, len(subs), worker, beat, timeout=60, what="the sweeper to finish")
    assert_one_mail_each(rig.mailbox.mails(), subs, digests_with_subscribers(settings))

    # Redis down entirely: planning goes on in the database.
    connects = worker.connects()
    first_day = max_digest_id(settings)
    late = real_time_subscribers(20, "outage", ("agent",))
    rig.redis.stop()
    add_subscribers(settings, late)
    planned = pipeline.plan(settings, utcnow())
    assert len(planned) == len(late)
    time.sleep(2)  # nothing can send them while the broker is gone
    assert status_counts(settings, first_day) == Counter({"planned": len(late)})
    rig.redis.start()  # same port, empty: nothing survived
    wait_settled(
        settings,
        len(late),
        worker,
        beat,
        since_id=first_day,
        timeout=90,
        what="the planned digests to go out once Redis is back",
    )
    assert worker.alive(), "the worker survived the outage"
    assert beat.alive(), "beat survived the outage"
    assert worker.connects() > connects, "the worker reconnected to Redis by itself"
    assert_one_mail_each(
        [m for m in rig.mailbox.mails() if m.rcpt.startswith("outage")],
        late,
        digests_with_subscribers(settings, first_day),
    )
    assert len(rig.mailbox.mails()) == len(subs) + len(late)


# --- 4. SMTP trouble: 421 for a minute, 550 for one address ---------------------------------

T = DAY + timedelta(hours=8)


def step_settled(settings: Settings, at: datetime) -> bool:
    """Nothing is planned or being sent, and no retry is due at ``at``."""
    with db.session_scope(settings) as session:
        busy = session.scalar(
            select(func.count())
            .select_from(Digest)
            .where(
                (Digest.status.in_([DigestStatus.PLANNED, DigestStatus.SENDING]))
                | ((Digest.status == DigestStatus.RETRY) & (Digest.retry_at <= at))
            )
        )
    return busy == 0


def next_retry(settings: Settings) -> datetime | None:
    with db.session_scope(settings) as session:
        return session.scalar(
            select(func.min(Digest.retry_at)).where(Digest.status == DigestStatus.RETRY)
        )


def test_smtp_421_for_a_minute_then_each_delivered_once(pg_url: str, rig: Rig) -> None:
    settings = rig.settings(pg_url)
    subs = [SubSpec(f"patient{i:02d}@example.org", topics=("agent",)) for i in range(20)]
    add_world(settings, papers_seen_at(T - timedelta(hours=1)), subs)
    rig.mailbox.fail_all(421)
    worker, app = rig.start(settings)

    plan_at(worker, app, T)
    wait_until(lambda: step_settled(settings, T), 30, "the first attempts", details=lambda: describe(settings, worker))  # fmt: skip
    rows = all_digests(settings)
    assert len(rows) == len(subs)
    assert all(r.status is DigestStatus.RETRY and r.retry_at and r.retry_at > T for r in rows), [
        (r.status, r.retry_at) for r in rows
    ]
    # The server's own words are kept (a 421 to MAIL FROM is reported as the server
    # closing the connection, so the row has the text rather than the code).
    assert any("try again later" in (r.error or "") for r in rows), [r.error for r in rows]
    assert rig.mailbox.mails() == []

    # Step the simulated clock from one due retry to the next; the server recovers a
    # minute after it started refusing.
    clock, recovered, steps = T, False, 0
    while not settled(settings, len(subs)):
        steps += 1
        assert steps <= 60, f"still not delivered at {clock}: {dict(status_counts(settings))}"
        due = next_retry(settings)
        assert due is not None
        clock = max(clock + timedelta(seconds=30), due)
        if not recovered and clock >= T + timedelta(minutes=1):
            rig.mailbox.fail_all(None)
            recovered = True
        worker.wait_task(app.send_task("digest.sweep", args=[iso(clock)]).id)
        wait_until(
            lambda: step_settled(settings, clock),  # noqa: B023
            30,
            f"the retries due at {clock}",
            details=lambda: describe(settings, worker),
        )
    rows = digests_with_subscribers(settings)
    assert {r.status for r in rows} == {DigestStatus.SENT}
    assert all(r.attempts >= 1 and r.sent_at for r in rows)
    print(
        f"delivered after {steps} sweeps, by {clock - T}; attempts {Counter(r.attempts for r in rows)}"
    )
    assert_one_mail_each(rig.mailbox.mails(), subs, rows)


def test_smtp_550_for_one_address_suppresses_it_and_delivers_the_rest(
    pg_url: str, rig: Rig
) -> None:
    settings = rig.settings(pg_url)
    subs = [SubSpec(f"reader{i:02d}@example.org", topics=("safety",)) for i in range(11)]
    subs[4].email = "Gone.Away@example.org"
    papers = [
        PaperSpec(i, T - timedelta(hours=1) if i % 2 else T + timedelta(hours=12))
        for i in range(len(SEED))
    ]
    add_world(settings, papers, subs)
    rig.mailbox.fail_for("gone.away@example.org", 550)
    worker, app = rig.start(settings)

    plan_at(worker, app, T)
    wait_settled(settings, len(subs), worker)
    rows = digests_with_subscribers(settings)
    bounced = next(r for r in rows if r.subscriber.email == "Gone.Away@example.org")
    assert bounced.status is DigestStatus.FAILED and bounced.smtp_code == 550
    assert {r.status for r in rows if r is not bounced} == {DigestStatus.SENT}
    with db.session_scope(settings) as session:
        suppressed = session.scalars(select(Suppression.email_key)).all()
        status = session.scalar(
            select(Subscriber.status).where(Subscriber.id == bounced.subscriber_id)
        )
    assert suppressed == ["gone.away@example.org"]
    assert status is SubscriberStatus.BOUNCED
    others = [s for s in subs if s is not subs[4]]
    assert_one_mail_each(rig.mailbox.mails(), others, rows)

    # The next day the bounced reader is not planned at all; the others get new papers.
    first = max_digest_id(settings)
    plan_at(worker, app, T + timedelta(days=1))
    wait_settled(settings, len(others), worker, since_id=first)
    assert {r.status for r in all_digests(settings, first)} == {DigestStatus.SENT}
    counts = Counter(m.rcpt for m in rig.mailbox.mails())
    assert counts == Counter({s.email.lower(): 2 for s in others})


# --- 5. no second digest: plan twice, two beats at once ----------------------------------


def test_plan_twice_and_two_beats_never_make_a_second_digest(
    pg_url: str, rig: Rig, celery_beat_factory: BeatFactory
) -> None:
    settings = rig.settings(pg_url)
    subs = real_time_subscribers(30, "twice", ("reasoning",))
    add_world(settings, recent_papers(utcnow()), subs)
    worker, app = rig.start(settings)

    first, second = app.send_task("digest.plan"), app.send_task("digest.plan")
    worker.wait_task(first.id)
    worker.wait_task(second.id)
    beats = [celery_beat_factory(settings) for _ in range(2)]
    wait_until(
        lambda: all(b.sent("plan") >= 8 and b.sent("sweep") >= 4 for b in beats),
        60,
        "two beats planning and sweeping side by side",
        details=lambda: "\n".join(b.tail(10) for b in beats),
    )
    for b in beats:
        b.stop()
    wait_until(
        lambda: rig.redis.queue_length("send") == 0 and worker.idle(),
        30,
        "the worker to drain its queue",
        details=worker.tail,
    )
    assert pipeline.plan(settings, utcnow()) == []
    rows = digests_with_subscribers(settings)
    assert len(rows) == len(subs)
    assert {r.status for r in rows} == {DigestStatus.SENT}
    assert_one_mail_each(rig.mailbox.mails(), subs, rows)
    assert worker.log_text().count("Task digest.plan[") >= 2 * (2 + 16)  # received + succeeded


# --- 6. the embedded default under a real worker ------------------------------------------


def test_worker_on_sqlite_delivers(sqlite_template: Path, tmp_path: Path, rig: Rig) -> None:
    path = tmp_path / "digest.db"
    shutil.copy(sqlite_template, path)
    settings = rig.settings(f"sqlite:///{path}", batch_size=2)
    subs = [
        SubSpec(f"local{i}@example.org", topics=topics, max_papers=20 if topics else 5)
        for i, topics in enumerate([("diffusion",), ("agent",), ()] * 2)
    ]
    papers = [PaperSpec(i, T - timedelta(hours=1), upvotes=i if i % 4 == 0 else None) for i in range(len(SEED))]  # fmt: skip
    add_world(settings, papers, subs)
    worker, app = rig.start(settings)
    # `digest run --at` with a broker: the run task plans and answers with the scope of
    # the digests it covers (through the result backend), then the batches go out.
    scope = app.send_task("digest.run", args=[iso(T), False]).get(timeout=30)
    wait_settled(settings, len(subs), worker)
    rows = digests_with_subscribers(settings)
    assert scope["count"] == len(rows)
    assert (scope["first"], scope["last"]) == (min(r.id for r in rows), max(r.id for r in rows))
    assert sorted(scope["periods"]) == sorted({r.period for r in rows})
    assert {r.status for r in rows} == {DigestStatus.SENT}
    delivered = assert_one_mail_each(rig.mailbox.mails(), subs, rows)
    for s in subs:
        assert_right_papers(delivered[s.email], expected_papers(s, papers), papers)


# --- 7. one digest that cannot be built does not hold up its batch -------------------------


def test_a_digest_that_cannot_be_built_fails_alone(pg_url: str, rig: Rig) -> None:
    settings = rig.settings(pg_url)
    subs = [SubSpec(f"batch{i}@example.org", topics=("agent",)) for i in range(10)]
    # email-validator (and so `digest subscribers add`) accepts an internationalised
    # local part; our messages cannot carry it without SMTPUTF8.
    subs[2].email = "jürgen@example.org"
    add_world(settings, papers_seen_at(T - timedelta(hours=1)), subs)
    worker, app = rig.start(settings)
    plan_at(worker, app, T)
    wait_settled(settings, len(subs), worker, what="the batch with one unbuildable digest")
    rows = digests_with_subscribers(settings)
    broken = next(r for r in rows if r.subscriber.email == "jürgen@example.org")
    assert broken.status is DigestStatus.FAILED
    assert "jürgen@example.org" in (broken.error or ""), broken.error
    assert {r.status for r in rows if r is not broken} == {DigestStatus.SENT}
    assert_one_mail_each(rig.mailbox.mails(), [s for s in subs if s is not subs[2]], rows)
