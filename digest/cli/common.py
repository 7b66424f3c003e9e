"""Helpers shared by the command modules: settings, database, tables, JSON."""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.core.text import clean_text
from digest.store import db
from digest.store.models import Subscriber
from digest.subscriptions.lifecycle import get_subscriber
from digest.subscriptions.validate import weekday_name

#: A database row id: click's plain int would let 10**30 through to the driver.
ROW_ID = click.IntRange(min=1, max=2**63 - 1)


class Moment(click.ParamType):
    """An ISO 8601 date or date/time, UTC unless it carries an offset."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip())
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            # Within a year of the calendar's ends a time zone shift overflows.
            if not 2 <= moment.year <= 9998:
                raise OverflowError
            return moment.astimezone(UTC)
        except ValueError:
            self.fail(
                f"{value!r} is not a date/time: use ISO 8601, e.g. 2026-11-29, "
                "2026-11-29T07:30 or 2026-11-29T07:30+01:00",
                param,
                ctx,
            )
        except OverflowError:
            self.fail(f"{value!r} is too far in the past or future", param, ctx)


def get_settings(ctx: click.Context | None = None) -> Settings:
    ctx = ctx or click.get_current_context()
    return ctx.find_root().obj.get()


@contextmanager
def open_session(settings: Settings | None = None) -> Iterator[Session]:
    """A session on an up-to-date schema; commits on success."""
    settings = settings or get_settings()
    db.ensure_schema(settings)
    with db.session_scope(settings) as session:
        yield session


def operator_name() -> str:
    """``user@host`` of whoever runs the command, for consent and resend records."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return "an operator"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 digest``, ``2 digests``, ``0 digests``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_json_default, indent=2, ensure_ascii=False))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "") -> None:
    """A plain aligned text table: readable in a terminal, greppable in a log."""
    if not rows:
        if empty:
            click.echo(empty)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if hasattr(value, "value"):
        return str(value.value)
    # The one sanitiser: a stored label with a bidi override must not reorder the terminal.
    text = clean_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


def find_subscriber(session: Session, email: str) -> Subscriber:
    """The subscriber with this address, or the command's one-line error."""
    subscriber = get_subscriber(session, email)
    if subscriber is None:
        raise click.ClickException(f"no subscriber with the address {email.strip()}")
    return subscriber


def schedule_line(subscriber: Subscriber) -> str:
    """``daily at 07:00 Europe/London`` or ``weekly on mon at 07:00 UTC``."""
    when = f"{subscriber.send_hour:02d}:00 {subscriber.timezone}"
    if subscriber.frequency.value == "weekly":
        return f"weekly on {weekday_name(subscriber.weekday)} at {when}"
    return f"daily at {when}"
