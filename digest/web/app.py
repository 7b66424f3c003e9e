"""The web app factory: ``gunicorn 'digest.web:create_app()'``.

Nothing is read from the environment at import: :func:`create_app` takes the
settings (or reads them when called), so tests and servers build as many apps
as they like. Nothing connects at start-up either: a missing database shows in
``/healthz`` instead of a crash loop.

Pages live one module per kind (``site``, ``confirm``, ``manage``,
``unsubscribe``); their templates are in ``templates/web/``, shipped inside the
wheel as ``digest.templates`` and found through the import system, never
through a path relative to the checkout.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Flask, Response
from jinja2 import ChoiceLoader, PackageLoader

from digest import __version__
from digest.config import Settings
from digest.web import confirm, manage, unsubscribe  # noqa: F401 - they add their routes
from digest.web.pages import subscription
from digest.web.site import site

TEMPLATE_PACKAGE = "digest.templates"

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


def blueprints() -> list[Blueprint]:
    """Every blueprint the app serves; a new page kind adds its module's here."""
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


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
