"""`digest run`: the daily job, in this process or handed to the workers."""

from __future__ import annotations

import time
from datetime import datetime

import click

from digest import pipeline
from digest.cli.common import Moment, echo_json, get_settings
from digest.config import Settings


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
    With a broker it hands the work to the Celery workers; --wait then shows a
    progress bar until every digest of the run has settled.

    Example: digest run --at 2026-11-29T08:00
    """
    settings = get_settings()
    now = at
    if settings.uses_broker:
        _run_on_workers(settings, now, not no_fetch, wait, timeout, as_json)
        return
    summary = pipeline.run_once(settings, now, fetch=not no_fetch)
    if as_json:
        echo_json(
            {
                "feeds": [o.__dict__ for o in summary.feeds],
                "planned": summary.planned,
                "digests": summary.by_status,
            }
        )
        return
    for outcome in summary.feeds:
        detail = outcome.error or f"{outcome.new} new, {outcome.updated} updated"
        click.echo(f"feed {outcome.feed_id} {outcome.name}: {outcome.status}: {detail}")
    click.echo(f"planned {summary.planned} digests")
    click.echo(
        "digests: "
        + (", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items())) or "none due")
    )


def _run_on_workers(
    settings: Settings, now: datetime | None, fetch: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    # The one way from digest/ into Celery: through workers/, only when a broker is set.
    from workers.dispatch import dispatch_run

    try:
        ids = dispatch_run(settings, now, fetch, wait_for_plan=wait, timeout=timeout)
    except Exception as exc:
        raise click.ClickException(f"could not hand the run to the workers: {exc}") from exc
    if not wait:
        click.echo("handed to the workers (follow with `digest stats`, or use --wait)")
        return
    assert ids is not None
    deadline = time.monotonic() + timeout
    settled = 0
    with click.progressbar(length=len(ids), label="sending", show_pos=True) as bar:
        while True:
            progress = pipeline.period_progress(settings, ids)
            done = sum(n for s, n in progress.items() if s in {x.value for x in pipeline.SETTLED})
            bar.update(done - settled)
            settled = done
            if done >= len(ids) or time.monotonic() > deadline:
                break
            time.sleep(1)
    if as_json:
        echo_json({"digests": progress})
    else:
        click.echo(
            "digests: " + (", ".join(f"{n} {s}" for s, n in sorted(progress.items())) or "none due")
        )
    if settled < len(ids):
        raise click.ClickException(
            f"{len(ids) - settled} digests still pending after {timeout:.0f} s"
        )


commands = [run]
