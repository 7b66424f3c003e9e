"""The site's own endpoints: ``/healthz`` (for probes) and ``/robots.txt``.

``/healthz`` is public (load balancers and compose probe it without credentials), so it
says only ``ok`` / ``not ok`` per dependency: the driver's error text names hosts,
ports, users and file paths. What failed, and why, goes to the log; with
``Authorization: Bearer <DIGEST_HEALTH_TOKEN>`` the answer carries it too.

The front page (``/``, the subscribe form) is :mod:`digest.web.subscribe`.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Response, jsonify, make_response, request
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import text

from digest.core import caches
from digest.store.db import current_revision, engine_for, head_revision
from digest.web.pages import app_settings

log = logging.getLogger(__name__)

#: Seconds a health check waits for Redis; a load balancer probe must not hang.
BROKER_TIMEOUT = 2.0

site = Blueprint("site", __name__)


@site.get("/robots.txt")
def robots() -> Response:
    # Every page but the front one is behind a personal link: keep crawlers on "/".
    response = make_response("User-agent: *\nAllow: /$\nDisallow: /\n", 200)
    response.mimetype = "text/plain"
    return response


@site.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when every configured dependency answers, 503 otherwise (for probes)."""
    settings = app_settings()
    report = {
        "database": check_database(settings.database_url),
        "broker": check_broker(settings.broker_url),
    }
    healthy = report["database"] == "ok" and report["broker"] in ("ok", "not configured")
    if not _may_see_details(settings.health_token):
        report = {name: _public(state) for name, state in report.items()}
    report["status"] = "ok" if healthy else "degraded"
    response = jsonify(report)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if healthy else 503


def _public(state: str) -> str:
    return state if state in ("ok", "not configured") else "not ok"


def _may_see_details(token: str) -> bool:
    """True for a request carrying ``Authorization: Bearer <token>`` (a token is set)."""
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def check_database(url: str) -> str:
    """``"ok"`` when the database answers and its schema is what this code needs."""
    try:
        with engine_for(url).connect() as connection:
            connection.execute(text("SELECT 1"))
        # A reachable but unmigrated database would fail every real request.
        current, head = current_revision(url), _head_revision()
    except Exception as exc:
        log.warning("health check: database unreachable: %s", exc)
        return f"error: {_describe(exc)}"
    if current != head:
        problem = f"schema at {current or 'nothing'}, code needs {head}: run `digest db upgrade`"
        log.warning("health check: database %s", problem)
        return f"error: {problem}"
    return "ok"


def check_broker(url: str) -> str:
    """PING the Redis broker with a short timeout; no Celery needed for that."""
    if not url:
        return "not configured"
    if urlsplit(url).scheme.lower() not in ("redis", "rediss"):
        # memory:// lives inside each process: there is nothing shared to reach.
        return "not configured"
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=BROKER_TIMEOUT,
        socket_timeout=BROKER_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except Exception as exc:
        log.warning("health check: broker unreachable: %s", exc)
        return f"error: {_describe(exc)}"
    finally:
        client.close()
    return "ok"


@caches.memoize(maxsize=1)
def _head_revision() -> str:
    # Reading the migration scripts costs milliseconds; probes come every few seconds.
    return head_revision()


def _describe(exc: BaseException) -> str:
    """One short line: the driver's own message, without SQL or SQLAlchemy's help links."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    message = lines[0] if lines else ""
    text_ = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    return text_ if len(text_) <= 200 else text_[:197] + "..."
