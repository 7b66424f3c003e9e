"""`digest stats`: the health of the daily run at a glance."""

from __future__ import annotations

import click

from digest.cli.common import echo_json, echo_table, get_settings
from digest.pipeline.stats import collect


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def stats(as_json: bool) -> None:
    """Where mail goes, readers, the next digests, digests by status (today, last 7
    days), feeds, failures, suppressions, mail in, and warnings (e.g. readers who can
    get nothing).

    Suppressions are counted by cause (hard bounce, soft bounces, complaint, or
    refused when sending); bounces, complaints and the mail `digest inbound`
    received are for the last 7 days.

    Example: digest stats --json
    """
    report = collect(get_settings())
    if as_json:
        echo_json(report)
        return
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"mail: {report['mail']}")
    readers = report["readers"]
    click.echo(
        "readers: " + (", ".join(f"{n} {s}" for s, n in sorted(readers.items())) or "none yet")
    )
    click.echo(report["next"]["line"])
    click.echo("\ndigests")
    echo_table(
        ["status", "today", "last 7 days"],
        [
            (s, report["digests"]["today"].get(s, 0), n)
            for s, n in sorted(report["digests"]["week"].items())
        ],
        empty="  none in the last 7 days",
    )
    click.echo("\nfeeds")
    echo_table(
        ["id", "name", "last fetch", "status", "new", "error"],
        [
            (
                f["id"],
                f["name"],
                f["last_fetched_at"],
                f["last_status"],
                f["last_new"],
                f["last_error"],
            )
            for f in report["feeds"]
        ],
        empty="  no feeds",
    )
    click.echo("\nrecent failures")
    echo_table(
        ["digest", "email", "status", "when", "error"],
        [
            (f["id"], f["email"], f["status"], f["finished_at"], f["error"])
            for f in report["failures"]
        ],
        empty="  none",
    )
    causes = ", ".join(f"{n} {c}" for c, n in sorted(report["suppressed_by_cause"].items()))
    click.echo(
        f"\nsuppressed addresses: {report['suppressed']}" + (f" ({causes})" if causes else "")
    )
    bounces = ", ".join(f"{n} {k}" for k, n in sorted(report["bounces_week"].items()))
    click.echo(f"bounces, last 7 days: {bounces or 'none'}")
    click.echo(f"complaints, last 7 days: {report['complaints_week']}")
    inbound = ", ".join(f"{n} {k}" for k, n in sorted(report["inbound_week"].items()))
    click.echo(f"mail received, last 7 days: {inbound or 'none'}")


commands = [stats]
