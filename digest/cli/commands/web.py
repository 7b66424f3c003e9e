"""`digest web`: the web app on a development server (production: gunicorn)."""

from __future__ import annotations

import click

from digest.cli.common import get_settings
from digest.store import db
from digest.web import create_app


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def web(host: str, port: int) -> None:
    """Serve the web pages (subscribe, confirm, manage, digests) for development.

    A single-process development server; in production run gunicorn
    'digest.web:create_app()' behind a reverse proxy (see docker-compose.yml). Links in
    emails point at DIGEST_BASE_URL: set it to this server's address to follow them.

    Example: DIGEST_BASE_URL=http://127.0.0.1:8000 digest web --port 8000
    """
    settings = get_settings()
    db.ensure_schema(settings)  # a fresh SQLite file is migrated, as for every command
    app = create_app(settings)
    click.echo(f"serving {settings.brand} on http://{host}:{port}/ (Ctrl+C stops it)")
    if settings.base_url.rstrip("/") != f"http://{host}:{port}":
        click.echo(f"links in emails point at {settings.base_url} (DIGEST_BASE_URL)")
    app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)


commands = [web]
