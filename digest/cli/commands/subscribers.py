"""`digest subscribers …`: add, set, list, show, pause, resume, remove, import, export."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.cli.commands import subscriber_files, subscriber_show
from digest.cli.common import (
    echo_json,
    echo_table,
    find_subscriber,
    get_settings,
    open_session,
    operator_name,
    schedule_line,
)
from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.schedule import next_send
from digest.pipeline import notify
from digest.store import suppression
from digest.store.models import NotificationStatus, Subscriber, SubscriberStatus

STATUS_CHOICES = [s.value for s in SubscriberStatus]


@click.group("subscribers")
def group() -> None:
    """Manage subscribers: the people digests go to, and their settings.

    Example: digest subscribers add ada@example.org --topic "diffusion models" --confirmed
    """


@group.command("add")
@click.argument("email")
@click.option(
    "--topic", "topics", multiple=True, metavar="QUERY", help="A topic query (repeatable)."
)
@click.option(
    "--confirmed",
    is_flag=True,
    help="Active at once: you have their consent, no confirmation email needed.",
)
# No defaults of their own: re-subscribing someone keeps the settings they had unless an
# option is given, so "not given" must be told apart from the default value.
@click.option(
    "--tz", "timezone", show_default="UTC", help="IANA city time zone, e.g. Europe/Paris."
)
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), show_default="daily")
@click.option(
    "--weekday",
    type=click.Choice(list(subs.WEEKDAYS), case_sensitive=False),
    show_default="mon",
    help="Send day of weekly digests.",
)
@click.option("--hour", type=int, show_default="7", help="Local send hour, 0-23.")
@click.option("--max", "max_papers", type=int, show_default="20", help="Papers per digest.")
@click.option(
    "--no-email",
    is_flag=True,
    help="Do not send the confirmation email: print its link instead.",
)
def add(
    email: str,
    topics: tuple[str, ...],
    confirmed: bool,
    timezone: str | None,
    frequency: str | None,
    weekday: str | None,
    hour: int | None,
    max_papers: int | None,
    no_email: bool,
) -> None:
    """Add a subscriber.

    Without --confirmed the subscriber is pending and gets the confirmation email
    (through the configured transport: the outbox, SMTP, or the workers when a broker
    is set); they receive nothing until they press its button (double opt-in). With
    --no-email nothing is sent and the confirmation link is printed instead. With no
    --topic they get the day's trending Hugging Face papers.

    An address that unsubscribed can be subscribed again only with their fresh
    consent: without --confirmed it becomes pending and needs the new confirmation
    link; --confirmed is your word that they gave it, and makes it active. Its
    settings and topics are kept (options given change them, --topic adds), and its
    earlier consent record and unsubscription date are kept in the consent detail.
    A bounced or suppressed address is refused: see `digest subscribers unsuppress`.

    Example: digest subscribers add ada@example.org --topic '"machine unlearning"'
    --topic 'author:bengio' --tz Europe/London --hour 8 --confirmed
    """
    settings = get_settings()
    given: dict[str, Any] = {
        name: value
        for name, value in {
            "timezone": timezone,
            "frequency": frequency,
            "weekday": weekday,
            "hour": hour,
            "max_papers": max_papers,
        }.items()
        if value is not None
    }
    detail = f"added by {operator_name()} with `digest subscribers add`"
    with open_session(settings) as session:
        existing = subs.get_subscriber(session, email)
        if existing is not None and existing.status is SubscriberStatus.UNSUBSCRIBED:
            left = existing.unsubscribed_at
            subscriber = subs.resubscribe(
                session,
                existing,
                consent_source="cli",
                confirmed=confirmed,
                consent_detail=detail,
                topics=topics,
                **given,
            )
            when = f"on {left:%Y-%m-%d}" if left is not None else "earlier"
            click.echo(
                f"{subscriber.email} unsubscribed {when}: subscribing them again needs "
                "their fresh consent"
                + ("; you confirmed you have it" if confirmed else "")
                + " (their earlier consent record is kept in the consent detail)"
            )
            verb = "subscribed again"
        else:
            subscriber = subs.add_subscriber(
                session,
                email,
                topics=topics,
                confirmed=confirmed,
                consent_source="cli",
                consent_detail=detail,
                **given,
            )
            verb = "added"
        count = len(subscriber.topics)
        click.echo(
            f"{verb} {subscriber.email} ({subscriber.status.value}), {schedule_line(subscriber)}, "
            f"{count} topic{'' if count == 1 else 's'}, up to {subscriber.max_papers} papers"
        )
        warn_about_topics(session, subscriber)
        queued: list[int] = []
        address = subscriber.email
        if not confirmed and no_email:
            click.echo(
                "pending: a confirmation is needed before any digest is sent; no email sent "
                "(--no-email). Confirmation link:"
            )
            click.echo(subs.confirm_url(settings, subscriber, session=session))
        elif not confirmed:
            subscriber.notified_at = utcnow()
            queued.append(notify.queue(session, "confirm", subscriber).id)
    if queued:
        _report_confirmation(settings, address, notify.deliver(settings, queued))


def _report_confirmation(
    settings: Settings, address: str, outcome: dict[int, NotificationStatus]
) -> None:
    """Say what became of the confirmation email (it is committed, so it is never lost)."""
    where = "SMTP" if settings.uses_smtp else f"the outbox ({settings.outbox})"
    if not outcome:
        click.echo(
            f"pending: confirmation email to {address} queued; the workers send it within "
            f"{settings.notify_interval_seconds} s. Nothing is sent until they confirm."
        )
        return
    (status,) = outcome.values()
    if status is NotificationStatus.SENT:
        click.echo(
            f"pending: confirmation email sent to {address} through {where}. "
            "Nothing is sent until they confirm."
        )
    elif status is NotificationStatus.RETRY:
        click.echo(
            f"pending: the confirmation email to {address} could not be sent yet through "
            f"{where}; `digest run` retries it. Nothing is sent until they confirm."
        )
    else:
        click.echo(
            f"pending: the confirmation email to {address} was not sent ({status.value}); "
            "check the mail setup with `digest send-test`, or add them again with "
            "--no-email to get the link to pass on."
        )


def warn_about_topics(session: Session, subscriber: Subscriber) -> None:
    """``warning: …`` on stderr for each topic that can never match here (never an error)."""
    checker = subs.TopicChecker(session)
    checker.prefetch(t.query for t in subscriber.topics)
    for topic in subscriber.topics:
        for warning in checker.warnings(topic.query):
            click.echo(f"warning: {warning}", err=True)
    bare = checker.no_topics_warning(email=subscriber.email) if not subscriber.topics else None
    if bare:
        click.echo(f"warning: {bare}", err=True)


@group.command("list")
@click.option(
    "--status",
    type=click.Choice(STATUS_CHOICES),
    multiple=True,
    help="Only these statuses (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(status: tuple[str, ...], as_json: bool) -> None:
    """List subscribers with their status and schedule.

    Example: digest subscribers list --status pending --json
    """
    with open_session() as session:
        rows = subs.list_subscribers(session, status)
        if as_json:
            echo_json(
                [
                    {
                        "id": s.id,
                        "email": s.email,
                        "status": s.status.value,
                        "timezone": s.timezone,
                        "frequency": s.frequency.value,
                        "weekday": subs.weekday_name(s.weekday),
                        "hour": s.send_hour,
                        "max": s.max_papers,
                        "topics": n,
                        "created_at": s.created_at,
                    }
                    for s, n in rows
                ]
            )
            return
        echo_table(
            ["email", "status", "schedule", "max", "topics", "since"],
            [(s.email, s.status, schedule_line(s), s.max_papers, n, s.created_at) for s, n in rows],
            empty="no subscribers"
            + (f" with status {', '.join(status)}" if status else "")
            + ": add one with `digest subscribers add EMAIL`",
        )


class LabelAssignment(click.ParamType):
    """``ID=LABEL``: a topic id (from `digest topics list EMAIL`) and its new label."""

    name = "ID=LABEL"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, str]:
        if isinstance(value, tuple):
            return value
        topic, sep, label = str(value).partition("=")
        if not sep or not topic.strip().isdigit() or len(topic.strip()) > 18:
            self.fail(
                f"{value!r}: give a topic id and its label, e.g. --label 12=Unlearning "
                "(ids are in `digest topics list EMAIL`; `12=` resets it to the default)",
                param,
                ctx,
            )
        return int(topic), label


@group.command("set")
@click.argument("email")
@click.option("--tz", "timezone", help="IANA city time zone, e.g. Asia/Tokyo.")
@click.option("--daily/--weekly", "daily", default=None, help="One digest a day, or one a week.")
@click.option(
    "--weekday",
    type=click.Choice(list(subs.WEEKDAYS), case_sensitive=False),
    help="Send day of weekly digests.",
)
@click.option("--hour", type=int, help="Local send hour, 0-23.")
@click.option("--max", "max_papers", type=int, help="Papers per digest, 1-100.")
@click.option(
    "--label",
    "labels",
    type=LabelAssignment(),
    multiple=True,
    help="ID=LABEL: the name topic ID has in emails (repeatable; ID= resets it).",
)
def set_(
    email: str,
    timezone: str | None,
    daily: bool | None,
    weekday: str | None,
    hour: int | None,
    max_papers: int | None,
    labels: tuple[tuple[int, str], ...],
) -> None:
    """Change an existing subscriber's schedule, size or topic labels.

    Only the options given change; status, topics and the consent record stay as
    they are (topics: `digest topics add/remove`). A label belongs to one topic, so
    --label takes the topic's id (shown by `digest topics list EMAIL`) and the new
    label: --label 12=Unlearning; --label 12= puts back the default label (the
    query in plain words). Labels name the topic's section and the subject line
    of the emails.

    The new schedule applies from its next send time, which is printed: no
    paper is sent twice, and a period the change puts before the last digest
    (moving west, say) is skipped; its papers come with the next digest.

    Example: digest subscribers set ada@example.org --tz Asia/Tokyo --hour 8 --weekly
    --weekday fri --label 12=Unlearning
    """
    if all(v is None for v in (timezone, daily, weekday, hour, max_papers)) and not labels:
        raise click.UsageError(
            "nothing to change: give --tz, --daily/--weekly, --weekday, --hour, --max or --label"
        )
    frequency = None if daily is None else ("daily" if daily else "weekly")
    with open_session() as session:
        subscriber = find_subscriber(session, email)
        changed = subs.change_subscriber(
            session,
            subscriber,
            timezone=timezone,
            frequency=frequency,
            weekday=weekday,
            hour=hour,
            max_papers=max_papers,
            labels=dict(labels),
        )
        if not changed:
            click.echo(f"{subscriber.email}: nothing changed, the settings were already so")
            return
        for name, (before, after) in changed.items():
            click.echo(f"{subscriber.email}: {_setting_name(name)} {_shown(name, before)} -> "
                       f"{_shown(name, after)}")  # fmt: skip
        upcoming = next_send(
            utcnow(),
            subscriber.timezone,
            subscriber.frequency.value,
            subscriber.send_hour,
            subscriber.weekday,
        )
        when = (
            f"next digest {upcoming:%a %d %b %H:%M} {subscriber.timezone}"
            if subscriber.status is SubscriberStatus.ACTIVE
            else f"no digest while {subscriber.status.value}"
        )
        click.echo(f"now {schedule_line(subscriber)}, up to {subscriber.max_papers} papers; {when}")
        if weekday is not None and subscriber.frequency.value == "daily":
            click.echo("(the weekday only matters once the subscriber is weekly)")


def _setting_name(name: str) -> str:
    return {"send_hour": "hour", "max_papers": "max papers"}.get(name, name)


def _shown(name: str, value: Any) -> str:
    if name == "weekday":
        return subs.weekday_name(value)
    if name == "send_hour":
        return f"{value:02d}:00"
    if name.startswith("label"):
        return f'"{value}"'
    return str(getattr(value, "value", value))


@group.command("pause")
@click.argument("email")
def pause(email: str) -> None:
    """Stop sending digests to an active subscriber until `resume`.

    Example: digest subscribers pause ada@example.org
    """
    _transition(email, subs.pause, "paused", "was already paused")


@group.command("resume")
@click.argument("email")
def resume(email: str) -> None:
    """Send digests again to a paused subscriber.

    Example: digest subscribers resume ada@example.org
    """
    _transition(email, subs.resume, "resumed", "is already active")


def _transition(email: str, action: Any, done: str, already: str) -> None:
    with open_session() as session:
        subscriber = find_subscriber(session, email)
        changed = action(session, subscriber)
        click.echo(f"{subscriber.email} {done if changed else already}")


@group.command("unsuppress")
@click.argument("email")
def unsuppress(email: str) -> None:
    """Lift a suppression (after a permanent bounce) so EMAIL gets digests again.

    A subscriber marked bounced by that failure becomes active again.

    Example: digest subscribers unsuppress ada@example.org
    """
    with open_session() as session:
        subscriber = subs.get_subscriber(session, email)
        if not suppression.unsuppress(session, email):
            raise click.ClickException(f"{email} is not on the suppression list")
        if subscriber is not None and subscriber.status is SubscriberStatus.BOUNCED:
            subscriber.status = SubscriberStatus.ACTIVE
            click.echo(f"{subscriber.email}: suppression lifted, subscriber active again")
        else:
            click.echo(f"{email}: suppression lifted")


@group.command("remove")
@click.argument("email")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--keep-record",
    is_flag=True,
    help="Unsubscribe instead of deleting: keep the row and its consent record.",
)
def remove(email: str, yes: bool, keep_record: bool) -> None:
    """Delete a subscriber with their topics and digest history.

    With --keep-record the subscriber is marked unsubscribed instead: nothing more
    is sent, and the consent record and history stay as proof of what happened.
    Without --yes you are asked first.

    Example: digest subscribers remove ada@example.org --yes
    """
    with open_session() as session:
        subscriber = find_subscriber(session, email)
        address = subscriber.email
        if keep_record:
            changed = subs.unsubscribe(session, subscriber)
            click.echo(f"{address} {'unsubscribed' if changed else 'was already unsubscribed'}")
            return
        if not yes:
            click.confirm(
                f"Delete {address} ({subscriber.status.value}), its "
                f"{len(subscriber.topics)} topic(s) and digest history?",
                abort=True,
            )
        subs.remove(session, subscriber)
        click.echo(f"removed {address}")


group.add_command(subscriber_show.show)
group.add_command(subscriber_files.import_)
group.add_command(subscriber_files.export)

commands = [group]
