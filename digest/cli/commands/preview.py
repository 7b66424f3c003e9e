"""`digest preview` and `digest send-test`: look at the email before anyone gets it.

Both build through the send path's own builder (``digest.pipeline.preview``), so a
preview is what `digest run` would send at that moment.
"""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.common import get_settings, open_session
from digest.core.addresses import clean_address
from digest.deliver import transport_from_settings
from digest.pipeline.preview import preview as build_preview
from digest.pipeline.preview import send_test_email
from digest.store.suppression import is_suppressed
from digest.subscriptions.lifecycle import get_subscriber
from digest.subscriptions.validate import normalise_email


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


@click.command("preview")
@click.argument("email")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML part to this file (open it in a browser).",
)
@click.option("--text", "show_text", is_flag=True, help="Print the plain-text part.")
@click.option(
    "--eml",
    "eml_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the whole message (.eml) to this file.",
)
def preview(email: str, html_file: Path | None, show_text: bool, eml_file: Path | None) -> None:
    """Render the digest EMAIL would get now, from the stored papers. Sends nothing.

    The papers are those first seen since the subscriber's last digest (or in the
    last day, or week for weekly readers), matched against their topics.

    Example: digest preview ada@example.org --html /tmp/ada.html --text
    """
    settings = get_settings()
    with open_session(settings) as session:
        subscriber = get_subscriber(session, email)
        if subscriber is None:
            raise click.ClickException(
                f"no subscriber with the address {email!r} (see `digest subscribers list`)"
            )
        result = build_preview(settings, session, subscriber)
    composed, notes = result.composed, result.notes
    rendered, built = composed.rendered, composed.message
    assert rendered is not None and built is not None  # a preview always renders
    if html_file:
        _write(html_file, rendered.html.encode("utf-8"))
    if eml_file:
        _write(eml_file, built.data)
    click.echo(f"To:      {built.to}")
    click.echo(f"Subject: {rendered.subject}")
    click.echo(
        f"Papers:  {len(composed.matched)} matched of {composed.arrived} new"
        + (f" ({composed.beyond_limit} more beyond the maximum)" if composed.beyond_limit else "")
        + "; "
        f"HTML {len(rendered.html.encode()) / 1024:.1f} KB, message {len(built.data) / 1024:.1f} KB"
    )
    for note in notes:
        click.echo(f"Note:    {note}")
    if html_file:
        click.echo(f"HTML written to {html_file}")
    if eml_file:
        click.echo(f"Message written to {eml_file}")
    if show_text:
        click.echo("")
        click.echo(rendered.text, nl=False)


@click.command("send-test")
@click.argument("email")
def send_test(email: str) -> None:
    """Send a test digest to EMAIL through the configured transport.

    A subscriber's address gets their own next digest (what `digest run` would
    send them now, subject marked [test]); any other address gets the newest
    stored papers (or built-in samples). It prints the mail server's answer, so
    you can check DIGEST_SMTP_URL, DKIM and how the email looks in a real
    mailbox. Without DIGEST_SMTP_URL it goes to the outbox folder. No digest is
    recorded as sent.

    Example: DIGEST_SMTP_URL=smtp://localhost:1025 digest send-test me@example.org
    """
    settings = get_settings()
    # The rules of every address that comes in (64-octet local part, trailing dot).
    address = normalise_email(clean_address(email))[0]
    with open_session(settings) as session:
        if is_suppressed(session, address):
            raise click.ClickException(
                f"{address} is on the suppression list; lift it first with "
                f"`digest subscribers unsuppress {address}`"
            )
        sample = send_test_email(settings, session, address)
    built = sample.message
    with transport_from_settings(settings) as transport:
        via = getattr(transport, "config", None)
        where = via.describe() if via is not None else str(settings.outbox)
        outcome = transport.send(built.envelope_from, built.to, built.data, built.message_id)
    click.echo(f"Message-ID: {built.message_id}")
    click.echo(f"Shows:      {sample.source}")
    click.echo(f"Via:        {transport.name} {where}")
    click.echo(f"Answer:     {outcome.describe()}")
    if outcome.status != "sent":
        raise click.ClickException(f"the test email was not accepted ({outcome.status})")


commands = [preview, send_test]
