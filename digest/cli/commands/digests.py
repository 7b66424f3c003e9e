"""`digest digests …`: a reader's history (list, show) and an admin's resend."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from digest import pipeline
from digest import subscriptions as subs
from digest.cli.commands.run import check_workers_reachable, hand_to_workers
from digest.cli.common import (
    ROW_ID,
    Moment,
    echo_json,
    echo_table,
    get_settings,
    open_session,
    operator_name,
)
from digest.pipeline import history
from digest.store.models import DigestStatus

STATUS_CHOICES = [s.value for s in DigestStatus]


@click.group("digests")
def group() -> None:
    """The ledger of digests: what went to whom, when, and with what answer.

    Example: digest digests list ada@example.org --status failed
    """


@group.command("list")
@click.argument("email", required=False)
@click.option(
    "--status",
    type=click.Choice(STATUS_CHOICES),
    multiple=True,
    help="Only these statuses (repeatable).",
)
@click.option(
    "--since", type=Moment(), help="Only digests planned at or after this date/time (ISO 8601)."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(
    email: str | None, status: tuple[str, ...], since: datetime | None, limit: int, as_json: bool
) -> None:
    """List digests, newest first: everyone's, or one reader's (EMAIL).

    Example: digest digests list --status failed --status unknown --since 2026-11-28
    """
    with open_session() as session:
        subscriber = None
        if email is not None:
            subscriber = subs.get_subscriber(session, email)
            if subscriber is None:
                raise click.ClickException(f"no subscriber with the address {email.strip()}")
        rows = history.list_digests(
            session, subscriber, [DigestStatus(s) for s in status], since, limit
        )
        if as_json:
            echo_json([r.as_dict() for r in rows])
            return
        echo_table(
            ["id", "email", "period", "status", "sent", "papers", "attempts", "note"],
            [
                (
                    r.id,
                    r.email,
                    r.period,
                    r.status,
                    r.sent_at,
                    r.papers,
                    r.attempts,
                    _note(r),
                )
                for r in rows
            ],
            empty="no digests"
            + (f" for {subscriber.email}" if subscriber else "")
            + (f" with status {', '.join(status)}" if status else "")
            + (f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""),
        )
        if len(rows) == limit:
            click.echo(f"(the newest {limit}; --limit shows more)")


def _note(row: history.DigestRow) -> str:
    parts = []
    if row.resends:
        parts.append(f"resent {row.resends}x")
    if row.error:
        parts.append(row.error)
    return "; ".join(parts)


@group.command("show")
@click.argument("digest_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(digest_id: int, as_json: bool) -> None:
    """Show one digest: window, papers, outcome, the server's answer, Message-ID, attempts.

    Example: digest digests show 42
    """
    with open_session() as session:
        record = history.digest_record(session, history.get_digest(session, digest_id))
    if as_json:
        echo_json(record)
        return
    window = record["window"]
    lines: list[tuple[str, Any]] = [
        ("digest", f"{record['id']} for {record['email']}, period {record['period']}"),
        ("status", record["status"]),
        ("due", record["due_at"]),
        (
            "window",
            f"papers first seen after {_when(window['start'])} up to {_when(window['end'])}"
            if window["start"] is not None
            else "not fixed yet (it is fixed when a worker first takes the digest)",
        ),
        ("message-id", record["message_id"]),
        ("attempts", record["attempts"]),
        ("retry at", record["retry_at"]),
        ("sent", record["sent_at"]),
        ("finished", record["finished_at"]),
        ("answer", _answer(record["smtp_code"], record["reply"])),
        ("error", record["error"]),
    ]
    for name, value in lines:
        if value is not None and value != "":
            click.echo(f"{name + ':':<12}{_when(value)}")
    click.echo("")
    echo_table(
        ["paper", "key", "title"],
        [(p["id"], p["key"], p["title"]) for p in record["papers"]],
        empty="papers: none recorded (it is recorded when the email is built)",
    )
    for resend in record["resends"]:
        click.echo("")
        click.echo(
            f"resent at {_when(resend['requested_at'])} by {resend['requested_by']}; before: "
            f"{resend['previous_status']}, {resend['previous_message_id'] or 'no Message-ID'}, "
            f"{resend['previous_attempts']} attempt(s)"
            + (
                f", answer {_answer(resend['previous_smtp_code'], resend['previous_reply'])}"
                if resend["previous_reply"] or resend["previous_smtp_code"]
                else ""
            )
            + (f", error {resend['previous_error']}" if resend["previous_error"] else "")
        )


def _answer(code: int | None, reply: str | None) -> str | None:
    if code is None and not reply:
        return None
    return " ".join(str(x) for x in (code, reply) if x)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(value, "strftime") else str(value)


@group.command("resend")
@click.argument("digest_id", type=ROW_ID)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def resend(digest_id: int, yes: bool) -> None:
    """Send a digest again: the same period, paper window and papers, a new Message-ID.

    For an admin: a reader who lost the email, a digest whose delivery is
    unknown (the connection dropped after the message was sent: they may get it
    twice), or one that failed once the cause is fixed. The earlier delivery
    (Message-ID, status, the server's answer, attempts) stays on record and
    `digest digests show ID` lists it. The digest then goes out the normal way:
    in this process, or on the workers when DIGEST_BROKER_URL is set. A digest
    still on its way, or one that was skipped (no email went out), cannot be
    resent. Without --yes you are asked first.

    Example: digest digests resend 42 --yes
    """
    settings = get_settings()
    if settings.uses_broker:
        # Checked before anything is recorded: a resend the workers never hear of would
        # wait for the sweeper.
        check_workers_reachable(settings)
    with open_session(settings) as session:
        digest = history.get_digest(session, digest_id)
        if not yes:
            click.confirm(
                f"Send digest {digest.id} ({digest.period}, {digest.status.value}) to "
                f"{digest.subscriber.email} again?",
                abort=True,
            )
        digest = history.request_resend(settings, session, digest_id, operator_name())
        email, message_id = digest.subscriber.email, digest.message_id
    click.echo(f"digest {digest_id} for {email} recorded as a resend, Message-ID {message_id}")
    if settings.uses_broker:
        hand_to_workers(settings, [digest_id])
        click.echo("handed to the workers (follow with `digest digests show "
                   f"{digest_id}`)")  # fmt: skip
        return
    result = pipeline.send_batch(settings, [digest_id])
    with open_session(settings) as session:
        record = history.digest_record(session, history.get_digest(session, digest_id))
    outcome = record["status"]
    detail = record["error"] or record["reply"] or ""
    click.echo(f"digest {digest_id}: {outcome}" + (f": {detail}" if detail else ""))
    if result.claimed == 0:
        click.echo("(another process took it: see `digest digests show`)")
    if outcome not in ("sent",):
        raise SystemExit(1)


commands = [group]
