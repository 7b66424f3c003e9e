"""Signed links: confirm, manage and one-click unsubscribe, each for one purpose.

Links are HMAC-SHA256 over the purpose, the subscriber id, its ``token_version``, the
issue time *and the subscriber's own random* ``link_secret``, keyed by
``settings.secret_key`` or, when that is empty (the embedded default), by a random key
generated once and kept in ``app_meta`` so links survive restarts.

A link names exactly one person, forever: the id in it only says which row to load,
and the MAC verifies only against that row's secret, which no other row ever has. A
deleted subscriber's id handed out again, or a database restored from a backup (same
key, a re-created subscriber), cannot make an old link act on somebody else.

Bumping ``token_version`` (:func:`rotate_tokens`) invalidates every confirm and manage
link sent so far; unsubscribe links stay valid for that same subscriber. Unsubscribe
links issued before migration 0008 carry the older MAC (no secret); they still work
for the row they were issued for: one created before the link and before 0008.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from digest.config import Settings
from digest.core.clock import utcnow
from digest.errors import TokenError
from digest.store.db import session_scope
from digest.store.dialect import insert_ignore
from digest.store.models import AppMeta, Subscriber

# "stop": remove one topic (the link under each topic of a digest); "view": read one's
# digests in the browser. Their URLs and ages are subscriptions.links.
PURPOSES = ("confirm", "manage", "unsubscribe", "stop", "view")
#: A confirmation link older than this is refused (the reader asks for a new one).
CONFIRM_MAX_AGE = timedelta(hours=72)
SECRET_KEY_META = "secret_key"
#: When migration 0008 bound links to per-subscriber secrets (epoch seconds, app_meta).
LINKS_BOUND_AT_META = "links_bound_at"
_INVALID = "this link is not valid: it may have been cut short or changed"
# The MAC cannot tell a changed link from one whose subscriber is gone (or was never
# the row that holds its id now): one sentence for all three.
_NOT_THEIRS = (
    "this link is not valid: it may have been cut short or changed, "
    "or the subscription it was sent for no longer exists"
)
# Links are printed in emails years later: allow a little clock skew, not the future.
_CLOCK_SKEW = 300


def signing_key(session: Session, settings: Settings) -> bytes:
    """``settings.secret_key``, or the installation's generated key from ``app_meta``.

    Cached on the session: a batch rendering thousands of unsubscribe links reads
    the table once. The key is written in the caller's transaction with ON
    CONFLICT DO NOTHING and read back, so two processes starting at once agree on
    one key. (Set DIGEST_SECRET_KEY in production: it survives a database restore.)
    """
    if settings.secret_key:
        return settings.secret_key.encode()
    cached = session.info.get("digest_signing_key")
    if cached is not None:
        return cached
    stored = session.get(AppMeta, SECRET_KEY_META)
    if stored is None:
        session.execute(
            insert_ignore(session, AppMeta.__table__, ["key"]).values(
                key=SECRET_KEY_META, value=secrets.token_urlsafe(48)
            )
        )
        stored = session.get(AppMeta, SECRET_KEY_META, populate_existing=True)
        assert stored is not None
    key = stored.value.encode()
    session.info["digest_signing_key"] = key
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(key: bytes, purpose: str, body: str, link_secret: str) -> str:
    message = f"digest-link|{purpose}|{body}|{link_secret}"
    return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest()[:18])


def _legacy_mac(key: bytes, purpose: str, body: str) -> str:
    # The MAC of links made before migration 0008 (no per-subscriber secret).
    digest = hmac.new(key, f"digest-link|{purpose}|{body}".encode(), hashlib.sha256).digest()
    return _b64(digest[:18])


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; use one of {PURPOSES}")


T = TypeVar("T")


def _with_session(settings: Settings, session: Session | None, fn: Callable[[Session], T]) -> T:
    if session is not None:
        return fn(session)
    with session_scope(settings) as own:
        return fn(own)


def make_token(
    settings: Settings,
    subscriber: Subscriber,
    purpose: str,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    """A URL-safe signed token ``<id>.<version>.<issued>.<mac>`` for one purpose.

    The session defaults to the subscriber's own (or a short one of our own when the
    subscriber is detached); it is needed only when the key lives in ``app_meta``.
    """
    _check_purpose(purpose)
    if subscriber.id is None or not subscriber.link_secret:
        raise ValueError("flush the subscriber before making a token for it")
    issued = int((now or utcnow()).timestamp())
    body = f"{subscriber.id}.{subscriber.token_version}.{issued}"
    key = _with_session(
        settings, session or object_session(subscriber), lambda s: signing_key(s, settings)
    )
    return f"{body}.{_mac(key, purpose, body, subscriber.link_secret)}"


_TOKEN = re.compile(r"^(\d{1,18})\.(\d{1,9})\.(\d{1,12})\.([A-Za-z0-9_-]{24})$")


def read_token(
    settings: Settings,
    token: str,
    purpose: str,
    max_age: timedelta | float | None = None,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> int:
    """The subscriber id a token was made for, or :class:`TokenError`.

    Checks, in order: shape, signature against the named row's own secret (constant
    time; a token for another purpose, for a deleted row or for an earlier holder of
    the same id fails here, alike), age (``max_age`` in seconds or a timedelta; None =
    no limit, right for unsubscribe links, which must work forever) and that its
    ``token_version`` has not moved on (except for unsubscribe links, which stay
    valid for good).
    """
    _check_purpose(purpose)
    match = _TOKEN.match((token or "").strip())
    if not match:
        raise TokenError(_INVALID)
    sub_id, version, issued = (int(g) for g in match.groups()[:3])
    body = ".".join(match.groups()[:3])

    def check(s: Session) -> int:
        key = signing_key(s, settings)
        row = s.execute(
            select(Subscriber.token_version, Subscriber.link_secret, Subscriber.created_at).where(
                Subscriber.id == sub_id
            )
        ).first()
        # A missing row and a forged or foreign link fail alike: the MAC is only
        # checkable against the row's own secret.
        given = match.group(4)
        if row is None or not (
            hmac.compare_digest(_mac(key, purpose, body, row[1]), given)
            or _legacy_unsubscribe(s, key, purpose, body, given, row[2])
        ):
            raise TokenError(_NOT_THEIRS)
        current = (now or utcnow()).timestamp()
        if issued > current + _CLOCK_SKEW:
            raise TokenError("this link is not valid: it was issued in the future")
        if max_age is not None:
            limit = max_age.total_seconds() if isinstance(max_age, timedelta) else max_age
            if current - issued > limit:
                raise TokenError("this link has expired: ask for a new one", "expired")
        # Rotating tokens retires confirm and manage links, never the way out: an
        # unsubscribe link in any email we ever sent must keep working (RFC 8058).
        if row[0] != version and purpose != "unsubscribe":
            raise TokenError(
                "this link is no longer valid: a newer one has been sent", "superseded"
            )
        return sub_id

    return _with_session(settings, session, check)


def _legacy_unsubscribe(
    session: Session, key: bytes, purpose: str, body: str, given: str, created_at: datetime
) -> bool:
    """An unsubscribe link from before migration 0008, for the row it was issued to.

    Leaving must work from any email ever sent, including those sent before links were
    bound to a secret. Such a link is accepted only if it was issued before 0008 ran
    and after this row was created: a row created later (a reused id) is not the
    person it was sent to.
    """
    if purpose != "unsubscribe":
        return False
    if not hmac.compare_digest(_legacy_mac(key, purpose, body), given):
        return False
    bound = session.get(AppMeta, LINKS_BOUND_AT_META)
    if bound is None or not bound.value.isdigit():
        return False
    issued = int(body.rsplit(".", 1)[1])
    return issued < int(bound.value) and created_at.timestamp() <= issued


def _url(
    settings: Settings,
    kind: str,
    subscriber: Subscriber,
    session: Session | None,
    now: datetime | None,
) -> str:
    token = make_token(settings, subscriber, kind, session=session, now=now)
    return f"{settings.base_url.rstrip('/')}/{kind}/{token}"


def confirm_url(
    settings: Settings,
    subscriber: Subscriber,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    return _url(settings, "confirm", subscriber, session, now)


def manage_url(
    settings: Settings,
    subscriber: Subscriber,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    return _url(settings, "manage", subscriber, session, now)


def unsubscribe_url(
    settings: Settings,
    subscriber: Subscriber,
    *,
    session: Session | None = None,
    now: datetime | None = None,
) -> str:
    """The one-click unsubscribe link (RFC 8058 POST target and the footer link)."""
    return _url(settings, "unsubscribe", subscriber, session, now)


def rotate_tokens(session: Session, subscriber: Subscriber) -> None:
    """Invalidate every confirm and manage link sent to this subscriber so far.

    Their unsubscribe links keep working (and keep naming only them)."""
    subscriber.token_version += 1
    session.flush()
