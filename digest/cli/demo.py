"""`digest demo`: the whole product on one laptop, with no network and no servers.

Loads the bundled sample feeds (in the real arXiv RSS, arXiv API and Hugging Face
formats), adds three readers in three time zones, then runs the clock forward
through the next 24 hours, hour by hour, exactly as cron or Celery beat would:
each reader's digest goes out at their own local send hour, into the outbox
folder as .eml files with .html previews.

The sample papers' titles and abstracts are real (a capture of Hugging Face Daily
Papers), but their arXiv ids, authors and dates are invented, so a link to
``arxiv.org/abs/<id>`` would open somebody else's paper. The demo therefore points
each paper's Read link at an arXiv search for its real title, and drops the PDF
and Hugging Face links, which could only be made from the invented id.

Running it again in the same folder starts a fresh demo: the folder is marked as a
demo's, and only a marked folder is ever cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest import ingest, pipeline
from digest.config import Settings
from digest.core import caches
from digest.core.clock import utcnow
from digest.core.schedule import zone
from digest.deliver.outbox import outbox_paths
from digest.store import db
from digest.store.models import Digest, Feed, FeedKind, Paper, Subscriber
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


#: Written into a demo's folder: only a folder with it is ever cleared by a new demo.
MARKER = ".digest-demo"


def run_demo(directory: Path, base: Settings, now: datetime | None = None) -> list[DemoDelivery]:
    """Run a fresh demo in ``directory`` (a previous demo there is cleared first)."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(directory, base)
    clear_previous(directory, settings)
    start = now or utcnow()
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:
        if session.scalar(select(Subscriber.id).limit(1)) is not None:
            raise FileExistsError(
                f"{directory} holds a digest database that is not a demo's: pass --dir "
                "to another folder"
            )
        (directory / MARKER).write_text("made by `digest demo`; it clears this folder\n")
        for url, kind, filename in SAMPLE_FEEDS:
            name = ingest.default_feed_name(url, kind)
            feed = Feed(
                url=url,
                kind=kind,
                name=name,
                source=ingest.new_source_tag(session, kind, name, url),
            )
            session.add(feed)
            session.flush()
            body = resources.files("digest.cli.sample_data").joinpath(filename).read_bytes()
            ingest.ingest_body(session, feed, body, start)
        sample_links(session)
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


def sample_links(session: Session) -> None:
    """Read links that find each sample paper's real title, not an invented arXiv id."""
    rows = session.execute(select(Paper.id, Paper.title)).all()
    session.execute(
        update(Paper),
        [
            {
                "id": paper_id,
                "url": "https://arxiv.org/search/?"
                + urlencode({"query": title, "searchtype": "title"}),
                "pdf_url": None,
                "hf_url": None,
            }
            for paper_id, title in rows
        ],
    )


def clear_previous(directory: Path, settings: Settings) -> bool:
    """Remove a previous demo's database and emails from ``directory``; True if there was one.

    Only a folder a demo marked is touched, and in it only what a demo writes.
    """
    if not (directory / MARKER).is_file():
        return False
    db.dispose_engines()  # no pooled connection may outlive the file it points at
    caches.clear_all()  # nor the memory that the schema there was at head
    for name in ("digest.db", "digest.db-wal", "digest.db-shm"):
        (directory / name).unlink(missing_ok=True)
    outbox = settings.outbox
    if outbox.is_dir():
        for path in outbox.iterdir():
            if path.suffix in (".eml", ".html") and path.is_file():
                path.unlink()
    return True


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
