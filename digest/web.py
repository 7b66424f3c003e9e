"""The small public web app, served by gunicorn as ``digest.web:app``.

For now: ``/`` (what this server is) and ``/healthz`` (can we reach the database
and the broker). The public subscription pages arrive as blueprints: add one to
:func:`blueprints` and its templates to ``templates/web/``.

Templates and static files ship inside the wheel as the package
``digest.templates`` (pyproject's package-dir maps the repository's
``templates/`` there), so they are found through the import system, never
through a path relative to the checkout.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template
from jinja2 import ChoiceLoader, PackageLoader
from sqlalchemy import text

from digest import __version__
from digest.config import ConfigError, Settings
from digest.db import current_revision, engine_for, head_revision

log = logging.getLogger(__name__)

TEMPLATE_PACKAGE = "digest.templates"
#: Seconds a health check waits for Redis; a load balancer probe must not hang.
BROKER_TIMEOUT = 2.0

#: Sent with every response; a blueprint may set its own value first.
SECURITY_HEADERS = {
    # No inline script or style anywhere: the stylesheet is a file under /static.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Unsubscribe and confirmation links carry tokens: never leak them to other sites.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

site = Blueprint("site", __name__)


def blueprints() -> list[Blueprint]:
    """Every blueprint the app serves; later pages add theirs here."""
    from digest.webviews import subscription

    return [site, subscription]


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app for ``settings`` (default: read from the environment).

    Nothing connects at start-up: a missing database shows in ``/healthz``
    instead of a crash loop.
    """
    settings = settings or Settings.from_env()
    web_templates = files(TEMPLATE_PACKAGE) / "web"
    app = Flask(
        __name__,
        static_folder=str(web_templates / "static"),
        static_url_path="/static",
        template_folder=None,
    )
    app.jinja_loader = ChoiceLoader([PackageLoader(TEMPLATE_PACKAGE, "web")])
    if settings.secret_key:
        app.config["SECRET_KEY"] = settings.secret_key
    app.extensions["digest.settings"] = settings
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"version": __version__})
    return app


def app_settings() -> Settings:
    """The settings of the app serving the current request."""
    return current_app.extensions["digest.settings"]


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@site.get("/")
def index() -> str:
    return render_template("index.html")


@site.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when every configured dependency answers, 503 otherwise (for probes)."""
    settings = app_settings()
    report = {
        "database": check_database(settings.database_url),
        "broker": check_broker(settings.broker_url),
    }
    healthy = report["database"] == "ok" and report["broker"] in ("ok", "not configured")
    report["status"] = "ok" if healthy else "degraded"
    response = jsonify(report)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if healthy else 503


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
        return (
            f"error: schema at {current or 'nothing'}, code needs {head}: run `digest db upgrade`"
        )
    return "ok"


def check_broker(url: str) -> str:
    """PING the Redis broker with a short timeout; no Celery needed for that."""
    if not url:
        return "not configured"
    if urlsplit(url).scheme.lower() not in ("redis", "rediss"):
        # memory:// lives inside each process: there is nothing shared to reach.
        return "not configured"
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

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


_head: str | None = None


def _head_revision() -> str:
    # Reading the migration scripts costs milliseconds; probes come every few seconds.
    global _head
    if _head is None:
        _head = head_revision()
    return _head


def _describe(exc: BaseException) -> str:
    """One short line: the driver's own message, without SQL or SQLAlchemy's help links."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    message = lines[0] if lines else ""
    text_ = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    return text_ if len(text_) <= 200 else text_[:197] + "..."


def _app_from_environment() -> Flask:
    try:
        return create_app(Settings.from_env())
    except ConfigError as exc:
        # gunicorn prints this and stops booting workers instead of looping.
        raise ConfigError(f"digest.web cannot start: {exc}") from None


app = _app_from_environment()
