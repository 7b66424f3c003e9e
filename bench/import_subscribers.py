"""Benchmark: `digest subscribers import` of 100,000 CSV rows on SQLite and PostgreSQL.

Generates a realistic file (mixed-case addresses, 0-5 topics per reader drawn from
the seed papers' vocabulary, phrases, fields, several time zones, 1% bad rows),
imports it with :func:`digest.subscriptions_io.import_csv` into a fresh database
of each kind, and compares with the naive way measured in the same run on a
sample: one :func:`digest.subscriptions.add_subscriber` per row (a duplicate
check query and a flush per row).

    .venv/bin/python bench/import_subscribers.py [--rows 100000] [--baseline-rows 2000]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--no-postgres]

Then the same database gets ``--update`` with a changed copy of the file (every
other row a new send hour, every fifth new topics), compared with the naive way on
the sample: one ``get_subscriber`` + ``change_subscriber`` per row.

Results are recorded in bench/README.md under "Subscriber import".
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest import subscriptions as subs  # noqa: E402
from digest import subscriptions as subs_io  # noqa: E402
from digest.config import Settings  # noqa: E402
from digest.match import query as query_language  # noqa: E402
from digest.store import db  # noqa: E402
from digest.store.models import Subscriber, Topic  # noqa: E402

ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Australia/Sydney",
]
STOP = set(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "we",
        "with",
        "which",
        "these",
        "their",
        "our",
        "can",
        "not",
        "such",
        "into",
        "more",
        "than",
        "while",
        "also",
        "both",
    ]
)


def vocabulary() -> tuple[list[str], list[str]]:
    """Words and two-word phrases from the 61 real papers in tests/data."""
    papers = json.loads((ROOT / "tests/data/seed_papers.json").read_text())
    words: dict[str, int] = {}
    phrases: dict[str, int] = {}
    for paper in papers:
        tokens = re.findall(r"[a-z][a-z-]{3,}", f"{paper['title']} {paper['abstract']}".lower())
        for token in tokens:
            if token not in STOP:
                words[token] = words.get(token, 0) + 1
        for first, second in itertools.pairwise(tokens):
            if first not in STOP and second not in STOP:
                phrases[f"{first} {second}"] = phrases.get(f"{first} {second}", 0) + 1
    # Only words the query language accepts on their own (it refuses lone common words),
    # so the bad rows are exactly the ones generate() makes bad on purpose.
    top_words = [w for w in sorted(words, key=words.__getitem__, reverse=True) if _parses(w)][:400]
    ranked = sorted(phrases, key=phrases.__getitem__, reverse=True)
    top_phrases = [p for p in ranked if _parses(f'"{p}"')][:200]
    return top_words, top_phrases


def _parses(text: str) -> bool:
    try:
        query_language.parse(text)
    except query_language.QueryError:
        return False
    return True


def topic(rng: random.Random, words: list[str], phrases: list[str]) -> str:
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(words)
    if kind < 0.6:
        return f'"{rng.choice(phrases)}"'
    if kind < 0.75:
        return f"{rng.choice(words)} {rng.choice(words)}"
    if kind < 0.85:
        return f"title:{rng.choice(words)} OR abstract:{rng.choice(words)}"
    if kind < 0.93:
        return f"cat:cs.{rng.choice(['LG', 'CL', 'CV', 'AI', 'RO'])} {rng.choice(words)}"
    return f"{rng.choice(words)} -{rng.choice(words)}"


def generate(rows: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    words, phrases = vocabulary()
    out = io.StringIO()
    out.write("email,topics,timezone,frequency,weekday,hour,max\r\n")
    for i in range(rows):
        if i % 100 == 99:  # 1% bad rows of the usual kinds
            bad = [
                f"reader{i}@",
                f"reader{i}@example.org,,Mars/Base",
                f"reader{i}@example.org,,,,,25",
            ]
            out.write(bad[i % 3] + "\r\n")
            continue
        name = f"{rng.choice(words).capitalize()}.Reader{i}"
        topics = "; ".join(topic(rng, words, phrases) for _ in range(rng.randint(0, 5)))
        weekly = rng.random() < 0.2
        out.write(
            f'{name}@Example{i % 50}.org,"{topics.replace(chr(34), chr(34) * 2)}",'
            f"{rng.choice(ZONES)},{'weekly' if weekly else 'daily'},"
            f"{subs.WEEKDAYS[rng.randrange(7)] if weekly else ''},{rng.randrange(24)},"
            f"{rng.choice([5, 10, 20, 20, 20, 50])}\r\n"
        )
    return out.getvalue().encode()


@contextmanager
def sqlite_database() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    try:
        db.upgrade(url)
        yield url
    finally:
        db.engine_for(url).dispose()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"digest_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        db.upgrade(url)
        yield url
    finally:
        db.engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bulk_import(url: str, data: bytes) -> tuple[float, float, subs_io.ImportReport, int, int]:
    settings = Settings(database_url=url)
    start = time.perf_counter()
    with db.session_scope(settings) as session:
        subs_io.import_csv(session, io.BytesIO(data), dry_run=True)
    validation = time.perf_counter() - start
    start = time.perf_counter()
    with db.session_scope(settings) as session:
        report = subs_io.import_csv(session, io.BytesIO(data), consent_detail="bench")
    elapsed = time.perf_counter() - start
    with db.session_scope(settings) as session:
        subscribers = session.scalar(select(func.count()).select_from(Subscriber)) or 0
        topics = session.scalar(select(func.count()).select_from(Topic)) or 0
    return elapsed, validation, report, subscribers, topics


def naive_import(url: str, data: bytes) -> tuple[float, int]:
    """One add_subscriber per row: what a first version would do."""
    settings = Settings(database_url=url)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    start = time.perf_counter()
    stored = 0
    with db.session_scope(settings) as session:
        for row in rows:
            cell = {k: (v or "").strip() for k, v in row.items() if k}
            try:
                subs.add_subscriber(
                    session,
                    cell["email"],
                    topics=subs_io.split_topics(cell["topics"]),
                    confirmed=True,
                    timezone=cell["timezone"] or "UTC",
                    frequency=cell["frequency"] or "daily",
                    weekday=cell["weekday"] or 0,
                    hour=cell["hour"] or 7,  # type: ignore[arg-type]
                    max_papers=cell["max"] or 20,  # type: ignore[arg-type]
                    consent_source="import",
                )
                stored += 1
            except subs.SubscriptionError:
                pass
    return time.perf_counter() - start, stored


def changed(data: bytes) -> bytes:
    """The same file with every other row's hour moved and every fifth row's topics new."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    header, body = rows[0], rows[1:]
    hour, topics = header.index("hour"), header.index("topics")
    for i, row in enumerate(body):
        if len(row) <= hour:
            continue  # a bad row on purpose
        if i % 2 == 0 and row[hour].isdigit():
            row[hour] = str((int(row[hour]) + 1) % 24)
        if i % 5 == 0:
            row[topics] = "reinforcement learning; cat:cs.RO robots"
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *body])
    return out.getvalue().encode()


def bulk_update(url: str, data: bytes) -> tuple[float, subs_io.ImportReport]:
    settings = Settings(database_url=url)
    start = time.perf_counter()
    with db.session_scope(settings) as session:
        report = subs_io.import_csv(session, io.BytesIO(data), update=True)
    return time.perf_counter() - start, report


def naive_update(url: str, data: bytes) -> float:
    """One lookup and one change_subscriber (a flush) per row."""
    settings = Settings(database_url=url)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    start = time.perf_counter()
    with db.session_scope(settings) as session:
        for row in rows:
            subscriber = subs.get_subscriber(session, row["email"] or "")
            if subscriber is None or not (row.get("hour") or "").isdigit():
                continue
            with suppress(subs.SubscriptionError):
                subs.change_subscriber(session, subscriber, hour=int(row["hour"]))
    return time.perf_counter() - start


def run(kind: str, url_context: object, data: bytes, sample: bytes, rows: int) -> None:
    with url_context() as url:  # type: ignore[operator]
        elapsed, validation, report, subscribers, topics = bulk_import(url, data)
        update_elapsed, update_report = bulk_update(url, changed(data))
    assert subscribers == report.imported and topics == report.topics, "counts disagree"
    with url_context() as url:  # type: ignore[operator]
        naive_elapsed, naive_stored = naive_import(url, sample)
        naive_update_elapsed = naive_update(url, changed(sample))
    sample_rows = sample.count(b"\n") - 1
    rate = rows / elapsed
    naive_rate = sample_rows / naive_elapsed
    print(
        f"{kind:<10} bulk: {rows:,} rows ({report.imported:,} imported, {report.topics:,} topics, "
        f"{report.bad:,} bad) in {elapsed:.2f} s = {rate:,.0f} rows/s "
        f"(of which validation alone, --dry-run: {validation:.2f} s) | "
        f"naive per-row on {sample_rows:,} rows: {naive_rate:,.0f} rows/s "
        f"({naive_stored:,} stored) | ratio {rate / naive_rate:.1f}x"
    )
    sample_rows = sample.count(b"\n") - 1
    update_rate = rows / update_elapsed
    naive_update_rate = sample_rows / naive_update_elapsed
    print(
        f"{kind:<10} --update: {rows:,} rows ({update_report.updated:,} updated: "
        f"{update_report.changes}, {update_report.unchanged:,} unchanged, {update_report.bad:,} "
        f"bad) in {update_elapsed:.2f} s = {update_rate:,.0f} rows/s | naive per-row on "
        f"{sample_rows:,} rows: {naive_update_rate:,.0f} rows/s | ratio "
        f"{update_rate / naive_update_rate:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=2_000)
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    data = generate(args.rows)
    sample = generate(args.baseline_rows, seed=2)
    print(
        f"generated {args.rows:,} rows ({len(data) / 1e6:.1f} MB) in "
        f"{time.perf_counter() - start:.1f} s; Python {sys.version.split()[0]}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    run("sqlite", sqlite_database, data, sample, args.rows)
    if not args.no_postgres:
        run("postgresql", lambda: postgres_database(args.postgres), data, sample, args.rows)


if __name__ == "__main__":
    main()
