"""Render emails: MJML compiled once per template per process, Jinja per email.

Each email kind has a folder in ``templates/email/<kind>/`` (shipped in the wheel
as ``digest.templates``) with ``subject.txt``, ``body.mjml`` and ``body.txt``.
``body.mjml`` is compiled to HTML by mjml-python the first time it is needed;
the Jinja placeholders and loops survive compilation (loops around MJML
sections sit inside ``<mj-raw>``, everything else inside ``<mj-text>``, whose
content MJML copies verbatim). Per email only Jinja runs on the compiled HTML:
about four times faster than MJML per email, with byte-identical output.

Feed content is untrusted. Everything reaches the HTML through Jinja with
autoescape on; links pass through :func:`safe_url` (http and https only, else no
link at all); highlighting escapes first and only then adds ``<mark>``; control
characters and bidirectional overrides are stripped from every feed string
before it is laid out, and the subject is made header-safe.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from functools import cache, lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from digest.config import Settings, split_from
from digest.matching import MatchedPaper

#: Gmail clips HTML over ~102 KB; we stay under this with room for the footer.
HTML_BUDGET = 95_000
#: Abstracts are cut near this many characters, at a sentence end when one is close.
ABSTRACT_TARGET = 400
#: Subjects longer than this are cut (RFC 5322 recommends 78 per line; clients show ~60-90).
SUBJECT_MAX = 120
#: More authors than this become "A, B, C … et al."
AUTHORS_MAX = 4
SIMPLE_KINDS = ("confirm", "welcome", "unsubscribed")

# C0/C1 controls (except tab and newline, handled by callers), bidi embeddings,
# overrides and isolates (they can make "gpj.exe" read as "exe.jpg"), zero-width
# joiners used to smuggle text, the BOM, and unpaired surrogates.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?][)\]\"'’”]?(?=\s+[A-Z0-9(\"'“‘])")
# A full stop that ends an abbreviation or an initial, not a sentence: "Smith et al.
# In 2012", "Fig. 3", "e.g. X", "J. Smith".
_NOT_AN_END = re.compile(
    r"(?:\bet al|\be\.g|\bi\.e|\bcf|\bvs|\bfigs?|\beqs?|\bsecs?|\brefs?|\bdr|\bprof"
    r"|\bapprox|\bno|\bst|\bmr|\bms|(?<![\w.])[A-Z])\.$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    #: How many of the digest's papers (best first) the email carries; the rest did
    #: not fit the size budget. The pipeline records exactly these as shown.
    shown: int = 0


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
    weekly: bool = False
    beyond_limit: int = 0  # papers that matched but fell beyond the reader's maximum


# --- text hygiene -------------------------------------------------------------------


def clean_text(value: object, limit: int | None = None) -> str:
    """One line of feed text: controls and bidi overrides gone, whitespace collapsed."""
    if value is None:
        return ""
    text = _UNSAFE.sub("", unicodedata.normalize("NFC", str(value)))
    text = _SPACE.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def header_safe(value: object, limit: int = SUBJECT_MAX) -> str:
    """A string that can go in a header: one line, no controls, capped at a word."""
    text = clean_text(value)
    if len(text) > limit:
        cut = text[: limit - 1]
        if " " in cut[limit // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        text = cut.rstrip(" ,·—-") + "…"
    return text


_URL_BAD = re.compile(r"[\s<>\"'`\\\x00-\x1f\x7f]")


def safe_url(value: object) -> str:
    """The URL if it is an absolute http(s) URL we can emit as is, else "" (no link).

    Anything else — ``javascript:``, ``data:``, an entity-encoded scheme, a
    relative or scheme-relative URL, spaces, quotes, angle brackets or control
    characters anywhere — gives no link at all rather than a repaired one.
    """
    if not isinstance(value, str) or not value or len(value) > 2048:
        return ""
    return _safe_url(value)


@lru_cache(maxsize=8192)
def _safe_url(value: str) -> str:
    url = value.strip()
    if not url[:8].lower().startswith(("http://", "https://")):
        return ""
    if _URL_BAD.search(url) or _UNSAFE.search(url):
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return url


def wrap(text: object, width: int = 72, indent: str = "  ") -> str:
    """Greedy word wrap for the text part (textwrap is ~10x slower and splits hyphens)."""
    lines: list[str] = []
    line = ""
    for word in str(text).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return ("\n" + indent).join(lines)


@lru_cache(maxsize=4096)
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    words = sorted({t for t in terms if t}, key=len, reverse=True)
    if not words:
        return None
    alternation = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![^\W_])(?:{alternation})(?![^\W_])", re.IGNORECASE)


def highlight(text: object, terms: Iterable[str] | None) -> Markup:
    """``text`` escaped, with whole-word matches of ``terms`` wrapped in ``<mark>``.

    Each piece of text is escaped on its own and only our own tags join them, so
    feed text never becomes markup whatever the terms are.
    """
    raw = "" if text is None else str(text)
    cleaned_terms = tuple(clean_text(t, 80) for t in list(terms or ())[:30])
    return _highlight(raw, cleaned_terms)


@lru_cache(maxsize=8192)
def _highlight(raw: str, cleaned_terms: tuple[str, ...]) -> Markup:
    # Readers who follow the same topics see the same cards: a batch highlights each
    # (text, terms) pair once.
    pattern = _term_pattern(cleaned_terms)
    if pattern is None:
        return escape(raw)
    out: list[str] = []
    last = 0
    for m in pattern.finditer(raw):
        out.append(str(escape(raw[last : m.start()])))
        out.append(f'<mark class="hl" style="{MARK_STYLE}">{escape(m.group(0))}</mark>')
        last = m.end()
    out.append(str(escape(raw[last:])))
    return Markup("".join(out))


MARK_STYLE = "background-color:#fdf0b8;color:inherit;padding:0 1px;border-radius:2px;"


def cut_abstract(text: str, target: int = ABSTRACT_TARGET) -> str:
    """The abstract cut at a sentence end near ``target`` characters (else at a word)."""
    text = clean_text(text)
    if len(text) <= target * 1.15:
        return text
    window = text[: int(target * 1.15)]
    ends = [
        m.end()
        for m in _SENTENCE_END.finditer(window)
        if m.end() >= target * 0.6 and not _NOT_AN_END.search(window[: m.end()])
    ]
    if ends:
        # The sentence end closest to the target, preferring not to overshoot much.
        best = min(ends, key=lambda e: abs(e - target))
        return text[:best]
    cut = text[:target]
    if " " in cut[target // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-—") + " …"


def short_authors(authors: Iterable[object] | None, limit: int = AUTHORS_MAX) -> str:
    names = [clean_text(a, 80) for a in (authors or [])]
    names = [n for n in names if n]
    if len(names) > limit:
        return ", ".join(names[: limit - 1]) + " … et al."
    return ", ".join(names)


def display_name(settings: Settings) -> str:
    """The sender's name from ``DIGEST_FROM``; a bare address gets the product's name,
    so the From line, List-Id and footer never show a raw address as the brand."""
    name, _address = split_from(settings.from_addr)
    return clean_text(name) or "Paper Digest"


# --- view model ---------------------------------------------------------------------


@dataclass
class Card:
    title: str
    url: str
    authors: str
    categories: list[str]
    abstract: str
    terms: list[str]
    pdf_url: str
    hf_url: str
    upvotes: int | None
    reason: str
    label: str


@dataclass
class Group:
    label: str
    cards: list[Card] = field(default_factory=list)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    value = getattr(obj, name, default)
    return default if value is None else value


@lru_cache(maxsize=4096)
def _paper_fields(
    title: str,
    abstract: str,
    authors: tuple[str, ...],
    categories: tuple[str, ...],
    url: str,
    pdf_url: str,
    hf_url: str,
) -> tuple[str, str, str, tuple[str, ...], str, str, str]:
    # The same paper appears in many readers' digests of a batch: its cleaned,
    # cut and shortened fields are computed once (string hashes are cached by Python).
    link = safe_url(url) or safe_url(hf_url)
    pdf = safe_url(pdf_url)
    hf = safe_url(hf_url)
    cats = tuple(c for c in (clean_text(c, 24) for c in categories[:5]) if c)
    return (
        clean_text(title, 300) or "(untitled)",
        cut_abstract(abstract),
        short_authors(authors),
        cats,
        link or pdf,
        pdf,
        hf if hf != link else "",
    )


def _strings(values: object) -> tuple[str, ...]:
    if not isinstance(values, list | tuple):
        return ()
    return tuple(str(v) for v in values if v is not None)


def make_card(matched: MatchedPaper) -> Card:
    paper = matched.paper
    hits = list(matched.hits or [])
    terms: list[str] = []
    for hit in hits:
        terms.extend(t for t in (hit.terms or []) if t not in terms)
    best = hits[0] if hits else None
    title, abstract, authors, categories, url, pdf, hf = _paper_fields(
        str(_attr(paper, "title", "")),
        str(_attr(paper, "abstract", "")),
        _strings(_attr(paper, "authors", ())),
        _strings(_attr(paper, "categories", ())),
        str(_attr(paper, "url", "")),
        str(_attr(paper, "pdf_url", "")),
        str(_attr(paper, "hf_url", "")),
    )
    upvotes = _attr(paper, "upvotes")
    return Card(
        title=title,
        url=url,
        authors=authors,
        categories=list(categories),
        abstract=abstract,
        terms=[clean_text(t, 80) for t in terms[:30]],
        pdf_url=pdf,
        hf_url=hf,
        upvotes=upvotes if isinstance(upvotes, int) and upvotes > 0 else None,
        # MatchedPaper.reason (when the matcher provides it) adds the other topics.
        reason=clean_text(getattr(matched, "reason", None) or (best.reason if best else ""), 200),
        label=clean_text(best.label, 80) if best else "",
    )


def _unique(papers: Sequence[MatchedPaper]) -> list[MatchedPaper]:
    seen: set[int] = set()
    out = []
    for matched in papers:
        key = id(matched.paper) if getattr(matched.paper, "id", None) is None else matched.paper.id
        if key not in seen:
            seen.add(key)
            out.append(matched)
    return out


OTHER_PAPERS = "Other new papers"


def _group_label(matched: MatchedPaper) -> str:
    """The group a paper is shown in: its best topic's label."""
    hits = matched.hits or []
    return (clean_text(hits[0].label, 80) if hits else "") or OTHER_PAPERS


def group_labels(papers: Sequence[MatchedPaper], topic_labels: Sequence[str]) -> list[str]:
    """The labels of the groups :func:`group_papers` makes, in the same order, without
    building the cards (the subject needs only these)."""
    present = {_group_label(m) for m in papers}
    order = [clean_text(label, 80) for label in topic_labels]
    ordered = dict.fromkeys([*order, *(_group_label(m) for m in papers)])
    return [label for label in ordered if label in present]


def group_papers(papers: Sequence[MatchedPaper], topic_labels: Sequence[str]) -> list[Group]:
    """Papers grouped under their best topic, in the subscriber's topic order; each once."""
    order = [clean_text(label, 80) for label in topic_labels]
    groups: dict[str, Group] = {label: Group(label) for label in order if label}
    for matched in _unique(papers):
        card = make_card(matched)
        label = card.label or OTHER_PAPERS
        groups.setdefault(label, Group(label)).cards.append(card)
    return [g for g in groups.values() if g.cards]


def subject_for(
    count: int, labels: Sequence[str], when: Date, arrived: int | None, weekly: bool = False
) -> str:
    day = f"{when.day} {when:%b}"
    span = "this week" if weekly else "today"
    if count == 0:
        if arrived == 0:
            return header_safe(f"No new papers {span} — {day}")
        return header_safe(f"Nothing matched your topics {span} — {day}")
    shown = [clean_text(x, 40) for x in labels[:3]]
    topics = ", ".join(shown) + (", …" if len(labels) > 3 else "")
    noun = "paper" if count == 1 else "papers"
    return header_safe(f"{count} new {noun} · {topics} — {day}")


# --- environments and compiled templates ----------------------------------------------


_INCLUDE = re.compile(r'<mj-include path="\.\./_shared/([a-z_]+\.mjml)"\s*/>')


def _template_text(kind: str, name: str) -> str:
    """A template file; ``<mj-include path="../_shared/x.mjml" />`` lines are inlined.

    Read through importlib.resources so an installed wheel works without a checkout.
    """
    root = resources.files("digest.templates").joinpath("email")
    text = root.joinpath(kind, name).read_text("utf-8")
    return _INCLUDE.sub(lambda m: root.joinpath("_shared", m.group(1)).read_text("utf-8"), text)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _html_env() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_url"] = safe_url
    env.filters["highlight"] = highlight
    env.filters["clean"] = clean_text
    return env


def _text_env() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["safe_url"] = safe_url
    env.filters["clean"] = clean_text
    env.filters["wrap"] = wrap
    return env


_HTML_ENV = _html_env()
_TEXT_ENV = _text_env()

_HEAD_EXTRA = (
    '<meta name="color-scheme" content="light dark">'
    '<meta name="supported-color-schemes" content="light dark">'
    '<meta name="format-detection" content="telephone=no,address=no,email=no,date=no">'
)


def compile_mjml(source: str) -> str:
    """MJML → HTML with the Jinja syntax left intact (no web fonts, nothing fetched)."""
    from mjml import mjml2html

    result = mjml2html(source, fonts={}, disable_comments=True)
    html = result if isinstance(result, str) else result.html
    # The color-scheme metas make Apple Mail and others honour our dark-mode rules
    # instead of inverting colours themselves.
    return html.replace("<head>", "<head>" + _HEAD_EXTRA, 1)


@dataclass(frozen=True)
class CompiledTemplates:
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template


@cache
def templates(kind: str) -> CompiledTemplates:
    """The kind's templates, MJML compiled once per process (cached)."""
    if kind != "digest" and kind not in SIMPLE_KINDS:
        raise ValueError(f"unknown email kind {kind!r}; use digest or one of {SIMPLE_KINDS}")
    return CompiledTemplates(
        subject=_TEXT_ENV.from_string(_template_text(kind, "subject.txt")),
        html=_HTML_ENV.from_string(compile_mjml(_template_text(kind, "body.mjml"))),
        text=_TEXT_ENV.from_string(_template_text(kind, "body.txt")),
    )


def _common(settings: Settings, email: str) -> dict[str, Any]:
    return {
        "brand": display_name(settings),
        "base_url": safe_url(settings.base_url),
        "postal_address": clean_text(settings.postal_address, 300),
        "email": clean_text(email, 320),
    }


# --- public API ---------------------------------------------------------------------


def digest_view(
    ctx: DigestContext, full: int | None = None, brief: int | None = None
) -> dict[str, Any]:
    """The template variables for one digest.

    The best ``full`` papers get whole cards, grouped by topic; the next ``brief`` a
    line each ("Also new for you"); any left after those are counted, not shown. By
    default every paper gets a card: :func:`render_digest` lowers the numbers only
    when the email would be too big.
    """
    papers = _unique(ctx.papers)
    full = len(papers) if full is None else min(full, len(papers))
    brief = len(papers) - full if brief is None else min(brief, len(papers) - full)
    groups = group_papers(papers[:full], ctx.topic_labels)
    brief_cards = [make_card(m) for m in papers[full : full + brief]]
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
        "manage_url": safe_url(ctx.manage_url),
        "unsubscribe_url": safe_url(ctx.unsubscribe_url),
        "web_url": safe_url(ctx.web_url),
    }


def _render(kind: str, view: dict[str, Any]) -> RenderedEmail:
    compiled = templates(kind)
    subject = header_safe(compiled.subject.render(view))
    return RenderedEmail(
        subject=subject,
        html=compiled.html.render(view),
        text=compiled.text.render(view),
        shown=view.get("count", 0),
    )


def _size(rendered: RenderedEmail) -> int:
    return len(rendered.html.encode())


def render_digest(ctx: DigestContext) -> RenderedEmail:
    """The digest email for one subscriber: subject, HTML and plain text.

    If the HTML would pass :data:`HTML_BUDGET` (Gmail clips at ~102 KB), the papers
    that do not fit as cards (the lowest ranked) become one line each; only if even
    those lines do not fit are the last papers left out, and the email says how many.
    ``shown`` tells the caller which papers went out.
    """
    rendered = _render("digest", digest_view(ctx))
    total = rendered.shown
    full = total
    while _size(rendered) > HTML_BUDGET and full > 0:
        full = max(0, min(full - 1, int(full * HTML_BUDGET / _size(rendered) * 0.97)))
        rendered = _render("digest", digest_view(ctx, full=full))
    brief = total - full
    while _size(rendered) > HTML_BUDGET and brief > 0:
        brief = max(0, min(brief - 1, int(brief * HTML_BUDGET / _size(rendered) * 0.97)))
        rendered = _render("digest", digest_view(ctx, full=0, brief=brief))
    return rendered


def render_simple(kind: str, settings: Settings, email: str, **values: Any) -> RenderedEmail:
    """A short transactional email: ``confirm``, ``welcome`` or ``unsubscribed``.

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
    }
    for key, value in values.items():
        if key.endswith("_url"):
            view[key] = safe_url(value)
        elif key == "topics":
            view[key] = [clean_text(t, 80) for t in value if clean_text(t)]
        else:
            view[key] = clean_text(value, 300)
    view["preheader"] = ""
    view["subject"] = header_safe(templates(kind).subject.render(view))
    return _render(kind, view)


__all__ = [
    "DigestContext",
    "RenderedEmail",
    "clean_text",
    "compile_mjml",
    "cut_abstract",
    "header_safe",
    "highlight",
    "render_digest",
    "render_simple",
    "safe_url",
    "short_authors",
    "subject_for",
    "templates",
]
