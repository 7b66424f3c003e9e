"""The web app factory: ``gunicorn 'digest.web:create_app()'``.

Nothing is read from the environment at import: :func:`create_app` takes the
settings (or reads them when called), so tests and servers build as many apps
as they like. Nothing connects at start-up either: a missing database shows in
``/healthz`` instead of a crash loop, and the session key is read on first use.

Pages live one module per kind: ``subscribe`` (``/`` and ``POST /subscribe``),
``newlink`` (``/link``), ``confirm``, ``manage`` and ``mydata`` (download, delete),
``unsubscribe`` (and per-topic stop), ``view`` (a digest in the browser), ``site``
(``/healthz``); their templates are in ``templates/web/``, shipped inside the wheel as
``digest.templates`` and found through the import system, never through a path
relative to the checkout. What keeps the forms safe is :mod:`digest.web.security`.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from flask import Blueprint, Flask
from jinja2 import ChoiceLoader, PackageLoader
from markupsafe import Markup

from digest import __version__
from digest.config import Settings
from digest.core.text import strip_control
from digest.web import (  # noqa: F401 - they add their routes
    confirm,
    errors,
    manage,
    mydata,
    newlink,
    subscribe,
    unsubscribe,
    view,
)
from digest.web.pages import front, subscription
from digest.web.security import (
    SECURITY_HEADERS,
    configure_csrf,
    configure_limits,
    configure_sessions,
    limit_bodies,
    security_headers,
    trust_proxies,
)
from digest.web.site import site

TEMPLATE_PACKAGE = "digest.templates"


def blueprints() -> list[Blueprint]:
    """Every blueprint the app serves; a new page kind adds its module's routes to one."""
    return [site, front, subscription]


def display_safe(value: Any) -> Any:
    """Every value a page shows, through the one sanitiser's character rule.

    What is stored is cleaned when it is stored; this also covers rows stored before a
    rule existed (a topic label with a bidirectional override) and anything a page
    builds from them. Line breaks stay (a textarea re-shows what was typed).
    """
    if isinstance(value, Markup):
        return Markup(strip_control(str(value)))
    if isinstance(value, str):
        return strip_control(value)
    return value


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app for ``settings`` (default: read from the environment)."""
    settings = settings or Settings.from_env()
    web_templates = files(TEMPLATE_PACKAGE) / "web"
    app = Flask(
        __name__,
        static_folder=str(web_templates / "static"),
        static_url_path="/static",
        template_folder=None,
    )
    # Before the first use of app.jinja_env, which reads these options once.
    app.jinja_options = {**app.jinja_options, "finalize": display_safe}
    app.jinja_loader = ChoiceLoader([PackageLoader(TEMPLATE_PACKAGE, "web")])
    app.extensions["digest.settings"] = settings
    configure_sessions(app, settings)
    limit_bodies(app, settings)
    trust_proxies(app, settings)
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
    configure_csrf(app)
    configure_limits(app, settings)
    errors.register(app)
    app.after_request(security_headers)
    app.context_processor(
        lambda: {
            "version": __version__,
            "brand": settings.brand,
            "postal_address": settings.postal_address,
        }
    )
    return app


__all__ = ["SECURITY_HEADERS", "create_app"]
