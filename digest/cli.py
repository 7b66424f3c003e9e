"""The `digest` admin command.

A thin layer over the library: each command parses its arguments, calls one
function of ``digest.*`` and prints the outcome. User errors are one line and a
non-zero exit (``click.ClickException``), never a traceback. Commands live in
``digest/commands/``, one module per noun.
"""

from __future__ import annotations

import sys

import click

from digest import __version__
from digest.commands import db as db_commands
from digest.commands import email, feeds, papers, run, subscribers, topics
from digest.config import ConfigError, Settings


class DigestGroup(click.Group):
    """Turns configuration and database errors into one clear line."""

    def invoke(self, ctx: click.Context) -> object:
        from digest.db import DatabaseError

        try:
            return super().invoke(ctx)
        except (ConfigError, DatabaseError) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Research-paper email digests: feeds in, one good email per reader out.

    Configuration comes from DIGEST_* environment variables (see README.md);
    with none set, digest uses ./digest.db and writes emails to ./outbox.
    """
    ctx.obj = _LazySettings()


class _LazySettings:
    """Reads settings on first use, so `digest --help` works with a broken environment."""

    _settings: Settings | None = None

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings


for module in (db_commands, feeds, papers, subscribers, topics, email, run):
    # getattr evaluates its default eagerly: a module with only `commands` has no `group`.
    for command in getattr(module, "commands", None) or [module.group]:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="digest")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
