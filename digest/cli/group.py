"""The `digest` admin command: the click group, and where errors become one line.

A thin layer over the library: each command parses its arguments, calls one
function of ``digest.*`` and prints the outcome. Every :class:`DigestError` a
command lets through is printed here as one line with a non-zero exit; a database
failure of any kind becomes one line naming the database and what to do, never a
traceback with SQL and parameters. Commands live in ``digest/cli/commands/``, one
module per noun.
"""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from digest import __version__
from digest.cli.commands import (
    bounces,
    demo,
    digests,
    feeds,
    inbound,
    papers,
    preview,
    run,
    stats,
    subscribers,
    topics,
    web,
)
from digest.cli.commands import db as db_commands
from digest.config import Settings
from digest.errors import DigestError
from digest.match import semantic
from digest.store.db import database_error


class DigestGroup(click.Group):
    """Turns every error meant for a user into one clear line."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            raise click.ClickException(str(exc)) from exc
        except SQLAlchemyError as exc:
            peek = getattr(ctx.obj, "peek", None)
            settings = peek() if peek else None
            url = settings.database_url if settings else Settings().database_url
            raise click.ClickException(str(database_error(exc, url))) from exc


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Research-paper email digests: feeds in, one good email per reader out.

    Configuration comes from DIGEST_* environment variables (see README.md);
    with none set, digest uses ./digest.db and writes emails to ./outbox.
    """
    ctx.obj = _LazySettings()
    # The model takes seconds to load, once: one line of ours, not the libraries' bars.
    semantic.set_loading_notice(lambda: click.echo("loading the semantic model (once)…", err=True))


class _LazySettings:
    """Reads settings on first use, so `digest --help` works with a broken environment."""

    _settings: Settings | None = None

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def peek(self) -> Settings | None:
        return self._settings


for module in (
    db_commands,
    feeds,
    papers,
    subscribers,
    topics,
    digests,
    preview,
    run,
    stats,
    bounces,
    inbound,
    demo,
    web,
):
    for command in module.commands:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="digest")
