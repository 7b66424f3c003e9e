"""The view model of a digest: one card per paper, grouped by topic, and the subject.

Feed content is untrusted: every field a card shows is cleaned by the one
sanitiser (:func:`digest.core.text.clean_text`), links pass :func:`safe_url`
(http and https only, else no link at all), and highlighting escapes first and
only then adds ``<mark>``. The same paper appears in many readers' digests of a
batch, so its cleaned fields and its highlighted text are computed once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from typing import Any

from markupsafe import Markup, escape

from digest.core.caches import memoize
from digest.core.text import clean_text, header_safe, safe_url
from digest.match.rank import MatchedPaper

#: Abstracts are cut near this many characters, at a sentence end when one is close.
ABSTRACT_TARGET = 400
#: More authors than this become "A, B, C … et al."
AUTHORS_MAX = 4

_SENTENCE_END = re.compile(r"[.!?][)\]\"'’”]?(?=\s+[A-Z0-9(\"'“‘])")
# A full stop that ends an abbreviation or an initial, not a sentence: "Smith et al.
# In 2012", "Fig. 3", "e.g. X", "J. Smith".
_NOT_AN_END = re.compile(
    r"(?:\bet al|\be\.g|\bi\.e|\bcf|\bvs|\bfigs?|\beqs?|\bsecs?|\brefs?|\bdr|\bprof"
    r"|\bapprox|\bno|\bst|\bmr|\bms|(?<![\w.])[A-Z])\.$",
    re.IGNORECASE,
)


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


@memoize(maxsize=16384)
def _wrap_str(text: str, width: int, indent: str) -> str:
    return wrap(text, width, indent)


def wrap_once(text: object, width: int = 72, indent: str = "  ") -> str:
    """:func:`wrap`, each distinct line wrapped once per process: a title line, a reason
    or a footer recurs in many readers' digests."""
    return _wrap_str(str(text), width, indent)


@memoize(maxsize=4096)
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


@memoize(maxsize=8192)
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


NO_MARKUP = Markup("")


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
    paper_id: int | None = None
    #: The card's number in the email (1, 2, …, in reading order), which a reply names:
    #: "more 3". Set by the digest view once the cards are laid out.
    number: int = 0
    topic_id: int | None = None  # the best topic's id (its group's stop link)
    #: The card laid out, the same for every reader (``render.fragments``): filled by
    #: the digest view for the cards it shows whole.
    html_title: Markup = NO_MARKUP
    html_body: Markup = NO_MARKUP
    text_body: str = ""

    def content_key(self) -> tuple[object, ...]:
        """Everything the reader-independent parts of the card show."""
        return (
            self.title,
            self.url,
            self.authors,
            tuple(self.categories),
            self.abstract,
            tuple(self.terms),
            self.pdf_url,
            self.hf_url,
            self.upvotes,
        )


@dataclass
class Group:
    label: str
    cards: list[Card] = field(default_factory=list)
    #: The reader's topic this group shows (for its "stop this topic" link), if one.
    topic_id: int | None = None


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    value = getattr(obj, name, default)
    return default if value is None else value


@memoize(maxsize=4096)
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


@memoize(maxsize=16384)
def _clean_str(value: str, limit: int) -> str:
    return clean_text(value, limit)


def _short(value: object, limit: int) -> str:
    """:func:`clean_text` of a label, term or reason: the same few recur in every reader's
    digest, so each is cleaned once."""
    return _clean_str(value, limit) if isinstance(value, str) else clean_text(value, limit)


@memoize(maxsize=16384)
def _clean_terms(terms: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_short(t, 80) for t in terms[:30])


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
        terms=list(_clean_terms(tuple(terms))),
        pdf_url=pdf,
        hf_url=hf,
        upvotes=upvotes if isinstance(upvotes, int) and upvotes > 0 else None,
        # MatchedPaper.reason (when the matcher provides it) adds the other topics.
        reason=_short(getattr(matched, "reason", None) or (best.reason if best else ""), 200),
        label=_short(best.label, 80) if best else "",
        paper_id=paper_id if isinstance(paper_id := _attr(paper, "id"), int) else None,
        topic_id=best.topic_id if best is not None and isinstance(best.topic_id, int) else None,
    )


def unique_papers(papers: Sequence[MatchedPaper]) -> list[MatchedPaper]:
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
    return (_short(hits[0].label, 80) if hits else "") or OTHER_PAPERS


def group_labels(papers: Sequence[MatchedPaper], topic_labels: Sequence[str]) -> list[str]:
    """The labels of the groups :func:`group_papers` makes, in the same order, without
    building the cards (the subject needs only these)."""
    present = {_group_label(m) for m in papers}
    order = [_short(label, 80) for label in topic_labels]
    ordered = dict.fromkeys([*order, *(_group_label(m) for m in papers)])
    return [label for label in ordered if label in present]


def group_papers(papers: Sequence[MatchedPaper], topic_labels: Sequence[str]) -> list[Group]:
    """Papers grouped under their best topic, in the subscriber's topic order; each once."""
    order = [_short(label, 80) for label in topic_labels]
    groups: dict[str, Group] = {label: Group(label) for label in order if label}
    for matched in unique_papers(papers):
        card = make_card(matched)
        label = card.label or OTHER_PAPERS
        group = groups.setdefault(label, Group(label))
        if not group.cards:
            group.topic_id = card.topic_id
        group.cards.append(card)
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
