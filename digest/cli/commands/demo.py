"""`digest demo`: the whole pipeline on bundled sample feeds, no network, no servers."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.common import echo_table, get_settings
from digest.cli.demo import MARKER, run_demo


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("digest-demo"),
    show_default=True,
    help="Where the demo's database and outbox go.",
)
def demo(directory: Path) -> None:
    """Run the whole pipeline on bundled sample feeds: no network, no servers.

    Creates a SQLite database in DIR, loads sample arXiv and Hugging Face feeds,
    adds three readers in three time zones, simulates the next 24 hours and
    writes each digest to DIR/outbox as .eml plus an .html preview. Run it again
    and it starts a fresh demo in DIR (only a folder a demo made is cleared).

    The sample papers have real titles and abstracts but invented arXiv ids: their
    Read links search arXiv for the real title instead.

    Example: digest demo --dir /tmp/digest-demo
    """
    again = (directory / MARKER).is_file()
    try:
        deliveries = run_demo(directory, get_settings())
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    if again:
        click.echo(f"{directory} held an earlier demo: starting a fresh one")
    click.echo(f"demo database: {directory / 'digest.db'}")
    echo_table(
        ["reader", "time zone", "topics", "digest", "papers", "sent (local time)"],
        [
            (
                d.email,
                d.timezone,
                "; ".join(d.topics),
                d.status,
                d.papers,
                d.due_local.strftime("%a %d %b %H:%M") if d.due_local else None,
            )
            for d in deliveries
        ],
    )
    click.echo("")
    for d in deliveries:
        if d.html:
            click.echo(f"{d.email}: open {d.html}")
            click.echo(f"{' ' * len(d.email)}  raw  {d.eml}")
    sent = sum(1 for d in deliveries if d.eml)
    outbox = (directory / "outbox").resolve()
    click.echo(
        f"\nthe emails are in {outbox} ({sent} .eml file{'' if sent == 1 else 's'}, each with "
        "an .html preview); `make demo` again starts a fresh demo"
    )


commands = [demo]
