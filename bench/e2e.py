"""Benchmark: the whole day from outside, for N readers, in one run and one kind of sink.

A day of papers (2,000 by default, from the real seed papers) is written as arXiv
RSS files and a Hugging Face daily JSON, served on localhost by
``python -m http.server`` and ingested by the real ``digest fetch``; N readers
with 1-5 topics each (phrases from the seed papers' evaluation topics, arXiv
categories, authors, ``trending``) in 38 time zones are imported by
``digest subscribers import``. Every phase sends into a fresh minimal asyncio SMTP
sink in its own process (bench/smtpsink.py), which records each recipient and
Message-ID. In the same run:

1. **limit**: one real digest of ours, pre-built, blasted over as many smtplib
   connections as the workers have processes;
2. **baseline**: the usual approach (bench/e2ebase.py) on a sample of readers, MJML
   compiled per email; and **careful**, the same with MJML compiled once per process;
3. **distributed**: ``digest run --wait`` with PostgreSQL, a private Redis and one
   ``celery -A workers worker -c C``;
4. **in-process**: ``digest run`` on SQLite, no broker, SMTP to the sink.

Rates are digests per second between the sink's first and last message (so
process start-up is not counted; "day" is the whole command, plan to last 250).
After each digest run, :func:`e2ekit.check` says whether every reader got
exactly one digest with the right papers. ``--plan-rows`` times the plan alone
for that many readers on PostgreSQL.

    .venv/bin/python bench/e2e.py --readers 10000
    .venv/bin/python bench/e2e.py --readers 100000 --baseline 2000

Results are recorded in bench/README.md ("End to end").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import e2ebase
import e2ekit as kit
from sqlalchemy import create_engine, insert, select, text

from digest import pipeline
from digest.config import Settings
from digest.store import db
from digest.store.models import Subscriber, SubscriberStatus

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def rate(record: Path) -> tuple[int, float, float, float]:
    """(messages, per second between first and last, first, last) from a sink record."""
    got = kit.read_record(record)
    if len(got) < 2:
        return len(got), float("nan"), float("nan"), float("nan")
    first, last = got[0].when, got[-1].when
    return len(got), (len(got) - 1) / (last - first), first, last


def create_pg(name: str) -> str:
    admin = create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{PG}/{name}"


def drop_pg(name: str) -> None:
    admin = create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def keep_list(readers: int, every: int) -> list[str]:
    return [f"reader{r}@readers.example.org" for r in range(0, readers, every)]


def in_process(work: Path, day: kit.Day, url: str, keep: list[str]) -> dict[str, object]:
    record = work / "inproc.tsv"
    kept = work / "inproc-kept"
    sink = kit.start_sink(record, keep, kept)
    env = kit.digest_env(url, sink.port)
    try:
        started = time.time()
        proc = subprocess.Popen(
            [kit.DIGEST, "run", "--no-fetch", "--at", day.at.isoformat()],
            env=env, cwd=kit.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.time()
        output = proc.stdout.read().decode() if proc.stdout else ""
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise RuntimeError(f"digest run failed:\n{output}")
    finally:
        sink.stop()
    n, per_s, first, last = rate(record)
    checked = kit.check(url, record, kept)
    return {
        "sent": n,
        "digests_per_s": per_s,
        "day_s": ended - started,
        "plan_and_start_s": first - started,
        "send_s": last - first,
        # CPU is what load on a shared machine changes least.
        "cpu_ms_per_digest": 1000 * (usage.ru_utime + usage.ru_stime) / max(n, 1),
        "peak_rss_mb": {"digest run": usage.ru_maxrss / 1024},
        "check": checked,
    }


def distributed(
    work: Path, day: kit.Day, url: str, keep: list[str], concurrency: int, name: str
) -> dict[str, object]:
    record = work / f"{name}.tsv"
    kept = work / f"{name}-kept"
    sink = kit.start_sink(record, keep, kept)
    redis = kit.start_redis(work)
    env = kit.digest_env(url, sink.port, DIGEST_BROKER_URL=f"redis://127.0.0.1:{redis.port}/0")
    worker = kit.start_worker(env, concurrency, work / f"{name}-worker.log")
    rss: dict[str, float] = {}
    cpu = 0.0
    try:
        started = time.time()
        kit.digest(env, "run", "--no-fetch", "--at", day.at.isoformat(), "--wait")
        ended = time.time()
        rss["worker (main)"] = kit.peak_rss_mb(worker.proc.pid)
        pool = sorted(kit.children(worker.proc.pid))
        cpu = sum(kit.cpu_seconds(pid) for pid in pool)
        for k, pid in enumerate(pool):
            rss[f"pool process {k + 1}"] = kit.peak_rss_mb(pid)
    finally:
        worker.stop(30)
        redis.stop()
        sink.stop()
    n, per_s, first, last = rate(record)
    checked = kit.check(url, record, kept)
    return {
        "sent": n,
        "digests_per_s": per_s,
        "day_s": ended - started,
        "plan_and_start_s": first - started,
        "send_s": last - first,
        "pool_cpu_ms_per_digest": 1000 * cpu / max(n, 1),
        "peak_rss_mb": rss,
        "check": checked,
    }


def the_limit(work: Path, kept: Path, messages: int, connections: int) -> dict[str, object]:
    samples = sorted(kept.glob("*.eml"), key=lambda p: p.stat().st_size)
    data = samples[len(samples) // 2].read_bytes()  # a digest of the median size
    record = work / "limit.tsv"
    sink = kit.start_sink(record)
    try:
        wall = e2ebase.limit(sink.port, data, messages, connections)
    finally:
        sink.stop()
    n, per_s, _, _ = rate(record)
    return {"sent": n, "digests_per_s": per_s, "wall_s": wall, "message_kb": len(data) / 1024}


def the_baseline(
    work: Path, url: str, sample: int, at: datetime, connections: int, mjml_each: bool = True
) -> dict[str, object]:
    engine = create_engine(url)
    with engine.connect() as conn:
        ids = list(conn.scalars(select(Subscriber.id).order_by(Subscriber.id).limit(sample)))
    engine.dispose()
    record = work / f"baseline-{'each' if mjml_each else 'once'}.tsv"
    sink = kit.start_sink(record)
    try:
        wall = e2ebase.baseline(url, sink.port, ids, at, connections, mjml_each)
    finally:
        sink.stop()
    n, per_s, _, _ = rate(record)
    return {"sent": n, "digests_per_s": per_s, "wall_s": wall}


def plan_alone(rows: int, at: datetime) -> dict[str, float]:
    """The plan of ``rows`` readers on a fresh PostgreSQL database, first and second time."""
    name = f"bench_plan_{os.getpid()}"
    url = create_pg(name)
    try:
        settings = Settings(database_url=url)
        db.upgrade(url)
        zones = kit.ZONES
        with db.session_scope(settings) as session:
            for start in range(0, rows, 10_000):
                session.execute(
                    insert(Subscriber),
                    [
                        {
                            "email": f"plan{i}@readers.example.org",
                            "email_key": f"plan{i}@readers.example.org",
                            "status": SubscriberStatus.ACTIVE,
                            "timezone": zones[i % len(zones)],
                            "send_hour": i % 24,
                            "confirmed_at": at - timedelta(days=3),
                        }
                        for i in range(start, min(rows, start + 10_000))
                    ],
                )
        started = time.perf_counter()
        planned = len(pipeline.plan(settings, at))
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = len(pipeline.plan(settings, at))
        second = time.perf_counter() - started
    finally:
        drop_pg(name)
    return {"rows": planned, "first_s": first, "again_rows": again, "again_s": second}


def show(title: str, phase: dict[str, object]) -> None:
    parts = [f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in phase.items()]
    print(f"{title:<13} " + "  ".join(p for p in parts if not p.startswith("check=")))
    checked = phase.get("check")
    if isinstance(checked, kit.CheckResult):
        verdict = "OK" if checked.ok else "FAILED"
        print(
            f"{'':<13} exactly once, right papers: {verdict} ({checked.readers} readers, "
            f"{checked.rows} rows {checked.by_status}, {checked.received} received, "
            f"{checked.truncated_for_size} cut for size, naive {checked.naive_checked}, "
            f"kept messages {checked.kept_checked})"
        )
        for p in checked.problems:
            print(f"{'':<15}{p}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--baseline", type=int, default=1000, help="readers in its sample")
    parser.add_argument("--limit-messages", type=int, default=6000)
    parser.add_argument("--plan-rows", type=int, default=100_000, help="0: skip")
    parser.add_argument(
        "--phases", default="inproc,limit,baseline,distributed",
        help="comma-separated; also 'distributed1' (one process, for the scaling ratio)",
    )  # fmt: skip
    parser.add_argument("--keep-every", type=int, default=250, help="kept whole: 1 reader in K")
    parser.add_argument(
        "--set", action="append", default=[], metavar="DIGEST_X=V",
        help="a setting for the digest runs (repeatable), e.g. DIGEST_COMMIT_EVERY=1",
    )  # fmt: skip
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    phases = args.phases.split(",")
    kit.EXTRA_ENV.update(item.split("=", 1) for item in args.set)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="digest-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    pg_name = f"bench_e2e_{os.getpid()}"
    results: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    day = kit.make_day(work / "day", args.readers, args.papers)
    feeds = kit.start_feed_server(day.folder)
    keep = keep_list(args.readers, args.keep_every)
    try:
        sqlite_url = f"sqlite:///{work / 'digest.db'}"
        pg_url = create_pg(pg_name) if any(p.startswith("distributed") for p in phases) else ""
        setup = {}
        if {"inproc", "baseline"} & set(phases):
            setup["sqlite"] = kit.setup_database(kit.digest_env(sqlite_url, 1), day, feeds.port)
        if pg_url:
            setup["postgresql"] = kit.setup_database(kit.digest_env(pg_url, 1), day, feeds.port)
        print(f"setup (fetch {args.papers} papers, import {args.readers} readers): {setup}")
        if "inproc" in phases:
            results["in-process"] = in_process(work, day, sqlite_url, keep)
            show("in-process", results["in-process"])
        if "limit" in phases and "inproc" in phases:
            kept = work / "inproc-kept"
            results["limit"] = the_limit(work, kept, args.limit_messages, args.concurrency)
            show("limit", results["limit"])
        if "baseline" in phases:
            results["baseline"] = the_baseline(
                work, sqlite_url, args.baseline, day.at, args.concurrency
            )
            show("baseline", results["baseline"])
            results["careful"] = the_baseline(
                work, sqlite_url, args.baseline, day.at, args.concurrency, mjml_each=False
            )
            show("careful", results["careful"])
        for phase, c in (("distributed", args.concurrency), ("distributed1", 1)):
            if phase in phases:
                if phase == "distributed1" and "distributed" in phases:
                    drop_pg(pg_name)
                    pg_url = create_pg(pg_name)
                    kit.setup_database(kit.digest_env(pg_url, 1), day, feeds.port)
                results[phase] = distributed(work, day, pg_url, keep, c, phase)
                show(phase, results[phase])
                if "limit" in phases and "limit" not in results:
                    # No in-process run to take a digest from: one of this run's.
                    kept = work / f"{phase}-kept"
                    results["limit"] = the_limit(work, kept, args.limit_messages, args.concurrency)
                    show("limit", results["limit"])
    finally:
        feeds.stop()
        if any(p.startswith("distributed") for p in phases):
            drop_pg(pg_name)
    if args.plan_rows:
        results["plan alone"] = plan_alone(args.plan_rows, day.at)
        show("plan alone", results["plan alone"])
    summary = ratios(results)
    for k, v in summary.items():
        print(f"{k}: {v:.3f}")
    print(f"total bench time {time.perf_counter() - started:.0f} s; files in {work}")
    if args.json:
        out = {k: {n: v for n, v in r.items() if n != "check"} for k, r in results.items()}
        for k, r in results.items():
            if isinstance(r.get("check"), kit.CheckResult):
                out[k]["check_ok"] = r["check"].ok  # type: ignore[union-attr]
        Path(args.json).write_text(json.dumps({"args": vars(args), **out, **summary}, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    failed = [
        k
        for k, r in results.items()
        if isinstance(r.get("check"), kit.CheckResult) and not r["check"].ok
    ]  # type: ignore[union-attr]
    if failed:
        sys.exit(f"correctness check failed for {', '.join(failed)}")


def ratios(results: dict[str, dict[str, object]]) -> dict[str, float]:
    def per_s(name: str) -> float | None:
        value = results.get(name, {}).get("digests_per_s")
        return float(value) if isinstance(value, float) else None

    out = {}
    for run in ("distributed", "in-process", "distributed1"):
        ours = per_s(run)
        if ours is None:
            continue
        for ref in ("limit", "baseline", "careful"):
            theirs = per_s(ref)
            if theirs:
                out[f"{run} / {ref}"] = ours / theirs
    two, one = per_s("distributed"), per_s("distributed1")
    if two and one:
        out["2 processes / 1"] = two / one
    return out


if __name__ == "__main__":
    main()
