"""The web app as compose runs it (gunicorn, the service's own arguments), over HTTP.

A hostile reader found that a 300 MB urlencoded POST to ``/unsubscribe/<anything>``
(no valid token needed) grew a worker from 53 MB to 934 MB, and that one client
dripping its headers stalled the single sync worker for ~30 s. Here: a 300 MB body,
declared and chunked, is answered 413 and the worker's memory does not grow; a
client dripping headers does not keep another client from being answered.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
BODY = 300 * 1024 * 1024
CHUNK = 1024 * 1024


def compose_web_command(port: int) -> list[str]:
    """The `web` service's command, bound to a free port on loopback instead."""
    compose = YAML(typ="safe", pure=True).load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["web"]["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert argv[0] == "gunicorn"
    argv = [f"127.0.0.1:{port}" if a == "0.0.0.0:8000" else a for a in argv]
    assert f"127.0.0.1:{port}" in argv, "the web service binds 0.0.0.0:8000"
    return [str(GUNICORN), *argv[1:]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()]
        assert len(pids) == 1, f"expected one worker (WEB_CONCURRENCY unset), got {pids}"
        return pids[0]

    def worker_rss_kb(self) -> int:
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def get(self, path: str, timeout: float = 15) -> int:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)


@pytest.fixture(scope="module")
def server(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not GUNICORN.exists():
        pytest.skip("gunicorn is not installed")
    folder = tmp_path_factory.mktemp("web-server")
    shutil.copy(sqlite_template, folder / "digest.db")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "DIGEST_DATABASE_URL": f"sqlite:///{folder / 'digest.db'}",
        "DIGEST_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "DIGEST_BASE_URL": "http://localhost:8000",
        **{k: v for k, v in os.environ.items() if k == "DIGEST_MAX_REQUEST_BYTES"},
    }
    log = (folder / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        compose_web_command(port), cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    web = Server(process, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            web.get("/robots.txt", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError((folder / "gunicorn.log").read_text()) from None
            time.sleep(0.2)
    yield web
    process.terminate()
    process.wait(timeout=30)
    log.close()


def post_huge(port: int, path: str, chunked: bool) -> bytes:
    """POST a 300 MB urlencoded body (streamed, never held), return the status line.

    The body is sent from a thread while this one waits for the answer: a server that
    answers early and stops reading must not leave us blocked in ``sendall``.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n".encode()
    )
    piece = b"List-Unsubscribe=One-Click&x=" + b"a" * (CHUNK - 29)
    if chunked:
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    def send() -> None:
        try:
            for _ in range(BODY // CHUNK):
                sock.sendall(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: what we want

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    finally:
        sock.close()
        sender.join(timeout=60)
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_300_mb_post_is_refused_with_413_and_the_worker_does_not_grow(
    server: Server, chunked: bool
) -> None:
    assert server.get("/robots.txt") == 200
    before = server.worker_rss_kb()
    status = post_huge(server.port, "/unsubscribe/x", chunked)
    after = server.worker_rss_kb()
    assert status.startswith(b"HTTP/1.1 413"), status
    assert after - before < 8 * 1024, f"worker grew from {before} kB to {after} kB"
    assert server.get("/robots.txt") == 200  # and it still answers


def test_a_client_dripping_headers_does_not_stall_the_others(server: Server) -> None:
    stop = threading.Event()
    dripper = socket.create_connection(("127.0.0.1", server.port), timeout=30)

    def drip() -> None:
        try:
            dripper.sendall(b"GET /robots.txt HTTP/1.1\r\n")
            while not stop.wait(0.5):
                dripper.sendall(b"X-Drip: 1\r\n")
        except OSError:
            pass

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # the dripper holds its connection open by now
        # A stalled server would leave these waiting until the dripper gave up (30 s
        # gunicorn timeout); the urlopen timeout fails the test long before that.
        for _ in range(3):
            assert server.get("/robots.txt", timeout=10) == 200
    finally:
        stop.set()
        dripper.close()
        thread.join(timeout=5)
