"""`digest preview` and `digest send-test`: look at the email before anyone gets it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import match as matching
from digest import render
from digest.cli.common import get_settings, open_session
from digest.config import Settings
from digest.core.addresses import clean_address
from digest.deliver import transport_from_settings
from digest.deliver.message import build_message, make_message_id
from digest.store.models import Digest, Frequency, Paper, Subscriber, utcnow
from digest.store.suppression import is_suppressed

#: Used by send-test when the database holds no papers yet (real papers, shortened).
SAMPLE_PAPERS = (
    (
        "Aegis2.0: A Diverse AI Safety Dataset and Risks Taxonomy for Alignment of LLM Guardrails",
        "As Large Language Models (LLMs) and generative AI become increasingly widespread, "
        "concerns about content safety have grown in parallel. Currently, there is a clear lack "
        "of high-quality, human-annotated datasets that address the full spectrum of LLM-related "
        "safety risks and are usable for commercial applications.",
        ["cs.CL", "cs.AI"],
        ["safety", "guardrails"],
    ),
    (
        "Boosting Large-scale Parallel Training Efficiency with C4: A Communication-Driven Approach",
        "The emergence of Large Language Models (LLMs) has necessitated the adoption of parallel "
        "training techniques, involving the deployment of thousands of GPUs to train a single "
        "model. Unfortunately, we have found that the efficiency of current parallel training is "
        "often suboptimal.",
        ["cs.DC", "cs.LG"],
        ["training"],
    ),
    (
        "Advance Real-time Detection of Traffic Incidents in Highways using Vehicle Trajectory Data",
        "A significant number of traffic crashes are secondary crashes that occur because of an "
        "earlier incident on the road. Thus, early detection of traffic incidents is crucial for "
        "road users from safety perspectives.",
        ["cs.LG"],
        ["detection"],
    ),
)


def _window_papers(session: Session, subscriber: Subscriber) -> list[Paper]:
    """The papers the next digest would cover: since the last digest's window, else a period."""
    last_end = session.scalar(
        select(func.max(Digest.window_end)).where(Digest.subscriber_id == subscriber.id)
    )
    days = 7 if subscriber.frequency is Frequency.WEEKLY else 1
    start = last_end or utcnow() - timedelta(days=days)
    return list(
        session.scalars(
            select(Paper)
            .where(Paper.first_seen_at > start)
            .order_by(Paper.first_seen_at.desc(), Paper.id.desc())
        )
    )


def match_for(subscriber: Subscriber, papers: list[Paper]) -> list[matching.MatchedPaper]:
    """The subscriber's matches through digest.matching, or the newest papers without it."""
    build_index = getattr(matching, "build_index", None)
    match_subscriber = getattr(matching, "match_subscriber", None)
    spec = getattr(matching, "TopicSpec", None)
    if build_index and match_subscriber and spec:
        specs = [spec(id=t.id, label=t.label, query=t.query) for t in subscriber.topics]
        return list(match_subscriber(build_index(papers), specs, subscriber.max_papers))
    # Matching not available in this build: show the newest papers, clearly labelled.
    hit = matching.TopicHit(None, "Newest papers", 0.0, [], "newest paper (no matching)")
    return [matching.MatchedPaper(p, 0.0, [hit]) for p in papers[: subscriber.max_papers]]


def _links(settings: Settings, subscriber: Subscriber, session: Session) -> tuple[str, str]:
    from digest.subscriptions.tokens import manage_url, unsubscribe_url

    return (
        manage_url(settings, subscriber, session=session),
        unsubscribe_url(settings, subscriber, session=session),
    )


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
    from digest.core.schedule import zone
    from digest.subscriptions.lifecycle import get_subscriber

    settings = get_settings()
    with open_session(settings) as session:
        subscriber = get_subscriber(session, email)
        if subscriber is None:
            raise click.ClickException(
                f"no subscriber with the address {email!r} (see `digest subscribers list`)"
            )
        papers = _window_papers(session, subscriber)
        matched = match_for(subscriber, papers)
        manage, unsubscribe = _links(settings, subscriber, session)
        try:
            today = utcnow().astimezone(zone(subscriber.timezone)).date()
        except Exception:
            today = utcnow().date()
        ctx = render.DigestContext(
            settings=settings,
            email=subscriber.email,
            timezone=subscriber.timezone,
            date=today,
            papers=matched,
            topic_labels=[t.label for t in subscriber.topics],
            manage_url=manage,
            unsubscribe_url=unsubscribe,
            papers_arrived=len(papers),
            weekly=subscriber.frequency is Frequency.WEEKLY,
        )
        rendered = render.render_digest(ctx)
        notes = []
        if subscriber.status.value != "active":
            notes.append(f"subscriber is {subscriber.status.value}: no digest would be sent")
        if is_suppressed(session, subscriber.email):
            notes.append("address is on the suppression list: no digest would be sent")
        if not matched and not settings.quiet_day_note:
            notes.append("nothing matched: no digest would be sent (DIGEST_QUIET_DAY_NOTE=0)")
        message_id = make_message_id(f"preview-{subscriber.id}", settings.from_domain)
        built = build_message(
            settings,
            rendered,
            to=subscriber.email,
            message_id=message_id,
            unsubscribe_url=unsubscribe,
        )
    if html_file:
        _write(html_file, rendered.html.encode("utf-8"))
    if eml_file:
        _write(eml_file, built.data)
    click.echo(f"To:      {built.to}")
    click.echo(f"Subject: {rendered.subject}")
    click.echo(
        f"Papers:  {len(matched)} matched of {len(papers)} new; "
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


def sample_context(settings: Settings, session: Session, email: str) -> render.DigestContext:
    """A digest of the five newest stored papers, or of built-in samples if there are none."""
    stored = list(
        session.scalars(
            select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc()).limit(5)
        )
    )
    matched: list[matching.MatchedPaper] = []
    if stored:
        for p in stored:
            hit = matching.TopicHit(None, "Sample: newest papers", 0.0, [], "a test email")
            matched.append(matching.MatchedPaper(p, 0.0, [hit]))
    else:
        for i, (title, abstract, categories, terms) in enumerate(SAMPLE_PAPERS):
            paper: Any = SimpleNamespace(
                id=-1 - i,
                title=title,
                abstract=abstract,
                authors=["Sample Author", "Another Author"],
                categories=categories,
                url=f"https://huggingface.co/papers?q={quote(title)}",
                pdf_url=None,
                hf_url=None,
                upvotes=None,
            )
            hit = matching.TopicHit(
                None, "Sample topic", 0.0, terms, f'abstract matches "{terms[0]}"'
            )
            matched.append(matching.MatchedPaper(paper, 0.0, [hit]))
    base = settings.base_url.rstrip("/")
    return render.DigestContext(
        settings=settings,
        email=email,
        timezone="UTC",
        date=utcnow().date(),
        papers=matched,
        topic_labels=[],
        manage_url=f"{base}/",
        unsubscribe_url=f"{base}/",
        papers_arrived=len(matched),
    )


@click.command("send-test")
@click.argument("email")
def send_test(email: str) -> None:
    """Send a sample digest to EMAIL through the configured transport.

    Uses the newest stored papers (or built-in samples) and prints the mail
    server's answer, so you can check DIGEST_SMTP_URL, DKIM and how the email
    looks in a real mailbox. Without DIGEST_SMTP_URL it goes to the outbox folder.

    Example: DIGEST_SMTP_URL=smtp://localhost:1025 digest send-test me@example.org
    """
    settings = get_settings()
    address = clean_address(email)
    with open_session(settings) as session:
        if is_suppressed(session, address):
            raise click.ClickException(
                f"{address} is on the suppression list; lift it first with "
                f"`digest subscribers unsuppress {address}`"
            )
        ctx = sample_context(settings, session, address)
    rendered = render.render_digest(ctx)
    rendered = render.RenderedEmail("[test] " + rendered.subject, rendered.html, rendered.text)
    message_id = make_message_id(f"test-{uuid.uuid4().hex[:16]}", settings.from_domain)
    built = build_message(
        settings, rendered, to=address, message_id=message_id, unsubscribe_url=ctx.unsubscribe_url
    )
    with transport_from_settings(settings) as transport:
        via = getattr(transport, "config", None)
        where = via.describe() if via is not None else str(settings.outbox)
        outcome = transport.send(built.envelope_from, built.to, built.data, built.message_id)
    click.echo(f"Message-ID: {message_id}")
    click.echo(f"Via:        {transport.name} {where}")
    click.echo(f"Answer:     {outcome.describe()}")
    if outcome.status != "sent":
        raise click.ClickException(f"the test email was not accepted ({outcome.status})")


commands = [preview, send_test]
