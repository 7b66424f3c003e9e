"""Rendering: escaping, links, highlighting, truncation, subjects, size, hostile feeds."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser

import mjml
import pytest
from support.emailkit import (
    HOSTILE_URLS,
    LABELS,
    context,
    email_settings,
    hostile_papers,
    matched,
    paper,
    seed_papers,
)

from digest import render
from digest.core.text import SUBJECT_MAX, clean_text, header_safe, safe_url
from digest.render import templates as render_templates
from digest.render.cards import cut_abstract, highlight, short_authors, subject_for
from digest.render.emails import render_digest, render_simple

DANGEROUS_TAGS = {"script", "iframe", "object", "embed", "form", "input", "button", "base", "frame"}


class HtmlAudit(HTMLParser):
    """Every tag, attribute and link in a document, for the safety assertions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action", "formaction", "background", "poster"):
                self.links.append(value or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def audit(html: str) -> HtmlAudit:
    parser = HtmlAudit()
    parser.feed(html)
    parser.close()
    return parser


def assert_safe_html(html: str) -> HtmlAudit:
    result = audit(html)
    assert not DANGEROUS_TAGS & set(result.tags), DANGEROUS_TAGS & set(result.tags)
    assert result.handlers == []
    for link in result.links:
        assert re.match(r"https?://[^\s\"'<>]+$", link), link
    assert "javascript:" not in html.lower()
    assert "data:text" not in html.lower()
    return result


# --- filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://arxiv.org/abs/2411.00001",
        "http://example.org/a?b=1&c=2",
        "HTTPS://EXAMPLE.ORG/X",
        "https://例え.jp/論文",
    ],
)
def test_safe_url_keeps_http_links(url: str) -> None:
    assert safe_url(url) == url


@pytest.mark.parametrize("url", [*HOSTILE_URLS, "", None, 42, "https://", "http:///x", "h" * 3000])
def test_safe_url_drops_everything_else(url: object) -> None:
    assert safe_url(url) == ""


def test_highlight_escapes_text_before_marking() -> None:
    out = str(highlight("Machine <b>unlearning</b> & Unlearning-based forgetting", ["unlearning"]))
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert out.count("<mark") == 2  # case-insensitive, whole words only
    assert "&amp;" in out


def test_highlight_terms_cannot_inject_markup() -> None:
    out = str(highlight('say "<script>" now', ['"<script>"', "<img onerror=x>"]))
    assert "<script>" not in out and "<img" not in out
    assert "<mark" in out  # the hostile term still matched, escaped inside the mark


def test_highlight_whole_words_only() -> None:
    out = str(highlight("agents and reagents", ["agents"]))
    assert out.count("<mark") == 1


def test_cut_abstract_at_sentence_near_400() -> None:
    sentences = [f"Sentence number {i} says something about models and data." for i in range(20)]
    text = " ".join(sentences)
    cut = cut_abstract(text)
    assert cut.endswith(".")
    assert 240 <= len(cut) <= 460
    assert text.startswith(cut)


def test_cut_abstract_without_sentences_cuts_at_word() -> None:
    cut = cut_abstract("word " * 4000)
    assert cut.endswith("…") and len(cut) <= 405
    assert "wor …" not in cut


def test_short_abstract_kept_whole() -> None:
    assert cut_abstract("  Short.\n\n Abstract. ") == "Short. Abstract."


def test_short_authors() -> None:
    assert short_authors(["A", "B"]) == "A, B"
    assert short_authors(["A", "B", "C", "D"]) == "A, B, C, D"
    assert short_authors(["A", "B", "C", "D", "E"]) == "A, B, C … et al."
    assert short_authors(["Eve\r\nBcc: x", "", None]) == "Eve Bcc: x"


def test_clean_text_strips_controls_and_bidi() -> None:
    assert clean_text("a\x00b\x1b[31m\u202egnp\u2066x\r\ny") == "ab[31mgnpx y"


# --- subjects ----------------------------------------------------------------------------


def test_subject_format() -> None:
    when = date(2026, 11, 29)
    assert (
        subject_for(7, ["machine unlearning", "jailbreaks"], when, 40)
        == "7 new papers · machine unlearning, jailbreaks — 29 Nov"
    )
    assert subject_for(1, ["a"], when, 1) == "1 new paper · a — 29 Nov"
    assert subject_for(3, ["a", "b", "c", "d"], when, 9).startswith("3 new papers · a, b, c, …")
    assert subject_for(0, [], when, 0) == "No new papers today — 29 Nov"
    assert subject_for(0, [], when, 12) == "Nothing matched your topics today — 29 Nov"


def test_subject_is_header_safe() -> None:
    subject = subject_for(2, ["x\r\nBcc: evil@example.org" + "y" * 300], date(2026, 1, 2), 2)
    assert not re.search(r"[\x00-\x1f\x7f]", subject)
    assert len(subject) <= SUBJECT_MAX
    assert header_safe("a\nb\x00c") == "a bc"


# --- the digest --------------------------------------------------------------------------


def test_digest_groups_each_paper_once_under_its_best_topic() -> None:
    p = paper(1, title="Shared paper")
    papers = [
        matched(paper(2, title="Agents paper"), "agents", ["agents"]),
        # The same paper matched twice: shown once, under hits[0].
        matched(p, "jailbreaks", ["jailbreak"]),
        matched(p, "agents", ["agents"]),
    ]
    rendered = render_digest(context(email_settings(), papers))
    assert rendered.text.count("Shared paper") == 1
    assert rendered.html.count(p.url) == 2  # title link and the "Read" button, once
    # Groups follow the subscriber's topic order, not the ranking.
    assert rendered.text.index("== jailbreaks") < rendered.text.index("Agents paper")
    assert rendered.subject == "2 new papers · jailbreaks, agents — 29 Nov"


def test_digest_content() -> None:
    papers = seed_papers(6)
    rendered = render_digest(context(email_settings(), papers))
    html, text = rendered.html, rendered.text
    assert "6 new papers for you" in html and "Sunday, 29 November 2026" in html
    for m in papers:
        assert m.paper.url in html and m.paper.url in text
        assert m.paper.pdf_url in html
    assert "<mark" in html
    assert "Why: abstract matches" in html and "Why: abstract matches" in text
    assert "▲" in html or "&#9650;" in html  # upvotes for trending papers
    assert "… et al." in html
    for needle in ("/manage/tok", "/unsubscribe/tok", "1 Example Street, Testville"):
        assert needle in html and needle in text
    assert "prefers-color-scheme: dark" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "max-width: 480px" in html
    assert "fonts.googleapis" not in html
    assert "{{" not in html and "{%" not in html
    assert_safe_html(html)
    # The preheader names the first paper.
    assert papers[0].paper.title[:30] in html.split("<body", 1)[1][:2000]


def test_text_part_is_readable_on_its_own() -> None:
    rendered = render_digest(context(email_settings(), seed_papers(3)))
    assert "<" not in rendered.text.replace("<https", "")
    assert "== machine unlearning (1) ==" in rendered.text
    assert max(len(line) for line in rendered.text.splitlines()) < 200


def test_hostile_feed_content_never_becomes_markup_or_headers() -> None:
    papers = hostile_papers()
    rendered = render_digest(context(email_settings(), papers, topic_labels=["agents"]))
    result = assert_safe_html(rendered.html)
    text = "".join(result.text)
    # The hostile strings are still shown, as text.
    assert "<script>alert('t')</script> Scripted title" in text
    assert "<img src=x onerror=alert(1)>" in text
    assert "大型语言模型的安全性研究" in text and "🚀" in text
    assert "\u202e" not in rendered.html and "\x00" not in rendered.html
    assert "\x00" not in rendered.text and "\x1b" not in rendered.text
    assert "\u202e" not in rendered.text
    # No line of the text part starts with a header-looking "Bcc:".
    assert not re.search(r"^\s*Bcc:", rendered.text, re.MULTILINE)
    assert not re.search(r"[\r\n\x00]", rendered.subject)
    # The 20,000-character abstracts are cut.
    assert len(rendered.html) < 100_000
    assert "长摘要。" * 200 not in rendered.html
    # Links only from the safe ones.
    assert "https://huggingface.co/papers/2411.00102" in rendered.html


def test_html_stays_under_gmail_clip_with_many_long_papers() -> None:
    long = "This is a rather long sentence about language models and their safety. " * 40
    papers = [
        matched(
            paper(i, title="A very long title about large language models " * 5, abstract=long),
            LABELS[i % 3],
            ["models", "safety", "language"],
            'title matches "models"; abstract matches "safety"',
        )
        for i in range(200)
    ]
    rendered = render_digest(context(email_settings(), papers))
    assert len(rendered.html.encode()) <= render.HTML_BUDGET
    # Cards first, then a line each, and only then papers left out, said in so many words.
    assert "Also new for you" in rendered.html and 0 < rendered.shown < 200
    assert f"{200 - rendered.shown} more papers that did not fit in one email" in rendered.html
    assert f"{rendered.shown} new papers" in rendered.subject
    assert f"{rendered.shown} new papers for you" in rendered.text


def test_papers_that_do_not_fit_as_cards_still_go_out_as_lines() -> None:
    """A big day: the best papers get cards, the rest a line each; none is left out."""
    long = "A sentence about language models and how safe they are in practice. " * 6
    papers = [
        matched(
            paper(i, title=f"Paper number {i} on language model safety", abstract=long),
            LABELS[i % 3],
            ["models", "safety"],
            'title matches "safety"',
        )
        for i in range(60)
    ]
    rendered = render_digest(context(email_settings(), papers))
    assert len(rendered.html.encode()) <= render.HTML_BUDGET
    assert rendered.shown == 60 and "did not fit" not in rendered.html
    assert "60 new papers" in rendered.subject
    html_titles = [f"Paper number {i} on" for i in range(60)]
    assert all(t in rendered.html for t in html_titles)
    assert all(t in rendered.text for t in html_titles)
    assert "Also new for you" in rendered.html and "== Also new for you (" in rendered.text
    # The lowest ranked are the ones reduced to a line: the best keep their cards.
    cards_end = rendered.html.index("Also new for you")
    assert rendered.html.index("Paper number 0 on") < cards_end
    assert rendered.html.index("Paper number 59 on") > cards_end


def test_quiet_day_no_papers_at_all() -> None:
    rendered = render_digest(context(email_settings(), [], papers_arrived=0))
    assert rendered.subject == "No new papers today — 29 Nov"
    assert "No new papers arrived" in rendered.html and "No new papers arrived" in rendered.text
    assert_safe_html(rendered.html)


def test_quiet_day_nothing_matched_shows_near_misses() -> None:
    near = [matched(paper(9, title="Almost <relevant>"), "agents", ["agent"])]
    rendered = render_digest(context(email_settings(), [], papers_arrived=17, near_misses=near))
    assert rendered.subject == "Nothing matched your topics today — 29 Nov"
    assert "17 new papers arrived" in rendered.html
    assert "Almost &lt;relevant&gt;" in rendered.html and "Almost <relevant>" in rendered.text
    assert "Closest misses" in rendered.text


def test_mjml_compiled_once_per_template(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = mjml.mjml2html

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        assert kwargs.get("fonts") == {}
        return original(*args, **kwargs)

    monkeypatch.setattr(mjml, "mjml2html", counting)
    render.compiled_templates.cache_clear()
    try:
        settings = email_settings()
        outputs = [render_digest(context(settings, seed_papers(n))) for n in (1, 2, 3)]
        assert len(calls) == 1
        assert len({o.html for o in outputs}) == 3
        # Same output as compiling the MJML for this very email.
        view = render.digest_view(context(settings, seed_papers(2)))
        source = render_templates._template_text("digest", "body.mjml")
        fresh = render_templates._HTML_ENV.from_string(render.compile_mjml(source)).render(view)
        assert fresh == outputs[1].html
    finally:
        render.compiled_templates.cache_clear()


@pytest.mark.parametrize("kind", render.SIMPLE_KINDS)
def test_simple_emails(kind: str) -> None:
    rendered = render_simple(
        kind,
        email_settings(),
        "ada@example.org",
        confirm_url="https://digest.example.org/confirm/abc",
        manage_url="https://digest.example.org/manage/abc",
        unsubscribe_url="https://digest.example.org/unsubscribe/abc",
        subscribe_url="javascript:alert(1)",
        topics=["machine unlearning", "<script>x</script>"],
    )
    assert rendered.subject and "\n" not in rendered.subject
    assert "ada@example.org" in rendered.html and "ada@example.org" in rendered.text
    assert "1 Example Street" in rendered.text
    assert_safe_html(rendered.html)
    if kind == "confirm":
        assert "https://digest.example.org/confirm/abc" in rendered.html
        assert "https://digest.example.org/confirm/abc" in rendered.text
        assert "&lt;script&gt;x&lt;/script&gt;" in rendered.html
    if kind == "welcome":
        assert "https://digest.example.org/manage/abc" in rendered.html


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown email kind"):
        render_simple("digest", email_settings(), "a@example.org")


def test_weekly_quiet_wording() -> None:
    rendered = render_digest(context(email_settings(), [], papers_arrived=0, weekly=True))
    assert rendered.subject == "No new papers this week — 29 Nov"
    assert "some weeks are quiet" in rendered.text and "some weeks are quiet" in rendered.html


@pytest.mark.parametrize("abbreviation", ["Smith et al.", "see Fig.", "e.g.", "by J.", "cf."])
def test_abstracts_are_not_cut_after_an_abbreviation(abbreviation: str) -> None:
    text = (
        "x "
        * 150
        + f"This was first observed {abbreviation} In 2012 the effect was replicated in several"
        " labs across many countries. And then a great deal more text follows it, long"
        " enough that the abstract has to be cut somewhere near four hundred characters."
    )
    cut = cut_abstract(text)
    assert not cut.endswith(abbreviation), cut[-60:]


@pytest.mark.parametrize(
    ("labels", "said"),
    [(LABELS, "3 more papers matched your topics"), ([], "3 more papers were trending")],
)
def test_papers_beyond_the_maximum_are_counted(labels: list[str], said: str) -> None:
    rendered = render_digest(
        context(email_settings(), seed_papers(2), topic_labels=labels, beyond_limit=3)
    )
    tail = "you get the best 2 papers a day, your limit."
    assert f"{said}; {tail}" in rendered.html
    assert f"{said}; {tail}" in " ".join(rendered.text.split())
