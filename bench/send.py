"""Benchmark: our whole send path against the raw rate of the same SMTP sink.

Both run in the same process against the same local aiosmtpd sink (which only
counts what it receives), so the ratio means something on any machine:

- **raw**: smtplib over one reused connection sending prebuilt messages of the
  size our digests have — the ceiling for one sending process;
- **ours**: `digest.pipeline.send_batch` in batches of DIGEST_BATCH_SIZE: claim
  the rows, fix windows, index the day's papers, match every reader's topics,
  render, build, send over one connection, commit each outcome — on a SQLite
  file (or PostgreSQL with --postgres URL).

    .venv/bin/python bench/send.py                     # 1,000 readers, 300 papers
    .venv/bin/python bench/send.py --readers 3000 --postgres postgresql://postgres@127.0.0.1/test

Results are recorded in bench/README.md ("Send").
"""

from __future__ import annotations

import argparse
import json
import random
import smtplib
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from digest import pipeline
from digest.config import Settings
from digest.deliver.transport import Outcome, Transport
from digest.pipeline.ledger import LedgerBatch
from digest.pipeline.send import _load as load_digests
from digest.store import db
from digest.store.models import Paper, Subscriber, SubscriberStatus, Topic

SEED = Path(__file__).resolve().parent.parent / "tests" / "data" / "seed_papers.json"
TOPICS = [
    "machine unlearning",
    "jailbreak OR guardrails",
    '"fine-tuning" safety',
    "autonomous driving",
    "privacy",
    "fraud detection",
    "uncertainty",
    "diffusion models",
    "fairness",
    "reasoning models",
]
NOW = datetime(2026, 11, 29, 9, tzinfo=UTC)


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 2.0.0 Queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_database(settings: Settings, readers: int, papers: int) -> None:
    seed = json.loads(SEED.read_text())
    rng = random.Random(7)
    with db.session_scope(settings) as session:
        for i in range(papers):
            item = seed[i % len(seed)]
            seen = NOW - timedelta(hours=12) + timedelta(seconds=i)
            session.add(
                Paper(
                    key=f"arxiv:2511.{i:05d}",
                    arxiv_id=f"2511.{i:05d}",
                    title=item["title"],
                    abstract=item["abstract"],
                    authors=["Ada Lovelace", "Alan Turing", "Grace Hopper"],
                    categories=["cs.LG", "cs.CL"],
                    url=f"https://arxiv.org/abs/2511.{i:05d}",
                    pdf_url=f"https://arxiv.org/pdf/2511.{i:05d}",
                    upvotes=rng.randint(0, 60),
                    sources=["arxiv", "hf"],
                    first_seen_at=seen,
                    last_seen_at=seen,
                )
            )
        for r in range(readers):
            queries = rng.sample(TOPICS, 3)
            session.add(
                Subscriber(
                    email=f"reader{r}@example.org",
                    email_key=f"reader{r}@example.org",
                    status=SubscriberStatus.ACTIVE,
                    send_hour=7,
                    confirmed_at=NOW - timedelta(days=3),
                    topics=[Topic(label=q, query=q) for q in queries],
                )
            )


def ours(settings: Settings, ids: list[int]) -> tuple[float, int]:
    start = time.perf_counter()
    sent = 0
    for batch in pipeline.batches(ids, settings.batch_size):
        sent += pipeline.send_batch(settings, batch, NOW).by_status.get("sent", 0)
    return time.perf_counter() - start, sent


def sample_messages(settings: Settings, ids: list[int]) -> list[bytes]:
    """Real digests of this run, read back from what the sink would get (sizes match)."""

    class Capture(Transport):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[bytes] = []

        def _send(
            self, envelope_from: str, to: str, data: bytes, message_id: str, attempt: int
        ) -> Outcome:
            self.messages.append(data)
            return Outcome("sent")

    factory = db.session_factory(settings)
    with factory() as session:
        digests = load_digests(session, ids)
        batch = LedgerBatch(settings, session, digests, NOW)
        batch.match()
        capture = Capture()
        for digest in digests:
            batch.send_one(digest, capture)
        session.rollback()
    return capture.messages


def raw(port: int, messages: list[bytes], total: int) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(total):
            smtp.sendmail(
                "digest@example.org", [f"reader{i}@example.org"], messages[i % len(messages)]
            )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--postgres", help="admin URL of a PostgreSQL server to use instead of SQLite"
    )
    args = parser.parse_args()

    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    tmp = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    drop = None
    if args.postgres:
        name = f"digest_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.postgres.rsplit("/", 1)[0] + "/" + name
        drop = (admin, name)
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    try:
        db.upgrade(url)
        settings = Settings(
            database_url=url,
            smtp_url=f"smtp://127.0.0.1:{port}",
            batch_size=args.batch,
            secret_key="bench-secret-key-0123456789",
            base_url="https://digest.example.org",
            from_addr="Paper Digest <digest@example.org>",
        )
        seed_database(settings, args.readers, args.papers)
        ids = pipeline.plan(settings, NOW)
        messages = sample_messages(settings, ids[:50])  # rolled back: the rows stay planned
        raw_seconds = raw(port, messages, args.readers)
        ours_seconds, sent = ours(settings, ids)
        raw_rate = args.readers / raw_seconds
        our_rate = sent / ours_seconds
        size = sum(map(len, messages)) / len(messages) / 1024
        print(
            f"database: {'PostgreSQL' if args.postgres else 'SQLite'}; {args.readers} readers x 3 topics, "
            f"{args.papers} papers, batches of {args.batch}; messages ~{size:.0f} KB"
        )
        print(f"raw smtplib, one connection : {raw_rate:8.0f} msg/s")
        print(f"digest send_batch          : {our_rate:8.0f} msg/s ({sent} sent)")
        print(f"ratio ours / raw            : {our_rate / raw_rate:8.2f}")
    finally:
        controller.stop()
        db.engine_for(url).dispose()
        if drop:
            admin, name = drop
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
