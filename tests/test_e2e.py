"""The whole day from outside for 1,000 readers: exactly one digest each, the right papers.

The correctness half of bench/e2e.py, with its own pieces (bench/e2ekit.py): feed
files served on localhost and ingested by the real `digest fetch`, readers imported
by `digest subscribers import`, `digest run --wait` handed to a real Celery worker
with two pool processes on PostgreSQL and a private Redis, mail into the minimal
SMTP sink in its own process. Then the sink's records are compared with the ledger
and with what matching says (and, for a sample, with the naive evaluator), and the
messages the sink kept whole are parsed back. No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import e2ekit as kit

READERS = 1000
PAPERS = 200


def test_a_day_for_1000_readers_on_two_pool_processes(pg_url: str, tmp_path: Path) -> None:
    day = kit.make_day(tmp_path / "day", READERS, PAPERS)
    keep = [f"reader{r}@readers.example.org" for r in range(0, READERS, 50)]
    record, kept = tmp_path / "sink.tsv", tmp_path / "kept"
    services: list[kit.Service] = []
    try:
        feeds = kit.start_feed_server(day.folder)
        services.append(feeds)
        sink = kit.start_sink(record, keep, kept)
        services.append(sink)
        env = kit.digest_env(pg_url, sink.port)
        kit.setup_database(env, day, feeds.port)
        redis = kit.start_redis(tmp_path)
        services.append(redis)
        env["DIGEST_BROKER_URL"] = f"redis://127.0.0.1:{redis.port}/0"
        worker = kit.start_worker(env, 2, tmp_path / "worker.log")
        services.append(worker)
        out = kit.digest(env, "run", "--no-fetch", "--at", day.at.isoformat(), "--wait")
        assert "still pending" not in out
    finally:
        for service in reversed(services):
            service.stop(30)
    result = kit.check(pg_url, record, kept, naive_sample=8)
    assert result.ok, "\n".join(result.problems)
    assert result.readers == result.rows == READERS
    # Most readers have something; the ones with nothing were skipped, not mailed.
    assert result.by_status.get("sent", 0) > READERS * 0.8, result.by_status
    assert set(result.by_status) <= {"sent", "skipped"}, result.by_status
    assert result.received == result.by_status["sent"]
    assert result.naive_checked == 8
    assert result.kept_checked >= len(keep) * 0.8
