"""`digest run`: the daily job, in this process or handed to the workers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import click

from digest import pipeline
from digest.cli.common import Moment, echo_json, get_settings, plural
from digest.config import Settings
from digest.deliver import require_safe_links
from digest.errors import DigestError


@click.command("run")
@click.option(
    "--at", "at", type=Moment(), help="Run as if it were this moment (ISO 8601, UTC if no offset)."
)
@click.option("--no-fetch", is_flag=True, help="Skip fetching feeds; plan and send only.")
@click.option(
    "--wait/--no-wait", default=False, help="With a broker: follow the run until it settles."
)
@click.option(
    "--timeout", type=float, default=1800, show_default=True, help="Seconds --wait waits at most."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def run(at: datetime | None, no_fetch: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Ingest, plan and send once.

    With no DIGEST_BROKER_URL this runs in this process (small installs, cron).
    With a broker it hands the work to the Celery workers (after checking, within
    a few seconds, that the broker answers); --wait then shows a progress bar until
    every digest of the run has settled.

    It ends by saying where mail went (the outbox folder or the SMTP server) and
    when the next digests fall due, e.g.
    `next: 212 digests at 07:00 Europe/London, in 3 h 12 min`.

    Mail over SMTP is refused while DIGEST_BASE_URL is a localhost or plain-http
    URL (the links in every email would not work for readers), unless
    DIGEST_ALLOW_INSECURE_LINKS=1.

    Example: digest run --at 2026-11-29T08:00
    """
    settings = get_settings()
    now = at
    if settings.uses_broker:
        _run_on_workers(settings, now, not no_fetch, wait, timeout, as_json)
        return
    summary = pipeline.run_once(settings, now, fetch=not no_fetch)
    upcoming = summary.upcoming
    if as_json:
        echo_json(
            {
                "feeds": [o.__dict__ for o in summary.feeds],
                "planned": summary.planned,
                "digests": summary.by_status,
                "mail": settings.mail_destination(),
                "next": upcoming.as_dict() if upcoming else None,
            }
        )
        return
    for outcome in summary.feeds:
        detail = outcome.error or f"{outcome.new} new, {outcome.updated} updated"
        click.echo(f"feed {outcome.feed_id} {outcome.name}: {outcome.status}: {detail}")
    click.echo(f"planned {plural(summary.planned, 'digest')}")
    click.echo(f"digests: {_statuses(summary.by_status)}")
    if summary.by_status:
        click.echo(f"mail: {settings.mail_destination()}")
    if upcoming is not None:
        click.echo(upcoming.describe())


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none due"


def check_workers_reachable(settings: Settings) -> None:
    """One line (:class:`~digest.errors.BrokerError`) within seconds if the broker is down."""
    # The one way from digest/ into Celery: through workers/, only when a broker is set.
    from workers.dispatch import check_broker

    check_broker(settings)


def hand_to_workers(settings: Settings, ids: Sequence[int]) -> None:
    """Wake the workers for these planned digests (the broker is checked first)."""
    # The one way from digest/ into Celery: through workers/, only when a broker is set.
    from workers.dispatch import wake_senders

    wake_senders(settings, ids)


def _run_on_workers(
    settings: Settings, now: datetime | None, fetch: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    # The one way from digest/ into Celery: through workers/, only when a broker is set.
    from workers.dispatch import dispatch_run

    require_safe_links(settings)  # the workers would refuse every batch: say so here, now
    try:
        scope = dispatch_run(settings, now, fetch, wait_for_plan=wait, timeout=timeout)
    except (click.ClickException, DigestError):
        raise  # one line already (e.g. the broker cannot be reached)
    except Exception as exc:
        raise click.ClickException(f"could not hand the run to the workers: {exc}") from exc
    if not wait:
        click.echo("handed to the workers (follow with `digest stats`, or use --wait)")
        click.echo(f"mail: {settings.mail_destination()} (as configured for this command)")
        return
    deadline = time.monotonic() + timeout
    settled = total = 0
    progress: dict[str, int] = {}
    settled_states = {x.value for x in pipeline.SETTLED}
    with click.progressbar(
        length=scope.count if scope else 0, label="sending", show_pos=True
    ) as bar:
        while scope is not None:
            # One COUNT by status over the run's periods and id range, once a second.
            progress = pipeline.period_progress(settings, scope)
            total = sum(progress.values())
            done = sum(n for s, n in progress.items() if s in settled_states)
            bar.length = max(bar.length or 0, total)
            bar.update(done - settled)
            settled = done
            if done >= total or time.monotonic() > deadline:
                break
            time.sleep(1)
    upcoming = pipeline.next_digests(settings, now)
    if as_json:
        echo_json(
            {
                "digests": progress,
                "mail": settings.mail_destination(),
                "next": upcoming.as_dict(),
            }
        )
    else:
        click.echo(f"digests: {_statuses(progress)}")
        if progress:
            click.echo(f"mail: {settings.mail_destination()}")
        click.echo(upcoming.describe())
    if settled < total:
        left = total - settled
        raise click.ClickException(f"{plural(left, 'digest')} still pending after {timeout:.0f} s")


commands = [run]
