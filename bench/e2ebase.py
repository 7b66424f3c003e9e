"""The two references of bench/e2e.py, each run in ``connections`` processes.

- :func:`limit`: one real digest of ours, pre-built, blasted with smtplib over as
  many connections as the workers have processes: the most the sink and the wire
  take on this machine.
- :func:`baseline`: the usual approach, carefully done: a task per email (its own
  session, its reader loaded, its topics matched against the day's index built once
  per process), MJML compiled for every email, `email.message.EmailMessage` for the
  MIME, smtplib over one reused connection per process. No Celery: a task costs
  another ~1 ms there (NOTES.md), so the baseline here is, if anything, flattered.
  With ``mjml_each=False`` the same but MJML compiled once per process: the
  "careful" baseline, since compiling MJML (~100 ms) otherwise dwarfs the rest.
"""

from __future__ import annotations

import multiprocessing
import smtplib
import sys
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from digest import match as matching
from digest import render
from digest.config import Settings
from digest.core.schedule import zone
from digest.deliver.message import make_message_id
from digest.pipeline.compose import topic_specs
from digest.store import db
from digest.store.models import Paper, Subscriber
from digest.subscriptions.tokens import manage_url, unsubscribe_url

SENDER = "digest@digest.example.org"


def _blast(ready: Barrier, port: int, data: bytes, first: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        ready.wait()  # every connection open before the first message
        for i in range(first, first + count):
            smtp.sendmail(SENDER, [f"limit{i}@limit.example.org"], data)


def _parallel(target, jobs: list[tuple[object, ...]]) -> float:  # type: ignore[no-untyped-def]
    context = multiprocessing.get_context("spawn")
    # Started processes import and set up at their own pace; they send together.
    ready = context.Barrier(len(jobs))
    procs = [context.Process(target=target, args=(ready, *job)) for job in jobs]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a sender process exited with {p.exitcode}")
    return time.perf_counter() - started


def limit(port: int, data: bytes, messages: int, connections: int) -> float:
    """Seconds to send ``messages`` copies of ``data`` over ``connections`` processes."""
    share = messages // connections
    return _parallel(_blast, [(port, data, k * share, share) for k in range(connections)])


def settings_for(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        base_url="https://digest.example.org",
        from_addr=f"Paper Digest <{SENDER}>",
        postal_address="1 Example Street, Testville",
        secret_key="bench-e2e-secret-key-0123456789",
    )


def _one_email(
    settings: Settings, session, index, papers, subscriber_id, at, smtp, mjml_each
) -> None:  # type: ignore[no-untyped-def]
    subscriber = session.get(Subscriber, subscriber_id)
    matched = matching.match_subscriber(index, topic_specs(subscriber), subscriber.max_papers)
    if not matched:
        return
    if mjml_each:
        render.compiled_templates.cache_clear()  # MJML compiled for this email
    rendered = render.render_digest(
        render.DigestContext(
            settings=settings,
            email=subscriber.email,
            timezone=subscriber.timezone,
            date=at.astimezone(zone(subscriber.timezone)).date(),
            papers=matched,
            topic_labels=[t.label for t in subscriber.topics],
            manage_url=manage_url(settings, subscriber, session=session, now=at),
            unsubscribe_url=unsubscribe_url(settings, subscriber, session=session, now=at),
            papers_arrived=len(papers),
        )
    )
    msg = EmailMessage()
    msg["From"] = settings.from_addr
    msg["To"] = subscriber.email
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_message_id(subscriber_id, settings.from_domain)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url(settings, subscriber, session=session)}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    smtp.sendmail(SENDER, [subscriber.email], msg.as_bytes())
    session.commit()


def _baseline_worker(
    ready: Barrier, database_url: str, port: int, ids: list[int], at: datetime, mjml_each: bool
) -> None:
    settings = settings_for(database_url)
    factory = db.session_factory(settings)
    with factory() as session:
        papers = list(
            session.scalars(
                select(Paper).where(
                    Paper.first_seen_at > at - timedelta(days=2), Paper.first_seen_at <= at
                )
            )
        )
        session.expunge_all()
    index = matching.build_index(papers)
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        ready.wait()
        for subscriber_id in ids:
            with factory() as session:  # a task per email
                _one_email(settings, session, index, papers, subscriber_id, at, smtp, mjml_each)


def baseline(
    database_url: str,
    port: int,
    ids: list[int],
    at: datetime,
    connections: int,
    mjml_each: bool = True,
) -> float:
    """Seconds for the usual approach to send the digests of ``ids``."""
    shares = [ids[k::connections] for k in range(connections)]
    jobs = [(database_url, port, s, at, mjml_each) for s in shares]
    return _parallel(_baseline_worker, jobs)
