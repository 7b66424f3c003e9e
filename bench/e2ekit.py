"""The pieces of the end-to-end benchmark, importable by tests/test_e2e.py.

- :func:`make_day`: a day of papers as arXiv RSS files (and one Hugging Face daily
  JSON with upvotes) built from the real seed papers, and a CSV of readers with
  1-5 topics each from real vocabulary, in many time zones;
- :class:`Service` and friends: the feed server (``python -m http.server``), the
  SMTP sink (bench/smtpsink.py), a private redis-server and a Celery worker, each
  in its own process;
- :func:`setup_database`: feeds added and fetched, readers imported, all through
  the real ``digest`` command;
- :func:`check`: every reader got exactly one digest with the right papers,
  comparing the sink's records with the ledger and with what matching says.
"""

from __future__ import annotations

import bisect
import csv
import email
import email.policy
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import selectinload  # noqa: E402

from digest.config import Settings  # noqa: E402
from digest.match.naive import naive_matches, tokenise  # noqa: E402
from digest.pipeline.compose import DigestBuilder, DigestSpec, Window  # noqa: E402
from digest.store import db  # noqa: E402
from digest.store.models import Digest, Paper, Subscriber  # noqa: E402

BIN = Path(sys.executable).parent
DIGEST = str(BIN / "digest")
SEED = ROOT / "tests" / "data" / "seed_papers.json"
EVAL_TOPICS = ROOT / "tests" / "data" / "eval_topics.json"

CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "cs.CR", "cs.AI", "stat.ML", "cs.RO", "cs.IR"]
FEED_CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "cs.CR"]
ZONES = [
    "UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Rome",
    "Europe/Warsaw", "Europe/Helsinki", "Europe/Istanbul", "Europe/Moscow", "Africa/Lagos",
    "Africa/Nairobi", "Africa/Johannesburg", "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata",
    "Asia/Kathmandu", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Singapore",
    "Asia/Tokyo", "Asia/Seoul", "Australia/Sydney", "Australia/Adelaide", "Pacific/Auckland",
    "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage",
    "Pacific/Honolulu", "America/Mexico_City", "America/Bogota", "America/Toronto",
    "America/St_Johns",
]  # fmt: skip
FIRST = ["Ada", "Alan", "Grace", "Yuki", "Elif", "Fatima", "Priya", "Jonas", "Sofia", "Chloé",
         "Hiroshi", "Tomás", "Anna", "Mateo", "Ana", "Chen", "Wei", "Ola", "Kwame", "Lina"]  # fmt: skip
LAST = ["Lovelace", "Turing", "Hopper", "Yılmaz", "Mensah", "Dubois", "Fernández", "Zhang",
        "Müller", "Berg", "Rossi", "Nguyen", "Sato", "Tanaka", "Park", "Sharma", "García",
        "Johansson", "Chen", "Okafor", "Kowalski", "Silva", "Haddad", "Novak"]  # fmt: skip
QUALIFIERS = ["", " at Scale", ": A Study", " Revisited", " in Practice", " for Small Models",
              ": Benchmarks and Baselines", " under Distribution Shift", " with Guarantees"]  # fmt: skip
EXTRA_PHRASES = ["diffusion models", "reinforcement learning", "large language models",
                 "privacy", "uncertainty", "robustness", "fairness", "autonomous driving",
                 "graph neural networks", "safety", "alignment", "red teaming", "benchmark",
                 "federated learning", "interpretability"]  # fmt: skip

SINK = str(Path(__file__).resolve().parent / "smtpsink.py")


@dataclass
class Day:
    """A generated day: where its files are and what it holds."""

    folder: Path
    feeds: list[str]  # file names under folder/feeds
    csv_path: Path
    readers: int
    papers: int
    at: datetime  # the moment the run is replayed at (every reader's send time has passed)


def make_day(folder: Path, readers: int, papers: int = 2000, seed: int = 12) -> Day:
    """Write the day's feed files and the readers' CSV under ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    feeds = folder / "feeds"
    feeds.mkdir(exist_ok=True)
    seeds = json.loads(SEED.read_text())
    sentences = [
        s.strip() + "."
        for p in seeds
        for s in re.split(r"(?<=[.!?])\s+", p["abstract"])
        if len(s) > 40
    ]
    authors_pool = [f"{f} {last}" for f in FIRST for last in LAST]
    items: list[dict[str, Any]] = []
    for j in range(papers):
        base = seeds[j % len(seeds)]
        qualifier = QUALIFIERS[(j // len(seeds)) % len(QUALIFIERS)]
        cut = (j // len(seeds)) // len(QUALIFIERS)
        title = base["title"] + qualifier + (f" (Part {cut + 1})" if cut else "")
        abstract = " ".join([base["abstract"], *rng.sample(sentences, 2)])
        categories = [FEED_CATEGORIES[j % 4], *rng.sample(CATEGORIES, rng.randint(0, 2))]
        items.append(
            {
                "id": f"2512.{10000 + j:05d}",
                "title": title,
                "abstract": abstract,
                "authors": rng.sample(authors_pool, rng.randint(2, 7)),
                "categories": list(dict.fromkeys(categories)),
                "upvotes": rng.choice([0, 0, 0, 1, 3, 8, 15, 40, 120]),
            }
        )
    names = []
    for k, category in enumerate(FEED_CATEGORIES):
        name = f"arxiv_{category.replace('.', '_')}.xml"
        (feeds / name).write_text(_arxiv_rss(category, items[k::4]), encoding="utf-8")
        names.append(name)
    hf = [i for i in items if i["upvotes"]][:300]
    (feeds / "hf_daily.json").write_text(json.dumps(_hf_daily(hf)), encoding="utf-8")
    names.append("hf_daily.json")
    now = datetime.now(UTC).replace(microsecond=0)
    at = now + timedelta(hours=12)
    vocabulary = _vocabulary(items)
    csv_path = folder / "readers.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "topics", "timezone", "hour", "max"])
        for r in range(readers):
            tz = ZONES[r % len(ZONES)]
            # Each reader's send time falls between 2 and 11 hours from now: after the
            # import confirms them, before the replayed moment, so each is due once.
            due = now + timedelta(hours=2, minutes=rng.randint(0, 540))
            hour = due.astimezone(ZoneInfo(tz)).hour
            topics = rng.sample(vocabulary, rng.randint(1, 5))
            writer.writerow(
                [
                    f"reader{r}@readers.example.org",
                    "; ".join(t.replace(";", "\\;") for t in topics),
                    tz,
                    hour,
                    rng.choice([5, 10, 20, 20, 20]),
                ]
            )
    return Day(folder, names, csv_path, readers, papers, at)


def _vocabulary(items: list[dict[str, Any]]) -> list[str]:
    topics = json.loads(EVAL_TOPICS.read_text())["topics"]
    words = [t["query"] for t in topics] + EXTRA_PHRASES
    words += [f"cat:{c}" for c in CATEGORIES]
    authors = Counter(a for i in items for a in i["authors"])
    words += [f'author:"{a}"' for a, _ in authors.most_common(40)]
    words += ["trending"] * 4 + ["trending AND cat:cs.CL", "safety AND trending"]
    return words


def _arxiv_rss(category: str, items: list[dict[str, Any]]) -> str:
    date = "Tue, 02 Dec 2025 00:00:00 -0500"
    parts = [
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom" version="2.0"><channel>'
        f"<title>{category} updates on arXiv.org</title>"
        f"<link>http://rss.arxiv.org/rss/{category}</link>"
        f"<description>{category} updates</description><language>en-us</language>"
        f"<pubDate>{date}</pubDate>"
    ]
    for item in items:
        cats = "".join(f"<category>{c}</category>" for c in item["categories"])
        parts.append(
            f"<item><title>{escape(item['title'])}</title>"
            f"<link>https://arxiv.org/abs/{item['id']}</link>"
            f"<description>arXiv:{item['id']}v1 Announce Type: new \nAbstract: "
            f"{escape(item['abstract'])}</description>"
            f'<guid isPermaLink="false">oai:arXiv.org:{item["id"]}v1</guid>{cats}'
            f"<pubDate>{date}</pubDate><arxiv:announce_type>new</arxiv:announce_type>"
            f"<dc:creator>{escape(', '.join(item['authors']))}</dc:creator></item>"
        )
    parts.append("</channel></rss>\n")
    return "".join(parts)


def _hf_daily(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "paper": {
                "id": i["id"],
                "authors": [{"name": a, "hidden": False} for a in i["authors"]],
                "publishedAt": "2025-12-01T04:00:00.000Z",
                "title": i["title"],
                "summary": i["abstract"],
                "upvotes": i["upvotes"],
            },
            "title": i["title"],
            "summary": i["abstract"],
            "numComments": 0,
        }
        for i in items
    ]


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class Service:
    """A process we started (and only we stop)."""

    proc: subprocess.Popen[bytes]
    port: int = 0
    log: Path | None = None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_feed_server(folder: Path) -> Service:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Service(proc, port)


def start_sink(
    record: Path, keep: list[str] | None = None, keep_dir: Path | None = None
) -> Service:
    port = free_port()
    args = [sys.executable, SINK, "--port", str(port), "--record", str(record)]
    if keep and keep_dir is not None:
        keep_file = record.with_suffix(".keep")
        keep_file.write_text("\n".join(keep) + "\n")
        args += ["--keep", str(keep_file), "--keep-dir", str(keep_dir)]
    proc = subprocess.Popen(args)
    wait_port(port)
    return Service(proc, port)


def start_redis(folder: Path) -> Service:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port)
    return Service(proc, port)


def start_worker(env: dict[str, str], concurrency: int, log: Path) -> Service:
    handle = log.open("wb")
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "workers", "worker", "-c", str(concurrency),
         "-Q", "ingest,send", "--loglevel=INFO", "--without-heartbeat", "--without-gossip",
         "--without-mingle"],
        env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Celery worker did not start: see {log}")
        time.sleep(0.2)
    return Service(proc, 0, log)


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Settings given on bench/e2e.py's command line (``--set``), for every digest process.
EXTRA_ENV: dict[str, str] = {}


def digest_env(database_url: str, sink_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=database_url,
        DIGEST_SMTP_URL=f"smtp://127.0.0.1:{sink_port}?timeout=60",
        DIGEST_BASE_URL="https://digest.example.org",
        DIGEST_ALLOW_INSECURE_LINKS="1",
        DIGEST_SECRET_KEY="bench-e2e-secret-key-0123456789",
        DIGEST_FROM="Paper Digest <digest@digest.example.org>",
        DIGEST_POSTAL_ADDRESS="1 Example Street, Testville",
        DIGEST_ALLOW_PRIVATE_FEEDS="1",
        DIGEST_FETCH_DELAY="0",
        PYTHONPATH=str(ROOT),
    )
    env.update(EXTRA_ENV)
    env.update(extra)
    return env


def digest(env: dict[str, str], *args: str, timeout: float = 3600) -> str:
    done = subprocess.run(
        [DIGEST, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"digest {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def setup_database(env: dict[str, str], day: Day, feed_port: int) -> dict[str, float]:
    """Feeds added and fetched, readers imported: the real commands. Returns timings."""
    times = {}
    started = time.perf_counter()
    digest(env, "db", "upgrade")
    for name in day.feeds:
        kind = "hf-daily" if name.endswith(".json") else "arxiv-rss"
        digest(env, "feeds", "add", f"http://127.0.0.1:{feed_port}/feeds/{name}", "--kind", kind)
    digest(env, "fetch")
    times["fetch"] = time.perf_counter() - started
    started = time.perf_counter()
    digest(env, "subscribers", "import", str(day.csv_path))
    times["import"] = time.perf_counter() - started
    return times


# --- the sink's records and the check ------------------------------------------------------


@dataclass
class Received:
    when: float
    to: str
    message_id: str
    size: int


def read_record(path: Path) -> list[Received]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        when, to, message_id, size = line.split("\t")
        out.append(Received(float(when), to, message_id, int(size)))
    return out


@dataclass
class CheckResult:
    readers: int = 0
    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    received: int = 0
    problems: list[str] = field(default_factory=list)
    truncated_for_size: int = 0
    naive_checked: int = 0
    kept_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)
        elif len(self.problems) == 20:
            self.problems.append("… (more)")


_ABS = re.compile(r"https://arxiv\.org/abs/(\d{4}\.\d{5})")


def check(
    database_url: str, record: Path, keep_dir: Path | None = None, naive_sample: int = 20
) -> CheckResult:
    """Every reader got exactly one digest, with the papers matching says, once.

    - the ledger has one row per active reader, and every row is settled;
    - the sink received exactly one message per ``sent`` row, to its reader, with its
      Message-ID, and nothing else;
    - each row's papers are what matching says for its reader and window (the builder
      run afresh, outside the send path's batches and caches), in order; for a sample,
      the set also agrees with the naive evaluator (digest/match/naive.py);
    - the messages the sink kept whole carry exactly those papers, in that order.
    """
    result = CheckResult()
    settings = Settings(database_url=database_url, base_url="https://digest.example.org")
    received = read_record(record)
    result.received = len(received)
    by_reader: dict[str, list[Received]] = {}
    for item in received:
        by_reader.setdefault(item.to, []).append(item)
    with db.session_scope(settings) as session:
        readers = list(session.scalars(select(Subscriber)))
        result.readers = len(readers)
        rows = list(
            session.scalars(
                select(Digest).options(
                    selectinload(Digest.subscriber).selectinload(Subscriber.topics)
                )
            )
        )
        result.rows = len(rows)
        per_reader = Counter(d.subscriber_id for d in rows)
        for sub in readers:
            if per_reader[sub.id] != 1:
                result.problem(f"{sub.email} has {per_reader[sub.id]} ledger rows")
        email_of = {s.id: s.email for s in readers}
        for d in rows:
            result.by_status[d.status.value] = result.by_status.get(d.status.value, 0) + 1
            got = by_reader.pop(email_of[d.subscriber_id], [])
            if d.status.value == "sent":
                if len(got) != 1:
                    result.problem(f"digest {d.id} sent, the sink got {len(got)} messages")
                elif got[0].message_id != d.message_id:
                    result.problem(f"digest {d.id}: Message-ID {got[0].message_id}")
            elif got:
                result.problem(f"digest {d.id} is {d.status.value} but the sink got {len(got)}")
        for to, got in by_reader.items():
            result.problem(f"the sink got {len(got)} messages for {to}, who has no row")
        _check_papers(session, settings, rows, result, naive_sample)
        if keep_dir is not None:
            _check_kept(session, rows, email_of, keep_dir, result)
    return result


def _check_papers(
    session: Any, settings: Settings, rows: list[Digest], result: CheckResult, sample: int
) -> None:
    built = [d for d in rows if d.window_start is not None]
    if not built:
        return
    specs = {
        d.id: DigestSpec(d.subscriber, d.period, Window(d.window_start, d.window_end), d.due_at)
        for d in built
    }
    builder = DigestBuilder(settings, session, max(d.window_end for d in built), specs)
    builder.match()
    for d in built:
        # The email numbers its cards grouped by topic: the ledger keeps that order,
        # so the set is what matching decides and its size what fit.
        expected = {m.paper.id for m in builder.matched[d.id]}
        shown = set(d.paper_ids or [])
        if d.status.value == "sent":
            if not shown or not shown <= expected:
                result.problem(f"digest {d.id}: {len(shown - expected)} papers matching left out")
            elif len(shown) < len(expected):
                result.truncated_for_size += 1
        elif d.status.value == "skipped" and expected:
            result.problem(f"digest {d.id} skipped, but {len(expected)} papers match")
        elif d.status.value != "skipped":
            result.problem(f"digest {d.id} is {d.status.value}: {d.error}")
    rng = random.Random(3)
    papers = builder.papers  # oldest first: each window is a slice
    seen = [p.first_seen_at for p in papers]
    fields = tokenise(papers)
    for d in rng.sample(built, min(sample, len(built))):
        lo = bisect.bisect_right(seen, d.window_start)
        hi = bisect.bisect_right(seen, d.window_end)
        union: set[int] = set()
        for topic in d.subscriber.topics:
            found = naive_matches(papers[lo:hi], topic.query, fields[lo:hi])
            union |= {papers[lo + i].id for i in found}
        total = len(builder.matched[d.id]) + builder.beyond_limit[d.id]
        if not set(d.paper_ids or []) <= union or total != len(union):
            result.problem(f"digest {d.id}: naive says {len(union)} papers, we {total}")
        result.naive_checked += 1


def _check_kept(
    session: Any, rows: list[Digest], email_of: dict[int, str], keep_dir: Path, result: CheckResult
) -> None:
    arxiv = dict(session.execute(select(Paper.id, Paper.arxiv_id)).all())
    by_email = {email_of[d.subscriber_id]: d for d in rows}
    for path in sorted(keep_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        to = str(message["To"])
        d = by_email.get(to.strip("<>").split("<")[-1].strip(">"))
        if d is None:
            result.problem(f"kept message {path.name} for {to}: no ledger row")
            continue
        parts = {
            p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()
        }
        want = [arxiv[pid] for pid in d.paper_ids or []]
        for kind in ("text/plain", "text/html"):
            found = list(dict.fromkeys(_ABS.findall(parts.get(kind, ""))))
            if found != want:
                result.problem(
                    f"kept message for {to}: {kind} shows {found[:4]}…, ledger {want[:4]}…"
                )
        result.kept_checked += 1
