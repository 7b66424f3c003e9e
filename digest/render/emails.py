"""Render whole emails: the digest (with its size budget) and the short transactional ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date as Date
from typing import Any

from digest.config import Settings
from digest.core.text import clean_text, header_safe, safe_url
from digest.match.rank import MatchedPaper
from digest.render.cards import group_labels, group_papers, make_card, subject_for, unique_papers
from digest.render.fragments import CARDS
from digest.render.templates import SIMPLE_KINDS, compiled_templates

#: Gmail clips HTML over ~102 KB; we stay under this with room for the footer.
HTML_BUDGET = 95_000


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    #: How many of the digest's papers (best first) the email carries; the rest did
    #: not fit the size budget. The pipeline records exactly these as shown.
    shown: int = 0
    #: The ids of the papers shown, in the order of the numbers on their cards.
    paper_ids: tuple[int | None, ...] = ()


@dataclass
class DigestContext:
    """Everything one digest email shows; built by the pipeline for one subscriber."""

    settings: Settings
    email: str
    timezone: str
    date: Date  # the digest's date in the subscriber's time zone
    papers: Sequence[MatchedPaper]  # ranked; hits[0] is the topic a paper is shown under
    topic_labels: Sequence[str]  # the subscriber's topics, in their order
    manage_url: str
    unsubscribe_url: str
    papers_arrived: int | None = None  # new papers in the window (for the quiet-day note)
    near_misses: Sequence[MatchedPaper] = ()  # shown on a quiet day, if given
    web_url: str | None = None
    #: The base of the per-topic stop links (``<stop_url>/<topic id>``), if any.
    stop_url: str | None = None
    weekly: bool = False
    beyond_limit: int = 0  # papers that matched but fell beyond the reader's maximum


def _common(settings: Settings, email: str) -> dict[str, Any]:
    return {
        "brand": settings.brand,
        "base_url": safe_url(settings.base_url),
        "postal_address": clean_text(settings.postal_address, 300),
        "email": clean_text(email, 320),
    }


def digest_view(
    ctx: DigestContext, full: int | None = None, brief: int | None = None
) -> dict[str, Any]:
    """The template variables for one digest.

    The best ``full`` papers get whole cards, grouped by topic; the next ``brief`` a
    line each ("Also new for you"); any left after those are counted, not shown. By
    default every paper gets a card: :func:`render_digest` lowers the numbers only
    when the email would be too big.
    """
    papers = unique_papers(ctx.papers)
    full = len(papers) if full is None else min(full, len(papers))
    brief = len(papers) - full if brief is None else min(brief, len(papers) - full)
    groups = group_papers(papers[:full], ctx.topic_labels)
    brief_cards = [make_card(m) for m in papers[full : full + brief]]
    # Numbered in reading order, so a reply can name a paper ("more 3").
    in_order = [card for group in groups for card in group.cards] + brief_cards
    for number, card in enumerate(in_order, 1):
        card.number = number
    CARDS.fill(card for group in groups for card in group.cards)
    shown = full + brief
    labels = group_labels(papers, ctx.topic_labels)
    subject = subject_for(shown, labels, ctx.date, ctx.papers_arrived, ctx.weekly)
    span = "this week" if ctx.weekly else "today"
    if shown:
        heading = f"{shown} new {'paper' if shown == 1 else 'papers'} for you"
        first = groups[0].cards[0].title if groups else brief_cards[0].title
        preheader = f"{first}" + (f" — and {shown - 1} more" if shown > 1 else "")
    elif ctx.papers_arrived == 0:
        heading = f"No new papers {span}"
        preheader = "No new papers arrived in your feeds since the last digest."
    else:
        heading = f"Nothing matched {span}"
        arrived = ctx.papers_arrived
        preheader = (
            f"{arrived} new papers arrived; none matched your topics."
            if arrived
            else "None of the new papers matched your topics."
        )
    near = [make_card(m) for m in list(ctx.near_misses)[:5]] if not papers else []
    return {
        **_common(ctx.settings, ctx.email),
        "subject": subject,
        "preheader": clean_text(preheader, 150),
        "heading": heading,
        "date_label": f"{ctx.date:%A}, {ctx.date.day} {ctx.date:%B %Y}",
        "period": "week" if ctx.weekly else "day",
        "count": shown,
        "arrived": ctx.papers_arrived,
        "groups": groups,
        "brief": brief_cards,
        "more": len(papers) - shown,
        "beyond_limit": max(0, ctx.beyond_limit),
        "near_misses": near,
        "topics": [clean_text(t, 80) for t in ctx.topic_labels if clean_text(t)],
        "numbered_topics": [
            f"{n}. {clean_text(t, 80)}" for n, t in enumerate(ctx.topic_labels, 1) if clean_text(t)
        ],
        "paper_ids": tuple(card.paper_id for card in in_order),
        # `digest inbound` reads replies: say how to steer by replying.
        "reply_steering": ctx.settings.inbound and bool(in_order),
        "manage_url": safe_url(ctx.manage_url),
        "unsubscribe_url": safe_url(ctx.unsubscribe_url),
        "web_url": safe_url(ctx.web_url),
        "stop_url": safe_url(ctx.stop_url),
    }


def _render(kind: str, view: dict[str, Any]) -> RenderedEmail:
    compiled = compiled_templates(kind)
    subject = header_safe(compiled.subject.render(view))
    return RenderedEmail(
        subject=subject,
        html=compiled.html.render(view),
        text=compiled.text.render(view),
        shown=view.get("count", 0),
        paper_ids=tuple(view.get("paper_ids", ())),
    )


def _size(rendered: RenderedEmail) -> int:
    return len(rendered.html.encode())


def render_digest(ctx: DigestContext, html_budget: int | None = HTML_BUDGET) -> RenderedEmail:
    """The digest email for one subscriber: subject, HTML and plain text.

    If the HTML would pass ``html_budget`` (Gmail clips at ~102 KB), the papers
    that do not fit as cards (the lowest ranked) become one line each; only if even
    those lines do not fit are the last papers left out, and the email says how many.
    ``shown`` tells the caller which papers went out. ``html_budget=None`` (a page in
    a browser) shows every paper as a card.
    """
    rendered = _render("digest", digest_view(ctx))
    if html_budget is None:
        return rendered
    total = rendered.shown
    full = total
    while _size(rendered) > html_budget and full > 0:
        full = max(0, min(full - 1, int(full * html_budget / _size(rendered) * 0.97)))
        rendered = _render("digest", digest_view(ctx, full=full))
    brief = total - full
    while _size(rendered) > html_budget and brief > 0:
        brief = max(0, min(brief - 1, int(brief * html_budget / _size(rendered) * 0.97)))
        rendered = _render("digest", digest_view(ctx, full=0, brief=brief))
    return rendered


def render_simple(kind: str, settings: Settings, email: str, **values: Any) -> RenderedEmail:
    """A short transactional email: ``confirm``, ``welcome``, ``link`` or ``unsubscribed``.

    ``values`` are the kind's links and topics, e.g. ``confirm_url``, ``manage_url``,
    ``unsubscribe_url``, ``subscribe_url``, ``topics``; URLs pass through
    :func:`safe_url` and missing ones are simply left out.
    """
    if kind not in SIMPLE_KINDS:
        raise ValueError(f"unknown email kind {kind!r}; use one of {SIMPLE_KINDS}")
    view: dict[str, Any] = {
        **_common(settings, email),
        "topics": [],
        "confirm_url": "",
        "manage_url": "",
        "unsubscribe_url": "",
        "subscribe_url": "",
        "frequency": "daily",
        "status": "",
    }
    for key, value in values.items():
        if key.endswith("_url"):
            view[key] = safe_url(value)
        elif key == "topics":
            view[key] = [clean_text(t, 80) for t in value if clean_text(t)]
        else:
            view[key] = clean_text(value, 300)
    view["preheader"] = ""
    view["subject"] = header_safe(compiled_templates(kind).subject.render(view))
    return _render(kind, view)
