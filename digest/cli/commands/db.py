"""`digest db`: schema migrations."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from digest.cli.common import get_settings
from digest.store import db


@click.group("db")
def group() -> None:
    """Database schema commands."""


@group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Apply schema migrations.

    Example: DIGEST_DATABASE_URL=postgresql://digest@db/digest digest db upgrade
    """
    settings = get_settings()
    try:
        db.upgrade(settings.database_url, revision)
    except SQLAlchemyError:
        raise  # the CLI group says it in one line naming the database, without SQL
    except Exception as exc:  # Alembic's own: an unknown revision, a broken chain
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"migration failed: {first}") from exc
    click.echo(f"database at {db.current_revision(settings.database_url)}")


@group.command("current")
def current() -> None:
    """Print the schema revision of the configured database."""
    settings = get_settings()
    click.echo(db.current_revision(settings.database_url) or "(empty)")


commands = [group]
