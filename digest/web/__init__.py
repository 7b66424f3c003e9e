"""The small public web app (Flask): ``gunicorn 'digest.web:create_app()'``."""

from digest.web.app import SECURITY_HEADERS, create_app

__all__ = ["SECURITY_HEADERS", "create_app"]
