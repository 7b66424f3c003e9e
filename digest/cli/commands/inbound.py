"""`digest inbound`: the mail listener (commands by email, unsubscribe by mail, bounces)."""

from __future__ import annotations

import logging

import click

from digest.cli.common import get_settings
from digest.inbound import serve


@click.command("inbound")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=2525, show_default=True, help="TCP port."
)
@click.option("--lmtp", is_flag=True, help="Speak LMTP (RFC 2033) instead of SMTP.")
def inbound(host: str, port: int, lmtp: bool) -> None:
    """Receive the mail that comes back: commands, replies, unsubscribes, bounces.

    Your mail server hands this listener the mail for the request address
    (DIGEST_REQUEST_ADDRESS, default papers-request@ the domain of DIGEST_FROM)
    and for the signed addresses every digest carries: bounce+…, reply+…,
    unsubscribe+… and confirm+… at DIGEST_INBOUND_DOMAIN (default: the domain of
    DIGEST_FROM). Every other recipient is refused with 550, and a message over
    DIGEST_INBOUND_MAX_BYTES with 552. Each message is recorded in the database
    before it is accepted, then acted on: commands are carried out and answered,
    bounces scored (a hard bounce suppresses the address), complaints unsubscribe.
    Runs until SIGTERM or Ctrl-C. See README "Mail in" for the Postfix lines.

    Example: digest inbound --host 0.0.0.0 --port 24 --lmtp
    """
    settings = get_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def ready(bound_host: str, bound_port: int) -> None:
        protocol = "LMTP" if lmtp else "SMTP"
        click.echo(
            f"digest inbound: {protocol} on {bound_host}:{bound_port}; commands to "
            f"{settings.request_addr}, signed addresses at {settings.mail_domain}; "
            f"messages up to {settings.inbound_max_bytes} bytes",
        )

    serve(settings, host, port, lmtp=lmtp, ready=ready)


commands = [inbound]
