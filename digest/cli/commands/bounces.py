"""`digest bounces list`: bounces and complaints received by `digest inbound`."""

from __future__ import annotations

import click

from digest.cli.common import echo_json, echo_table, open_session
from digest.store.bounces import recent_bounces

KINDS = ["hard", "soft", "delayed", "complaint", "not-spam"]


@click.group("bounces")
def group() -> None:
    """Bounces (DSNs and other formats) and complaints (ARF) that came back.

    Example: digest bounces list --email ada@example.org
    """


@group.command("list")
@click.option("--email", help="Only this address.")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="Only these kinds (repeatable).",
)
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(email: str | None, kinds: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List bounces and complaints, newest first, with the digest each names.

    A hard bounce (5.x.x) suppresses the address at once; soft ones add to a score
    (the points column) and suppress it at DIGEST_BOUNCE_SCORE_THRESHOLD; a
    complaint unsubscribes and suppresses. `suppressed` says which one did it.

    Example: digest bounces list --kind hard --kind complaint --json
    """
    with open_session() as session:
        rows = recent_bounces(session, email, kinds, limit)
        records = [
            {
                "id": b.id,
                "received_at": b.received_at,
                "email": b.email_key,
                "kind": b.kind,
                "status": b.status,
                "action": b.action,
                "digest_id": b.digest_id,
                "points": b.points,
                "suppressed": b.suppressed,
                "detector": b.detector,
                "diagnostic": b.diagnostic,
            }
            for b in rows
        ]
    if as_json:
        echo_json(records)
        return
    echo_table(
        ["when", "email", "kind", "status", "digest", "points", "suppressed", "diagnostic"],
        [
            (
                r["received_at"],
                r["email"],
                r["kind"],
                r["status"],
                r["digest_id"],
                f"{r['points']:g}",
                "yes" if r["suppressed"] else "",
                r["diagnostic"],
            )
            for r in records
        ],
        empty="no bounces or complaints" + (f" for {email}" if email else ""),
    )


commands = [group]
