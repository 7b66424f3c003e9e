"""Look at a digest before anyone gets it: ``digest preview`` and ``digest send-test``.

Both build through :class:`~digest.pipeline.compose.DigestBuilder`, the builder the
send path uses, and write no ledger row: a preview is the digest a run at the same
moment would send, but for its Date and Message-ID.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import match as matching
from digest import render
from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver import BuiltMessage, build_message, make_message_id
from digest.pipeline.compose import ComposedDigest, DigestBuilder, DigestSpec, next_digest
from digest.store.models import Paper, Subscriber, SubscriberStatus
from digest.store.suppression import is_suppressed


@dataclass
class Preview:
    """A reader's next digest as it would be sent now, and why it might not be."""

    composed: ComposedDigest
    notes: list[str] = field(default_factory=list)


def preview(
    settings: Settings, session: Session, subscriber: Subscriber, now: datetime | None = None
) -> Preview:
    """The digest ``subscriber`` would get if it were built at ``now`` (default: now)."""
    now = now or utcnow()
    spec = next_digest(session, subscriber, now)
    composed = _build_one(settings, session, now, spec, f"preview-{subscriber.id}", always=True)
    notes = []
    if subscriber.status is not SubscriberStatus.ACTIVE:
        notes.append(f"subscriber is {subscriber.status.value}: no digest would be sent")
    if is_suppressed(session, subscriber.email):
        notes.append("address is on the suppression list: no digest would be sent")
    if composed.skip_reason:
        notes.append(
            f"{composed.skip_reason}: no digest would be sent (DIGEST_QUIET_DAY_NOTE is off)"
        )
    return Preview(composed, notes)


def _build_one(
    settings: Settings,
    session: Session,
    now: datetime,
    spec: DigestSpec,
    key: str,
    subject_prefix: str = "",
    always: bool = False,
) -> ComposedDigest:
    builder = DigestBuilder(settings, session, now, {key: spec})
    builder.match()
    message_id = make_message_id(key, settings.from_domain)
    return builder.compose(key, message_id, subject_prefix=subject_prefix, always=always)


# --- send-test -----------------------------------------------------------------------------

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


@dataclass(frozen=True)
class SampleDigest:
    message: BuiltMessage
    rendered: render.RenderedEmail
    #: What it shows: the subscriber's own next digest, or sample papers.
    source: str


def send_test_email(
    settings: Settings, session: Session, address: str, now: datetime | None = None
) -> SampleDigest:
    """A digest to check the mail setup with, marked "[test]" in its subject.

    A subscriber's address gets their own next digest (exactly what a run would send
    them, through the same builder); any other address gets the newest stored papers,
    or built-in samples on an empty database.
    """
    now = now or utcnow()
    key = f"test-{uuid.uuid4().hex[:16]}"
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == address.lower()))
    if subscriber is not None:
        spec = next_digest(session, subscriber, now)
        composed = _build_one(settings, session, now, spec, key, subject_prefix="[test] ")
        if composed.message is not None and composed.rendered is not None:
            return SampleDigest(composed.message, composed.rendered, "their next digest")
    return _sample_email(settings, session, address, now, key)


def _sample_matched(papers: list[Paper], label: str, reason: str) -> list[matching.MatchedPaper]:
    """Stored papers as a digest's matches, or the built-in samples when there are none."""
    matched: list[matching.MatchedPaper] = []
    for paper in papers:
        hit = matching.TopicHit(None, label, 0.0, [], reason)
        matched.append(matching.MatchedPaper(paper, 0.0, [hit]))
    if not papers:
        for i, (title, abstract, categories, terms) in enumerate(SAMPLE_PAPERS):
            sample: Any = SimpleNamespace(
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
            matched.append(matching.MatchedPaper(sample, 0.0, [hit]))
    return matched


def _sample_context(
    settings: Settings, address: str, now: datetime, matched: list[matching.MatchedPaper]
) -> render.DigestContext:
    # Not a subscriber: there is nobody a manage or unsubscribe link could name.
    home = settings.base_url.rstrip("/") + "/"
    return render.DigestContext(
        settings=settings,
        email=address,
        timezone="UTC",
        date=now.date(),
        papers=matched,
        topic_labels=[],
        manage_url=home,
        unsubscribe_url=home,
        papers_arrived=len(matched),
    )


def _sample_email(
    settings: Settings, session: Session, address: str, now: datetime, key: Hashable
) -> SampleDigest:
    stored = list(
        session.scalars(
            select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc()).limit(5)
        )
    )
    matched = _sample_matched(stored, "Sample: newest papers", "a test email")
    home = settings.base_url.rstrip("/") + "/"
    rendered = render.render_digest(_sample_context(settings, address, now, matched))
    rendered = render.RenderedEmail("[test] " + rendered.subject, rendered.html, rendered.text)
    message = build_message(
        settings,
        rendered,
        to=address,
        message_id=make_message_id(str(key), settings.from_domain),
        unsubscribe_url=home,
        date=now,
    )
    return SampleDigest(message, rendered, "sample papers")


#: Papers the front page's sample digest shows.
SAMPLE_SIZE = 6


def sample_digest(
    settings: Settings,
    session: Session,
    now: datetime | None = None,
    address: str = "you@example.org",
) -> render.RenderedEmail:
    """What a digest looks like, for the front page: the most upvoted of the newest
    day's papers (a reader without topics gets those), or built-in samples."""
    now = now or utcnow()
    newest = session.scalar(select(func.max(Paper.first_seen_at)))
    stored: list[Paper] = []
    if newest is not None:
        stored = list(
            session.scalars(
                select(Paper)
                .where(Paper.first_seen_at > newest - timedelta(days=1))
                .order_by(
                    func.coalesce(Paper.upvotes, -1).desc(),
                    Paper.first_seen_at.desc(),
                    Paper.id.desc(),
                )
                .limit(SAMPLE_SIZE)
            )
        )
    if any(p.upvotes for p in stored):
        label, reason = "Trending today", "one of the day's most upvoted papers"
    else:
        label, reason = "New today", "one of the newest papers"
    matched = _sample_matched(stored, label, reason)
    return render.render_digest(_sample_context(settings, address, now, matched))


__all__ = [
    "SAMPLE_PAPERS",
    "Preview",
    "SampleDigest",
    "preview",
    "sample_digest",
    "send_test_email",
]
