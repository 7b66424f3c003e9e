"""`digest demo`: the whole product on one laptop, with no network and no servers.

Loads the bundled sample feeds (real papers, in the real arXiv RSS and Hugging
Face formats), adds three readers in three time zones, then runs the clock
forward through the next 24 hours, hour by hour, exactly as cron or Celery beat
would: each reader's digest goes out at their own local send hour, into the
outbox folder as .eml files with .html previews.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from sqlalchemy import select

from digest import ingest, pipeline
from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.schedule import zone
from digest.deliver.outbox import outbox_paths
from digest.store import db
from digest.store.models import Digest, Feed, FeedKind, Subscriber
from digest.subscriptions.lifecycle import add_subscriber

# The API query first: it holds earlier versions that the RSS listing then replaces.
SAMPLE_FEEDS = (
    (
        "https://export.arxiv.org/api/query?search_query=abs:safety+AND+cat:cs.LG"
        "&sortBy=submittedDate&sortOrder=descending&max_results=50",
        FeedKind.ARXIV_API,
        "arxiv_api.xml",
    ),
    ("https://rss.arxiv.org/rss/cs.AI+cs.LG+cs.CL+cs.CR", FeedKind.ARXIV_RSS, "arxiv_rss_cs.xml"),
    ("https://huggingface.co/api/daily_papers", FeedKind.HF_DAILY, "hf_daily.json"),
)

READERS: tuple[tuple[str, str, list[str]], ...] = (
    ("ada@example.org", "Europe/London", ["machine unlearning", "jailbreak OR guardrails"]),
    ("grace@example.org", "America/New_York", ['"fine-tuning" safety', "title:autonomous driving"]),
    ("alan@example.org", "Asia/Tokyo", []),  # no topics: trending papers
)


@dataclass
class DemoDelivery:
    email: str
    timezone: str
    topics: list[str]
    status: str
    papers: int
    due_local: datetime | None  # when it went out, on the reader's clock
    eml: Path | None
    html: Path | None


def demo_settings(directory: Path, base: Settings) -> Settings:
    directory = directory.resolve()
    return replace(
        base,
        database_url=f"sqlite:///{directory / 'digest.db'}",
        broker_url="",
        smtp_url="",
        outbox=directory / "outbox",
    )


def run_demo(directory: Path, base: Settings, now: datetime | None = None) -> list[DemoDelivery]:
    directory.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(directory, base)
    start = now or utcnow()
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:
        if session.scalar(select(Subscriber.id).limit(1)) is not None:
            raise FileExistsError(
                f"{directory} already holds a demo: remove it or pass --dir to another folder"
            )
        for url, kind, filename in SAMPLE_FEEDS:
            feed = Feed(url=url, kind=kind, name=ingest.default_feed_name(url, kind))
            session.add(feed)
            session.flush()
            body = resources.files("digest.cli.sample_data").joinpath(filename).read_bytes()
            ingest.ingest_body(session, feed, body, start)
        for email, tz, topics in READERS:
            add_subscriber(
                session,
                email,
                topics=topics,
                confirmed=True,
                timezone=tz,
                hour=7,
                consent_source="cli",
                consent_detail="digest demo",
                now=start,
            )
    for hour in range(1, 25):
        pipeline.run_once(settings, start + timedelta(hours=hour), fetch=False)
    return _deliveries(settings)


def _deliveries(settings: Settings) -> list[DemoDelivery]:
    deliveries = []
    with db.session_scope(settings) as session:
        for subscriber in session.scalars(select(Subscriber).order_by(Subscriber.id)):
            digest = session.scalar(
                select(Digest)
                .where(Digest.subscriber_id == subscriber.id)
                .order_by(Digest.id.desc())
            )
            eml = html = None
            if digest is not None and digest.message_id:
                eml, html = _outbox_files(settings.outbox, digest.message_id)
            deliveries.append(
                DemoDelivery(
                    email=subscriber.email,
                    timezone=subscriber.timezone,
                    topics=[t.query for t in subscriber.topics] or ["(trending)"],
                    status=digest.status.value if digest else "none",
                    papers=len(digest.paper_ids) if digest else 0,
                    due_local=digest.due_at.astimezone(zone(subscriber.timezone))
                    if digest
                    else None,
                    eml=eml,
                    html=html,
                )
            )
    return deliveries


def _outbox_files(outbox: Path, message_id: str) -> tuple[Path | None, Path | None]:
    eml, html = outbox_paths(outbox, message_id)
    return (eml if eml.exists() else None, html if html.exists() else None)
