"""`digest subscribers show`: one subscriber, everything we hold and what happened."""

from __future__ import annotations

from typing import Any

import click

from digest import subscriptions as subs
from digest.cli.common import echo_json, echo_table, find_subscriber, open_session, schedule_line
from digest.pipeline.stats import suppression_cause
from digest.store import suppression
from digest.store.bounces import recent_bounces
from digest.store.models import Subscriber


@click.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(email: str, as_json: bool) -> None:
    """Show one subscriber: status, settings, topics, consent record, last digests,
    bounces and complaints, and why the address is suppressed if it is.

    Example: digest subscribers show ada@example.org
    """
    with open_session() as session:
        subscriber = find_subscriber(session, email)
        record = subs.subscriber_record(subscriber)
        digests = subs.recent_digests(session, subscriber)
        record["digests"] = [
            {
                "period": d.period,
                "status": d.status.value,
                "planned_at": d.planned_at,
                "sent_at": d.sent_at,
                "papers": len(d.paper_ids or []),
                "attempts": d.attempts,
                "error": d.error,
            }
            for d in digests
        ]
        suppressed = suppression.get_suppression(session, subscriber.email)
        record["suppression"] = suppressed and {
            "cause": suppression_cause(suppressed.reason),
            "reason": suppressed.reason,
            "smtp_code": suppressed.smtp_code,
            "at": suppressed.created_at,
        }
        bounces = recent_bounces(session, subscriber.email, limit=10)
        record["bounces"] = [
            {
                "at": b.received_at,
                "kind": b.kind,
                "status": b.status,
                "digest_id": b.digest_id,
                "points": b.points,
                "suppressed": b.suppressed,
                "diagnostic": b.diagnostic,
            }
            for b in bounces
        ]
        if as_json:
            echo_json(record)
            return
        _print_record(record, subscriber)


def _print_record(record: dict[str, Any], subscriber: Subscriber) -> None:
    consent = record["consent"]
    lines = [
        ("email", record["email"]),
        ("status", record["status"]),
        ("schedule", schedule_line(subscriber)),
        ("max papers", record["max"]),
        ("created", record["created_at"]),
        ("confirmed", record["confirmed_at"]),
        ("unsubscribed", record["unsubscribed_at"]),
        ("consent", f"{consent['source']} at {_when(consent['at'])}"),
        ("consent from", consent["ip"]),
        ("consent detail", consent["detail"]),
    ]
    if record["suppression"]:
        found = record["suppression"]
        lines.append(("suppressed", f"{found['cause']}: {found['reason']}"))
    for name, value in lines:
        if value is not None:
            click.echo(f"{name + ':':<16}{_when(value)}")
    click.echo("")
    if record["topics"]:
        echo_table(
            ["topic", "label", "query"],
            [(t["id"], t["label"], t["query"]) for t in record["topics"]],
        )
    else:
        click.echo("topics: none (gets the day's trending papers)")
    if record["bounces"]:
        click.echo("")
        echo_table(
            ["bounce", "kind", "status", "digest", "points", "suppressed", "diagnostic"],
            [
                (
                    b["at"],
                    b["kind"],
                    b["status"],
                    b["digest_id"],
                    f"{b['points']:g}",
                    "yes" if b["suppressed"] else "",
                    b["diagnostic"],
                )
                for b in record["bounces"]
            ],
        )
    click.echo("")
    echo_table(
        ["digest", "status", "sent", "papers", "error"],
        [
            (d["period"], d["status"], d["sent_at"], d["papers"], d["error"])
            for d in record["digests"]
        ],
        empty="no digests yet",
    )


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)
