"""`digest subscribers import` and `export`: subscribers in and out as CSV or JSON.

The commands of the `subscribers` group that read and write files; the library
is :mod:`digest.subscriptions.importer` and :mod:`~digest.subscriptions.exporter`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.cli.common import echo_json, open_session, operator_name, plural
from digest.store.models import SubscriberStatus

STATUS_CHOICES = [s.value for s in SubscriberStatus]


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Check every row, store nothing.")
@click.option(
    "--update",
    is_flag=True,
    help="Change subscribers already stored (only the cells a row fills in) instead of "
    "refusing their rows.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_(file: Path, dry_run: bool, update: bool, as_json: bool) -> None:
    """Import subscribers from CSV, as confirmed (you must hold their consent).

    The first line is a header naming the columns, in any order; only `email` is
    required:

    \b
      email,topics,timezone,frequency,weekday,hour,max,status,labels
      ada@example.org,author:bengio; diffusion models,Europe/London,weekly,fri,8,10,,Bengio
      bob@example.org,x\\;y,,,,,,paused,

    \b
      topics     queries separated by `;`; a `;` inside a query is `\\;` (a backslash
                 `\\\\`), except inside a quoted phrase where it needs nothing
      timezone   a city zone such as Europe/Paris (default UTC)
      frequency  daily (default) or weekly; weekday: mon..sun for weekly (default mon)
      hour, max  local send hour 0-23 (default 7), papers per digest 1-100 (default 20)
      status     active (default) or paused; no other status can be imported
      labels     one label per topic, same order and escapes; blank = the query

    Good rows are stored, bad rows are not, and each bad row is reported with its
    line number and reason (a value cannot span lines: an unclosed quote is an
    error of its row). Exits 1 when rows were bad and none could be imported or
    updated. Topics that can never match here (cat:cs.ZZ, a source no feed has, a
    like: paper not stored) are warnings, not errors.

    A row for an address already stored is refused, unless --update: then it
    changes that subscriber, and the report counts the changes per field. Only
    the cells the row fills in change anything (a blank cell or a missing column
    leaves the setting as it is); a filled-in topics cell is the reader's whole
    list (topics not in it are removed, kept ones keep their id); status switches
    between active and paused. The consent record is never touched, and rows for
    unsubscribed or bounced subscribers are refused: they left, and only their own
    fresh consent brings them back.

    Example: digest subscribers import readers.csv --dry-run

    Example: digest subscribers import changes.csv --update
    """
    source: Any = sys.stdin.buffer if str(file) == "-" else file
    detail = f"CSV import of {file.name if source is file else 'stdin'} by {operator_name()}"
    with open_session() as session:
        try:
            report = subs.import_csv(
                session, source, consent_detail=detail, dry_run=dry_run, update=update
            )
        except subs.SubscriptionError as exc:
            raise click.ClickException(f"{file}: {exc}") from exc
    if as_json:
        echo_json(report.as_dict())
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        verb = "would import" if dry_run else "imported"
        line = (
            f"{verb} {report.imported} of {report.rows} rows ({plural(report.topics, 'topic')}); "
        )
        if update:
            line += f"{'would update' if dry_run else 'updated'} {report.updated}"
            if report.changes:
                line += (
                    " (" + ", ".join(f"{k} {n}" for k, n in sorted(report.changes.items())) + ")"
                )
            line += f", {report.unchanged} unchanged; "
        click.echo(line + plural(report.bad, "bad row"))
        for error in report.errors:
            click.echo(str(error))
    if report.bad and not report.imported and not report.updated:
        raise SystemExit(1)


@click.command("export")
@click.option("--json", "as_json", is_flag=True, help="Full records as JSON (labels, consent).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option(
    "--status",
    type=click.Choice(STATUS_CHOICES),
    multiple=True,
    help="Only these statuses (repeatable; default: active and paused).",
)
@click.option("--all", "all_", is_flag=True, help="Every status, unsubscribed included.")
def export(as_json: bool, output: Path | None, status: tuple[str, ...], all_: bool) -> None:
    """Export subscribers as CSV that `digest subscribers import` reads back.

    The columns are those `digest subscribers import` reads (see its --help):
    email, topics, timezone, frequency, weekday, hour, max, status, labels. A
    paused subscriber imports back paused, topics and labels come back as they
    were. By default only active and paused subscribers are exported: importing
    marks everyone confirmed, so rows of any other status (with --status or --all)
    are refused on import. --json has the full records, consent included.

    Example: digest subscribers export -o readers.csv
    """
    statuses = list(SubscriberStatus) if all_ else (status or None)
    with open_session() as session:
        if output is None:
            out = sys.stdout
            _write_export(session, out, as_json, statuses)
            return
        try:
            with output.open("w", encoding="utf-8", newline="") as out:
                count = _write_export(session, out, as_json, statuses)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
        click.echo(f"exported {count} subscriber{'' if count == 1 else 's'} to {output}")


def _write_export(session: Session, out: Any, as_json: bool, statuses: Any) -> int:
    if as_json:
        return subs.export_json(session, out, statuses=statuses)
    return subs.export_csv(session, out, statuses=statuses)
