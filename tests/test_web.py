"""The web app: `/` and `/healthz`, in Flask's test client on both databases, then
for real under gunicorn (fetched over HTTP) and in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_settings
from flask.testing import FlaskClient
from support.browser import dump_dom, requires_chromium

from digest.config import Settings
from digest.web import SECURITY_HEADERS
from digest.web.app import create_app

REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url(scheme: str) -> str:
    """A URL on a port nothing listens on: connection refused, at once."""
    return f"{scheme}://127.0.0.1:{free_port()}/0"


def client_for(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def assert_security_headers(headers: object) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name  # type: ignore[attr-defined]
    assert "default-src 'self'" in headers.get("Content-Security-Policy")  # type: ignore[attr-defined]
    assert headers.get("X-Frame-Options") == "DENY"  # type: ignore[attr-defined]


# --- test client -----------------------------------------------------------------------


def test_healthz_ok_without_broker(settings: Settings) -> None:
    response = client_for(settings).get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"database": "ok", "broker": "not configured", "status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    assert_security_headers(response.headers)


@pytest.mark.integration
def test_healthz_ok_with_real_redis(db_url: str, tmp_path: Path) -> None:
    response = client_for(make_settings(db_url, tmp_path, broker_url=REDIS_URL)).get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"database": "ok", "broker": "ok", "status": "ok"}


@pytest.mark.integration
def test_healthz_degraded_when_broker_is_down(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, broker_url=closed_port_url("redis"))
    response = client_for(settings).get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"database": "ok", "broker": "not ok", "status": "degraded"}


HEALTH_TOKEN = "health-token-0123456789"


def test_healthz_says_only_not_ok_in_public_and_why_in_the_log_and_to_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The review saw `connection to server at "127.0.0.1", port 1 failed…` in the
    public answer: host, port, user and paths are for the operator only."""
    missing_dir = tmp_path / "no" / "such" / "dir" / "digest.db"
    postgres_down = closed_port_url("postgresql+psycopg").rsplit("/", 1)[0] + "/digest"
    for url in (f"sqlite:///{missing_dir}", postgres_down):
        settings = make_settings(url, tmp_path, health_token=HEALTH_TOKEN)
        client = client_for(settings)
        caplog.clear()
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": HEALTH_TOKEN},
        ):
            response = client.get("/healthz", headers=headers)
            assert response.status_code == 503, url
            assert response.get_json() == {
                "database": "not ok",
                "broker": "not configured",
                "status": "degraded",
            }
            body = response.get_data(as_text=True)
            assert "127.0.0.1" not in body and "Error" not in body and str(tmp_path) not in body
        logged = caplog.text
        assert "health check: database unreachable" in logged and "OperationalError" in logged
        detailed = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
        assert detailed.status_code == 503
        body = detailed.get_json()
        assert body["status"] == "degraded"
        assert body["database"].startswith("error: OperationalError"), body
        assert body["broker"] == "not configured"
        # One line, no SQL, no SQLAlchemy help link.
        assert "\n" not in body["database"] and "sqlalche.me" not in body["database"]
    # Without a token configured, no header shows details.
    plain = client_for(make_settings(f"sqlite:///{missing_dir}", tmp_path))
    empty = plain.get("/healthz", headers={"Authorization": "Bearer "})
    assert empty.get_json()["database"] == "not ok"


def test_healthz_reports_an_unmigrated_database(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'empty.db'}", tmp_path, health_token=HEALTH_TOKEN
    )
    response = client_for(settings).get("/healthz")
    assert response.status_code == 503 and response.get_json()["database"] == "not ok"
    detailed = client_for(settings).get(
        "/healthz", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"}
    )
    assert "run `digest db upgrade`" in detailed.get_json()["database"]


def test_memory_broker_is_not_checked(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, broker_url="memory://")
    response = client_for(settings).get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["broker"] == "not configured"


def test_index_page_says_what_this_is(settings: Settings) -> None:
    client = client_for(settings)
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>Get trending papers in your email inbox!</h1>" in page
    assert "arXiv" in page and "Hugging Face" in page
    assert '<form method="post" action="/subscribe" novalidate>' in page
    assert 'name="email"' in page and 'name="topics"' in page
    assert '<link rel="stylesheet" href="/static/digest.css">' in page
    # The CSP would block inline script and style: every script is a file of ours.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/tz.js" defer>']
    assert "style=" not in page and "<style" not in page
    assert_security_headers(response.headers)
    assert client.get("/static/tz.js").status_code == 200

    css = client.get("/static/digest.css")
    assert css.status_code == 200
    assert css.mimetype == "text/css"
    assert_security_headers(css.headers)

    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert_security_headers(missing.headers)


def test_building_with_a_broken_environment_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_DATABASE_URL"] = "ftp://example.org/db"

    def python(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # Importing reads no environment; building the app (what gunicorn does) does.
    assert python("import digest.web").returncode == 0, "importing must not read DIGEST_*"
    result = python("import digest.web; digest.web.create_app()")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ConfigError" in last_line
    assert "DIGEST_DATABASE_URL: scheme 'ftp' not supported" in last_line


# --- a real gunicorn -------------------------------------------------------------------


def gunicorn_env(tmp_path: Path, **digest: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    # gunicorn keeps a control socket under $HOME: one per test, never shared.
    env["HOME"] = str(tmp_path)
    env.update({f"DIGEST_{k.upper()}": v for k, v in digest.items()})
    return env


@contextlib.contextmanager
def gunicorn(tmp_path: Path, env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """gunicorn serving digest.web:create_app() on ``port`` (default: a free one); yields
    its base URL."""
    port = port or free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            "-",
            "digest.web:create_app()",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # only so a hung start fails instead of hanging
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                urllib.request.urlopen(base + "/", timeout=5).close()
                break
            # TimeoutError: gunicorn listens before its worker has imported the app, so
            # on a loaded machine the first request can wait out a short timeout.
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.integration
@pytest.mark.parametrize("broker", ["up", "down"])
def test_gunicorn_serves_healthz(db_url: str, tmp_path: Path, broker: str) -> None:
    broker_url = REDIS_URL if broker == "up" else closed_port_url("redis")
    env = gunicorn_env(tmp_path, database_url=db_url, broker_url=broker_url)
    with gunicorn(tmp_path, env) as base:
        status, headers, body = fetch(base + "/healthz")
        index_status, index_headers, page = fetch(base + "/")
    report = json.loads(body)
    assert headers["Content-Type"] == "application/json"
    assert report["database"] == "ok"
    if broker == "up":
        assert (status, report) == (200, {"database": "ok", "broker": "ok", "status": "ok"})
    else:
        assert (status, report) == (
            503,
            {"database": "ok", "broker": "not ok", "status": "degraded"},
        )
    assert index_status == 200
    assert b"<h1>Get trending papers in your email inbox!</h1>" in page
    assert_security_headers(index_headers)


@pytest.mark.integration
def test_gunicorn_stops_with_the_config_error(tmp_path: Path) -> None:
    env = gunicorn_env(tmp_path, smtp_url="http://not-smtp.example.org")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "digest.web:create_app()",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # It halts ("Worker failed to boot") instead of respawning the worker forever.
    assert result.returncode != 0
    assert "Worker failed to boot" in result.stderr
    assert "DIGEST_SMTP_URL: scheme 'http' not supported" in result.stderr


@pytest.mark.integration
@requires_chromium
def test_chromium_renders_the_index_page(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "digest.db"
    shutil.copy(sqlite_template, database)
    env = gunicorn_env(tmp_path, database_url=f"sqlite:///{database}")
    with gunicorn(tmp_path, env) as base:
        dom = dump_dom(base + "/", tmp_path)
    assert "<title>Paper Digest: trending papers in your inbox</title>" in dom
    assert "<h1>Get trending papers in your email inbox!</h1>" in dom
    # The browser fetched the stylesheet: the Content-Security-Policy let our own file in.
    access_log = (tmp_path / "gunicorn.log").read_text()
    assert '"GET /static/digest.css HTTP/1.1" 200' in access_log, access_log


@pytest.mark.integration
def test_digest_web_serves_the_app_for_development(tmp_path: Path) -> None:
    """`digest web` on a fresh directory: the SQLite file is made, the pages are served."""
    port = free_port()
    env = gunicorn_env(tmp_path, database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    log = (tmp_path / "web.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("digest")),
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "web.log").read_text()
            try:
                status, _, body = fetch(base + "/healthz")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["database"] == "ok"
        index_status, headers, page = fetch(base + "/")
        assert index_status == 200 and b"Get trending papers" in page
        assert_security_headers(headers)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert f"serving Paper Digest on http://127.0.0.1:{port}/" in (tmp_path / "web.log").read_text()
