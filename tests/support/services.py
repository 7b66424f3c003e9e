"""Real services for the worker tests: a private Redis, Celery worker and beat subprocesses.

A pytest plugin (register with ``pytest_plugins``). Every process started here is
our own: Redis on a free port with no persistence (never the machine's Redis on
6379), workers and beats in their own process group so teardown can always reap
them, even after a failed test or a SIGKILLed parent. Each process logs to a file;
the tail of every log is printed at teardown, which pytest shows for failing tests.

The worker gets its configuration the way production does: ``DIGEST_*``
environment variables, generated from the same :class:`Settings` the test uses
(:func:`settings_env` round-trips, so the two can never disagree).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis

from digest.config import Settings

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 60


# --- small helpers ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.1,
    details: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail clearly at the deadline.

    Deadlines are generous and only there so a hung service fails the test instead of
    hanging it; they are not timing assertions.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}", pytrace=False)
        time.sleep(interval)


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``DIGEST_*`` variables that make ``Settings.from_env()`` equal ``settings``."""
    env: dict[str, str] = {}
    for f in fields(Settings):
        name = "DIGEST_" + f.name.upper().replace("FROM_ADDR", "FROM")
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            env[name] = "1" if value else "0"
        elif value != "":
            env[name] = str(value)
    if Settings.from_env(env) != settings:
        raise AssertionError(f"settings do not round-trip through the environment: {env}")
    return env


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(settings_env(settings))
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return sorted(k for k in set(kids) if _alive(k))


def _group(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (orphaned pool children stay in it)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields_[2]) == pgid and fields_[0] != "Z":
                pids.append(int(stat.parent.name))
    return sorted(pids)


# --- Redis -------------------------------------------------------------------------------


class RedisServer:
    """A throw-away ``redis-server`` on a free port; stop and start keep the port."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("redis-server is already running")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--logfile", str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.starts += 1
        wait_until(self.ping, 20, f"redis-server on port {self.port}", details=self.tail)

    def ping(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with contextlib.closing(self.client()) as c:
                return bool(c.ping())
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        """Shut Redis down (nothing is saved: its queues are gone for good)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def flush(self) -> None:
        """FLUSHALL: every queued and unacknowledged message is lost."""
        with contextlib.closing(self.client()) as c:
            c.flushall()

    def queue_length(self, queue: str) -> int:
        with contextlib.closing(self.client()) as c:
            return int(c.llen(queue))

    def tail(self) -> str:
        return f"--- redis log ({self.log}) ---\n{tail(self.log)}"


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- Celery processes ------------------------------------------------------------------


class CeleryProcess:
    """A ``celery -A workers ...`` subprocess in its own process group."""

    kind = "celery"
    ready_marker = ""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 60) -> None:
        # A restart appends to the same log: only what this run writes counts as ready.
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", *self.args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, reaped as one
            )
        wait_until(self._ready, timeout, f"{self.kind} to start", details=self.tail)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(
                f"{self.kind} exited with {self.proc.returncode} while starting\n{self.tail()}",
                pytrace=False,
            )
        try:
            fresh = self.log.read_bytes()[self._log_start :]
        except FileNotFoundError:
            return False
        return self.ready_marker.encode() in fresh

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return f"--- {self.kind} log ({self.log}) ---\n{tail(self.log, lines)}"

    def children(self) -> list[int]:
        return _children(self.pid) if self.alive() else []

    def kill9(self) -> list[int]:
        """SIGKILL the main process and then whatever is left of its group.

        Like the OOM killer or a lost machine: pool children forked after an earlier
        kill die too, instead of finishing their batch as orphans. Returns the pids.
        The group is listed before the kill: Celery's pool children ask the kernel for
        SIGKILL when their parent dies (pdeathsig), so they may be gone before we look again.
        """
        killed = set(_group(self.pid))
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            killed.add(self.pid)
            assert self.proc is not None
            self.proc.wait(10)
        for pid in _group(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.01)
        return sorted(killed)

    def kill9_children(self) -> list[int]:
        """SIGKILL every pool child (the main process stays and forks new ones)."""
        kids = self.children()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return kids

    def stop(self, timeout: float = 15) -> None:
        """Ask politely (SIGTERM: warm shutdown), then SIGKILL the whole group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.reap()

    def reap(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


class CeleryWorker(CeleryProcess):
    kind = "celery worker"
    # "celery@host ready." is logged once the consumer is connected and consuming.
    ready_marker = " ready."

    def __init__(self, env: dict[str, str], log: Path, name: str, concurrency: int) -> None:
        super().__init__(
            [
                "worker",
                "-Q", "ingest,send",
                "--pool", "prefork",
                "--concurrency", str(concurrency),
                "--without-mingle",
                "--without-gossip",
                "-l", "INFO",
                "-n", name,
            ],
            env,
            log,
        )  # fmt: skip
        self.name = name

    def task_state(self, task_id: str) -> str | None:
        """ "succeeded", "failed" or None (not finished yet), from this worker's log."""
        text = self.log_text()
        if f"[{task_id}] succeeded" in text:
            return "succeeded"
        if f"[{task_id}] raised" in text:
            return "failed"
        return None

    def wait_task(self, task_id: str, timeout: float = 30) -> None:
        """Wait until the task with this id has run here; a task that raised fails the test."""
        state = wait_until(
            lambda: self.task_state(task_id), timeout, f"task {task_id}", details=self.tail
        )
        if state != "succeeded":
            pytest.fail(f"task {task_id} raised in the worker\n{self.tail()}", pytrace=False)

    def idle(self) -> bool:
        """Every task this worker received has finished (from its log)."""
        text = self.log_text()
        received = set(re.findall(r"\[([0-9a-f-]{36})\] received", text))
        done = set(re.findall(r"\[([0-9a-f-]{36})\] (?:succeeded|raised|retry)", text))
        return received <= done

    def connects(self) -> int:
        """How many times the consumer has connected to the broker (reconnects included)."""
        return self.log_text().count("Connected to redis://")


class CeleryBeat(CeleryProcess):
    kind = "celery beat"
    ready_marker = "beat: Starting..."

    def sent(self, entry: str) -> int:
        """How many times this beat has sent the schedule entry ``entry``."""
        return self.log_text().count(f"Sending due task {entry} (")


class _Factory:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.started: list[CeleryProcess] = []

    def cleanup(self, failed: bool) -> None:
        for process in reversed(self.started):
            process.stop(timeout=5)
        if failed:
            for process in self.started:
                print(process.tail())


class WorkerFactory(_Factory):
    def __call__(
        self, settings: Settings, concurrency: int = 2, start: bool = True, **env: str
    ) -> CeleryWorker:
        """A real ``celery -A workers worker`` configured by ``settings``, started and ready."""
        if not settings.broker_url:
            raise ValueError("a worker needs settings.broker_url")
        n = len(self.started) + 1
        worker = CeleryWorker(
            child_env(settings, **env),
            self.dir / f"worker-{n}.log",
            name=f"w{n}-{uuid.uuid4().hex[:6]}@%h",
            concurrency=concurrency,
        )
        self.started.append(worker)
        if start:
            worker.start()
        return worker


class BeatFactory(_Factory):
    def __call__(self, settings: Settings, fast: bool = True, **env: str) -> CeleryBeat:
        """A real ``celery -A workers beat`` with its own schedule file, started.

        ``fast``: plan every second, sweep every two, ingest once a day (see
        :func:`beat_settings`); otherwise the intervals in ``settings``.
        """
        if fast:
            settings = beat_settings(settings)
        n = len(self.started) + 1
        beat = CeleryBeat(
            [
                "beat",
                "-s", str(self.dir / f"beat-{n}-schedule"),
                "--pidfile", str(self.dir / f"beat-{n}.pid"),
                "--max-interval", "1",
                "-l", "INFO",
            ],
            child_env(settings, **env),
            self.dir / f"beat-{n}.log",
        )  # fmt: skip
        self.started.append(beat)
        beat.start()
        return beat


def _failures(request: pytest.FixtureRequest) -> int:
    # Incremented when a failed call report is logged, which happens before teardown.
    return int(request.session.testsfailed)


@pytest.fixture
def celery_worker_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFactory]:
    """Start real workers with ``factory(settings)``; all are reaped after the test,
    and their log tails printed if it failed."""
    factory = WorkerFactory(tmp_path_factory.mktemp("celery-workers"))
    failures = _failures(request)
    try:
        yield factory
    finally:
        factory.cleanup(failed=_failures(request) > failures)


@pytest.fixture
def celery_beat_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BeatFactory]:
    """Start real beats with ``factory(settings)``; reaped after the test."""
    factory = BeatFactory(tmp_path_factory.mktemp("celery-beat"))
    failures = _failures(request)
    try:
        yield factory
    finally:
        factory.cleanup(failed=_failures(request) > failures)


def beat_settings(settings: Settings) -> Settings:
    """Beat ticking fast enough for a test: plan every second, sweep every two."""
    from dataclasses import replace

    return replace(
        settings, plan_interval_seconds=1, sweep_interval_seconds=2, ingest_interval_minutes=1440
    )


__all__ = [
    "BeatFactory",
    "CeleryBeat",
    "CeleryWorker",
    "RedisServer",
    "WorkerFactory",
    "beat_settings",
    "celery_beat_factory",
    "celery_worker_factory",
    "child_env",
    "free_port",
    "redis_server",
    "settings_env",
    "wait_until",
]
