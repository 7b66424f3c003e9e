"""What keeps the forms safe: headers, the session key, CSRF, rate limits, the client's IP.

* **Content-Security-Policy.** Pages load only our own files: no inline script or
  style anywhere (the time-zone guess is ``static/tz.js``; every page works without
  it). The one exception is a rendered email shown inside a page (the browser view of
  a digest, the sample on ``/``): emails carry inline styles by necessity, so that
  frame gets :data:`EMAIL_FRAME_CSP`: styles only, no script at all, sandboxed.
* **CSRF** (Flask-WTF) on every form but the RFC 8058 one-click unsubscribe, which a
  mail provider POSTs with no cookie; its signed link is its proof.
* **Rate limits** (Flask-Limiter) per client IP and per address on the forms that
  send email (``/subscribe``, ``/link``): Redis when the broker is Redis (shared by
  every web process), memory otherwise. Counting never depends on whether the address
  is subscribed, so hitting a limit tells a stranger nothing.
* **The session key** signs the CSRF cookie. It derives from ``DIGEST_SECRET_KEY`` or,
  in the embedded default, from the installation's generated key, read from the
  database on the first request that needs it (nothing connects at start-up).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFProtect, generate_csrf
from itsdangerous import URLSafeTimedSerializer
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from digest.config import Settings
from digest.errors import SubscriptionError
from digest.store import db
from digest.subscriptions.tokens import signing_key
from digest.subscriptions.validate import normalise_email

log = logging.getLogger(__name__)

#: Every page. ``frame-src 'self'``: the email frames of the digest view and the sample.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; object-src 'none'; frame-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

#: A rendered email inside one of our pages: inline styles (emails need them), remote
#: images over https (paper thumbnails, if a feed has them), no script, no forms, no
#: plugins, sandboxed; links open in a new tab, outside the sandbox.
EMAIL_FRAME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)

#: Sent with every response; a route may set its own value first.
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Links carry tokens: never send them to another site. Same-origin keeps the Referer
    # that CSRF protection checks on HTTPS form posts.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

#: Per client IP, on each form that sends email.
IP_LIMITS = "20 per minute;200 per day"
#: Per address typed, on each form that sends email: a person retrying is fine, a
#: script mailing someone a thousand times is not (and gets the same 429 whoever it is).
ADDRESS_LIMITS = "5 per hour;20 per day"
#: The endpoints these limits guard.
LIMITED_ENDPOINTS = ("front.subscribe_post", "front.link_post")
#: "Subscribe again" on the manage page mails a confirmation every time (it retires
#: every earlier link); a forwarded manage link must not become a way to flood someone.
RESUBSCRIBE_LIMITS = "5 per hour;10 per day"


def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def email_frame(response: Response) -> Response:
    """Mark ``response`` (a rendered email) as framable by our pages only, sandboxed."""
    response.headers["Content-Security-Policy"] = EMAIL_FRAME_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


# --- the session key -----------------------------------------------------------------------


class LazyKeySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with the key read on first use, not at start-up.

    If the key cannot be read (the database is down), the request gets a null session:
    pages without forms still work, and a form post fails its CSRF check politely.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            try:
                app.secret_key = session_secret(self.settings)
            except SQLAlchemyError as exc:
                log.warning("no session key (the database is unreachable): %s", exc)
                return None
        return super().get_signing_serializer(app)


def session_secret(settings: Settings) -> str:
    """The session/CSRF key: derived from the link-signing key, never equal to it."""
    with db.session_scope(settings) as session:
        key = signing_key(session, settings)
    return hmac.new(key, b"digest-web-session", hashlib.sha256).hexdigest()


def configure_sessions(app: Flask, settings: Settings) -> None:
    app.session_interface = LazyKeySessions(settings)
    if settings.secret_key:
        app.secret_key = hmac.new(
            settings.secret_key.encode(), b"digest-web-session", hashlib.sha256
        ).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="digest_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Over https only when the site is: a cookie a network could read is no secret.
        SESSION_COOKIE_SECURE=urlsplit(settings.base_url).scheme == "https",
        # The form is valid as long as the browser session: a reader who takes an hour
        # over their topics must not lose them to an expired token.
        WTF_CSRF_TIME_LIMIT=None,
    )


def limit_bodies(app: Flask, settings: Settings) -> None:
    """Refuse, with 413 and before anything parses it, a body over
    ``DIGEST_MAX_REQUEST_BYTES`` on every route (Werkzeug parses one of any size
    otherwise: a 300 MB POST took a worker from 53 MB to 934 MB)."""
    limit = settings.max_request_bytes
    app.config.update(MAX_CONTENT_LENGTH=limit, MAX_FORM_MEMORY_SIZE=limit)
    app.before_request(_refuse_large_bodies)


def _refuse_large_bodies() -> None:
    # Declared too large: refused without reading a byte, whatever the route. Sent
    # without a length (chunked): read here, at most the limit (Werkzeug's stream stops
    # there, silently) and kept for the form parser; a body that fills it is refused.
    limit = request.max_content_length
    length = request.content_length
    if limit is None:
        return
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    if length is None and chunked and len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()


def configure_csrf(app: Flask) -> CSRFProtect:
    csrf = CSRFProtect(app)
    # RFC 8058: mail providers POST List-Unsubscribe=One-Click with no cookie, no token.
    csrf.exempt("digest.web.unsubscribe.unsubscribe_post")
    app.jinja_env.globals["csrf_input"] = csrf_input
    return csrf


def csrf_input() -> Markup:
    """The form's hidden CSRF field. Without a session key (no DIGEST_SECRET_KEY and the
    database unreachable) the page still renders; its form then fails politely."""
    try:
        token = generate_csrf()
    except RuntimeError as exc:
        log.warning("no CSRF token for %s: %s", request.path, exc)
        token = ""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


def trust_proxies(app: Flask, settings: Settings) -> None:
    """Believe X-Forwarded-For/-Proto from this many proxies (DIGEST_TRUSTED_PROXIES)."""
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]


# --- rate limits ---------------------------------------------------------------------------


def client_ip() -> str:
    return request.remote_addr or "unknown"


def address_key() -> str:
    """The rate-limit key of the address in the form: hashed, so Redis never holds it."""
    text = request.form.get("email", "")
    try:
        _, key = normalise_email(text)
    except SubscriptionError:
        key = " ".join(text.split()).lower()[:400]
    return "address:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _no_address() -> bool:
    return not request.form.get("email", "").strip()


def limiter_storage(settings: Settings) -> str:
    scheme = urlsplit(settings.broker_url).scheme.lower() if settings.broker_url else ""
    return settings.broker_url if scheme in ("redis", "rediss") else "memory://"


def configure_limits(app: Flask, settings: Settings) -> Limiter:
    """One limiter per app (each with its own memory store, or the shared Redis)."""
    limiter = Limiter(
        key_func=client_ip,
        storage_uri=limiter_storage(settings),
        strategy="moving-window",
        key_prefix="digest-web",
        # A Redis outage must not take the forms down: count in memory meanwhile.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        headers_enabled=False,
    )
    limiter.init_app(app)
    for endpoint in LIMITED_ENDPOINTS:
        view: Callable[..., Any] = app.view_functions[endpoint]
        view = limiter.limit(IP_LIMITS, methods=["POST"], scope="ip")(view)
        view = limiter.limit(
            ADDRESS_LIMITS,
            key_func=address_key,
            methods=["POST"],
            scope="address",
            exempt_when=_no_address,
        )(view)
        app.view_functions[endpoint] = view
    resubscribe: Callable[..., Any] = app.view_functions["subscription.manage_resubscribe"]
    resubscribe = limiter.limit(RESUBSCRIBE_LIMITS, methods=["POST"], scope="resubscribe")(
        resubscribe
    )
    app.view_functions["subscription.manage_resubscribe"] = resubscribe
    return limiter


__all__ = [
    "ADDRESS_LIMITS",
    "CSP",
    "EMAIL_FRAME_CSP",
    "IP_LIMITS",
    "SECURITY_HEADERS",
    "address_key",
    "client_ip",
    "configure_csrf",
    "configure_limits",
    "configure_sessions",
    "email_frame",
    "limit_bodies",
    "security_headers",
    "trust_proxies",
]
