"""How the `digest` command hands work to the workers when a broker is configured.

The broker is checked first, with a short timeout: an unreachable one is one line
(`cannot reach the broker at redis://127.0.0.1:1/0: connection refused`) within
seconds, instead of Celery retrying its connection and reporting on its result backend.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import redis

from digest.config import Settings
from digest.errors import BrokerError
from digest.pipeline import RunScope
from workers.tasks import enqueue_sends, run

#: Seconds to wait for the broker to answer a PING before saying it cannot be reached.
REACH_TIMEOUT = 3.0


def safe_broker_url(url: str) -> str:
    """The broker URL with any password hidden."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, "", ""))
    except ValueError:
        return "(an unreadable broker URL)"


def _reason(exc: BaseException, timeout: float) -> str:
    causes = [exc, exc.__cause__, exc.__context__]
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, TimeoutError | socket.timeout | redis.TimeoutError):
            return f"no answer within {timeout:g} s"
    if (
        isinstance(exc, redis.AuthenticationError)
        or "WRONGPASS" in str(exc)
        or "NOAUTH" in str(exc)
    ):
        return "it refused our credentials: check the user and password in DIGEST_BROKER_URL"
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if isinstance(exc, redis.exceptions.InvalidResponse | redis.exceptions.ResponseError):
        return f"it does not answer as a Redis server would ({first[:120]})"
    return first


def check_broker(settings: Settings, timeout: float = REACH_TIMEOUT) -> None:
    """Raise :class:`BrokerError` (one line) unless the broker answers a PING in time."""
    url = settings.broker_url
    if urlsplit(url).scheme.lower() not in ("redis", "rediss"):
        return  # memory:// (tests) has nothing to reach
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=None
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise BrokerError(
            f"cannot reach the broker at {safe_broker_url(url)}: {_reason(exc, timeout)}"
        ) from None
    finally:
        client.close()


def dispatch_run(
    settings: Settings, now: datetime | None, fetch: bool, wait_for_plan: bool, timeout: float
) -> RunScope | None:
    """Enqueue one run; with ``wait_for_plan``, return the scope of the digests it covers
    (None if none were due)."""
    check_broker(settings)
    result = run.apply_async(args=[now.isoformat() if now else None, fetch])
    if not wait_for_plan:
        return None
    scope = result.get(timeout=timeout)
    return RunScope.from_dict(scope) if scope else None


def wake_senders(settings: Settings, ids: Sequence[int]) -> None:
    """Wake the workers for these planned digests (e.g. a resend) now, not at the next sweep."""
    check_broker(settings)
    enqueue_sends(list(ids), settings.batch_size)
