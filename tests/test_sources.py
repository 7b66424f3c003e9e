"""Unit tests for digest.sources: every parser on every fixture, normalisation, hostile input."""

from __future__ import annotations

import contextlib
import json
import re
import string
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.core.text import clean_text, collapse_ws, strip_control
from digest.errors import FeedFormatError
from digest.ingest.sources import PaperRecord, detect_kind, parse_feed
from digest.ingest.sources.ids import (
    extract_arxiv_id,
    extract_doi,
    html_to_text,
    paper_key,
    parse_date,
    safe_http_url,
)
from digest.store.models import FeedKind

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "tests" / "fixtures" / "feeds"
SAMPLES = ROOT / "digest" / "cli" / "sample_data"
SEED_IDS: dict[str, str] = json.loads(
    (ROOT / "tests" / "data" / "seed_ids.json").read_text("utf-8")
)

CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def body(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def parse(name: str, kind: str, url: str = "https://feeds.example.org/feed") -> list[PaperRecord]:
    return parse_feed(kind, body(name), url).papers


def sid(title_start: str) -> str:
    return next(v for k, v in SEED_IDS.items() if k.startswith(title_start))


def assert_clean(record: PaperRecord) -> None:
    """What every record from every parser must satisfy, whatever the feed held."""
    for text in (record.title, record.abstract, *record.authors, *record.categories):
        assert not CONTROL_RE.search(text), text
        assert text == text.strip() and "  " not in text, text
    for url in (record.url, record.pdf_url, record.hf_url):
        if url is not None:
            parts = urlsplit(url)
            assert parts.scheme in ("http", "https") and parts.hostname, url
            assert not re.search(r"\s", url), url
    assert record.title
    for moment in (record.published_at, record.updated_at):
        assert moment is None or moment.utcoffset() is not None
    assert record.key.split(":", 1)[0] in ("arxiv", "doi", "url")


# --- arXiv ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2401.00001", ("2401.00001", None)),
        ("2401.00001v3", ("2401.00001", 3)),
        ("0704.0001", ("0704.0001", None)),  # the first new-style id (4 digits)
        ("arXiv:2509.13332v1", ("2509.13332", 1)),
        ("ARXIV: 2509.13332", ("2509.13332", None)),
        ("  2401.00001v12 ", ("2401.00001", 12)),
        ("https://arxiv.org/abs/2401.00001v2", ("2401.00001", 2)),
        ("http://arxiv.org/abs/2401.00001", ("2401.00001", None)),
        ("https://arxiv.org/pdf/2401.00001v3", ("2401.00001", 3)),
        ("https://arxiv.org/pdf/2401.00001v3.pdf", ("2401.00001", 3)),
        ("https://export.arxiv.org/abs/2401.00001", ("2401.00001", None)),
        ("https://arxiv.org/html/2401.00001v1#S2", ("2401.00001", 1)),
        ("oai:arXiv.org:2509.13332v1", ("2509.13332", 1)),
        ("https://doi.org/10.48550/arXiv.2401.12345", ("2401.12345", None)),
        ("hep-th/9901001", ("hep-th/9901001", None)),
        ("hep-th/9901001v2", ("hep-th/9901001", 2)),
        ("http://arxiv.org/abs/hep-ex/0307015v1", ("hep-ex/0307015", 1)),
        ("math.GT/0309136", ("math/0309136", None)),  # subject class is not part of the id
        ("arXiv:cond-mat/0102536v1", ("cond-mat/0102536", 1)),
        ("see arXiv:1501.00001.", ("1501.00001", None)),
        ("Discussed in https://arxiv.org/abs/2502.01234, see there", ("2502.01234", None)),
        ("2401.00001v0", ("2401.00001", None)),
        ("https://huggingface.co/papers/2509.00001", ("2509.00001", None)),
    ],
)
def test_extract_arxiv_id(text: str, expected: tuple[str, int | None]) -> None:
    assert extract_arxiv_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "2401.000012",  # six digits
        "2413.00001",  # month 13
        "10.1101/2024.01.15.575123",  # a bioRxiv DOI, not an arXiv id
        "published 2024.01.15",
        "see 2401.00001 in passing",  # an unmarked number in prose
        "https://example.org/abs/2401.00001",
        "arxiv.org/abs/",
    ],
)
def test_extract_arxiv_id_rejects(text: str) -> None:
    assert extract_arxiv_id(text) is None


new_ids = st.builds(
    lambda yy, mm, n, digits: f"{yy:02d}{mm:02d}.{n:0{digits}d}"[: 5 + digits],
    st.integers(7, 99),
    st.integers(1, 12),
    st.integers(0, 9999),
    st.sampled_from([4, 5]),
)
old_ids = st.builds(
    lambda archive, yy, mm, n: f"{archive}/{yy:02d}{mm:02d}{n:03d}",
    st.sampled_from(["hep-th", "hep-ex", "math", "cs", "cond-mat", "astro-ph", "quant-ph"]),
    st.integers(0, 99),
    st.integers(1, 12),
    st.integers(0, 999),
)


@settings(max_examples=200, deadline=None)
@given(
    arxiv_id=st.one_of(new_ids, old_ids),
    version=st.one_of(st.none(), st.integers(1, 40)),
    form=st.sampled_from(
        [
            "{}",
            "arXiv:{}",
            "https://arxiv.org/abs/{}",
            "http://arxiv.org/pdf/{}",
            "https://arxiv.org/pdf/{}.pdf",
            "https://arxiv.org/html/{}",
            "oai:arXiv.org:{}",
            "Read it at https://arxiv.org/abs/{} today.",
        ]
    ),
)
def test_every_form_of_an_id_gives_the_same_id_and_version(
    arxiv_id: str, version: int | None, form: str
) -> None:
    text = form.format(arxiv_id + (f"v{version}" if version else ""))
    assert extract_arxiv_id(text) == (arxiv_id, version)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_id_extraction_never_raises(text: str) -> None:
    found = extract_arxiv_id(text)
    assert found is None or extract_arxiv_id(found[0]) == (found[0], None)
    extract_doi(text)


# --- DOIs and keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1101/2024.01.15.575123", "10.1101/2024.01.15.575123"),
        ("doi:10.1101/2024.01.15.575123", "10.1101/2024.01.15.575123"),
        ("https://doi.org/10.1000/ABC.Def", "10.1000/abc.def"),
        ("http://dx.doi.org/10.1145/3534678.3539321", "10.1145/3534678.3539321"),
        ("(see 10.1000/xyz123).", "10.1000/xyz123"),
        ("https://doi.org/10.1101%2F2024.01.15.575123", "10.1101/2024.01.15.575123"),
        # bioRxiv links carry a version that is not part of the DOI
        (
            "https://www.biorxiv.org/content/10.1101/2024.01.15.575123v2?rss=1",
            "10.1101/2024.01.15.575123",
        ),
        ("10.48550/arXiv.2401.00001", "10.48550/arxiv.2401.00001"),
        # Landing-page links append what is not part of the DOI
        (
            "https://www.biorxiv.org/content/10.1101/2025.09.01.123456v2.full",
            "10.1101/2025.09.01.123456",
        ),
        (
            "https://www.biorxiv.org/content/10.1101/2025.09.01.123456v1.full.pdf",
            "10.1101/2025.09.01.123456",
        ),
        (
            "https://www.frontiersin.org/articles/10.3389/fnins.2025.1234567/full",
            "10.3389/fnins.2025.1234567",
        ),
        ("https://onlinelibrary.wiley.com/doi/10.1002/anie.2023/abstract", "10.1002/anie.2023"),
        ("no doi here", None),
        ("10.1/x", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_doi(text: str | None, expected: str | None) -> None:
    assert extract_doi(text) == expected


def test_paper_key_prefers_arxiv_then_doi_then_link() -> None:
    assert paper_key("2401.00001", "10.1/x", "https://e.org/") == "arxiv:2401.00001"
    assert paper_key(None, "10.1000/ABC", "https://e.org/") == "doi:10.1000/abc"
    assert paper_key(None, None, "https://e.org/p") == "url:https://e.org/p"
    assert paper_key(None, None, None) is None


# --- text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One Two"),
        ("a&amp;b &lt;tag&gt; &eacute;t&eacute; &#x2014; &#8212;", "a&b <tag> été — —"),
        ("line\n  break\r\n\ttab", "line break tab"),
        ("x<br/>y", "x y"),
        ("<script>alert(1)</script>kept<style>p{}</style>", "kept"),
        ("<!-- hidden -->shown", "shown"),
        ("p<0.05 and $n<m$", "p<0.05 and $n<m$"),  # plain-text comparisons survive
        ("<a href='javascript:alert(1)'>label</a>", "label"),
        ("caf\u00e9\u0007 bell", "café bell"),
        ("", ""),
        (None, ""),
    ],
)
def test_html_to_text(html: str | None, text: str) -> None:
    assert html_to_text(html) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_text_helpers_yield_one_clean_line(text: str) -> None:
    for cleaned in (clean_text(text), html_to_text(text)):
        assert not CONTROL_RE.search(cleaned)
        assert cleaned == collapse_ws(cleaned)
    assert clean_text(clean_text(text)) == clean_text(text)
    assert "\x00" not in strip_control(text)


# --- links ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x01javascript:alert(1)",
        "jav&#x61;script:alert(1)",
        "jav&amp;#x61;script:alert(1)",
        "javascript&colon;alert(1)",
        "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.org/x",
        "mailto:a@example.org",
        "//example.org/protocol-relative",
        "/relative/path",
        "http://",
        "https://:443/",
        "http://exa mple.org:99999/",
        "https://<script>/",
        "https://exa_mple..org/",
        "https://[not-ipv6]/",
        "https://-leading-dash.org/",
        "",
        None,
    ],
)
def test_safe_http_url_refuses(link: str | None) -> None:
    assert safe_http_url(link) is None


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://arxiv.org/abs/2401.00001", "https://arxiv.org/abs/2401.00001"),
        ("  HTTPS://Example.ORG/Path?q=1  ", "https://example.org/Path?q=1"),
        ("https://ok.org/a b?x=<y>", "https://ok.org/a%20b?x=%3Cy%3E"),
        ('https://ok.org/"onmouseover="x', "https://ok.org/%22onmouseover=%22x"),
        ("https://ok.org/p?a=1&amp;b=2", "https://ok.org/p?a=1&b=2"),
        ("https://arxiv.org@evil.example/x", "https://evil.example/x"),
        ("http://www.biorxiv.org/content/x\n", "http://www.biorxiv.org/content/x"),
        ("https://Bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("http://[::1]:8080/feed", "http://[::1]:8080/feed"),
        ("https://user:pw@example.org:8443/p", "https://example.org:8443/p"),
    ],
)
def test_safe_http_url_accepts_and_normalises(link: str, expected: str) -> None:
    assert safe_http_url(link) == expected


def test_safe_http_url_resolves_relative_links_against_base() -> None:
    base = "https://blog.example.org/feeds/atom.xml"
    assert safe_http_url("/posts/1", base) == "https://blog.example.org/posts/1"
    assert safe_http_url("posts/1", base) == "https://blog.example.org/feeds/posts/1"
    assert safe_http_url("javascript:alert(1)", base) is None
    assert safe_http_url("/x", "javascript:alert(1)") is None


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *string.printable,
                "&#",
                "&amp;",
                "x61;",
                "&colon;",
                "http",
                "https://",
                "javascript:",
                "\u0000",
                "\u202e",
            ]
        )
    ).map("".join)
)
def test_safe_http_url_only_ever_returns_http(link: str) -> None:
    url = safe_http_url(link)
    if url is not None:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.hostname
        assert not re.search(r"[\s\x00-\x1f\x7f\"<>]", url)


# --- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 15 Sep 2025 00:00:00 -0400", datetime(2025, 9, 15, 4, tzinfo=UTC)),
        ("2025-09-15T17:59:57.000Z", datetime(2025, 9, 15, 17, 59, 57, tzinfo=UTC)),
        ("2003-07-07T13:46:39-04:00", datetime(2003, 7, 7, 17, 46, 39, tzinfo=UTC)),
        ("2025-07-14", datetime(2025, 7, 14, tzinfo=UTC)),
        ("2025-07-14T10:00:00", datetime(2025, 7, 14, 10, tzinfo=UTC)),  # naive means UTC
        (
            time.struct_time((2025, 7, 14, 10, 0, 0, 0, 195, 0)),
            datetime(2025, 7, 14, 10, tzinfo=UTC),
        ),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value: object, expected: datetime | None) -> None:
    parsed = parse_date(value)  # type: ignore[arg-type]
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


# --- arXiv RSS -----------------------------------------------------------------------


def test_arxiv_rss_fixture() -> None:
    result = parse_feed("arxiv-rss", body("arxiv_rss_cs_lg.xml"), "https://rss.arxiv.org/rss/cs.LG")
    assert result.title == "cs.LG updates on arXiv.org"
    assert result.skipped == []
    papers = {p.arxiv_id: p for p in result.papers}
    for paper in result.papers:
        assert_clean(paper)
        assert paper.source == "arxiv"
        assert paper.published_at == datetime(2025, 7, 15, 4, tzinfo=UTC)
    assert [p.announce_type for p in result.papers] == [
        "new",
        "new",
        "cross",
        "replace",
        "replace-cross",
        "new",
    ]

    unlearning = papers[sid("Open Problems in Machine Unlearning")]
    assert (
        unlearning.title == "Open Problems in Machine Unlearning for AI Safety"
    )  # was on two lines
    assert unlearning.key == f"arxiv:{unlearning.arxiv_id}" and unlearning.version == 1
    assert unlearning.abstract.startswith("As AI systems become more capable")  # prefix removed
    assert unlearning.abstract.endswith("Code & data: see the project page.")  # markup and entities
    assert unlearning.url == f"https://arxiv.org/abs/{unlearning.arxiv_id}"
    assert unlearning.pdf_url == f"https://arxiv.org/pdf/{unlearning.arxiv_id}v1"
    assert len(unlearning.authors) >= 1 and all("," not in a for a in unlearning.authors)

    cross = papers[sid("CodeAttack")]
    assert cross.announce_type == "cross" and not cross.is_replacement
    assert cross.categories == ["cs.CR", "cs.CL", "cs.LG"] and cross.primary_category == "cs.CR"

    replaced = papers[sid("LoRA Fine-tuning Efficiently")]
    assert replaced.is_replacement and replaced.version == 2
    assert replaced.doi == "10.1000/lora.2024.17"
    assert papers[sid("Corrective Machine Unlearning")].announce_type == "replace-cross"
    assert papers[sid("Aegis2.0")].doi == f"10.48550/arxiv.{sid('Aegis2.0')}"


def test_arxiv_atom_listing_reads_like_the_rss_one() -> None:
    url = "https://rss.arxiv.org/atom/cs.LG"
    atom = parse_feed("arxiv-rss", body("arxiv_atom_cs_lg.xml"), url)
    rss = {p.key: p for p in parse("arxiv_rss_cs_lg.xml", "arxiv-rss")}
    assert atom.title == "cs.LG updates on arXiv.org" and atom.skipped == []
    assert [p.announce_type for p in atom.papers] == ["new", "new", "replace"]
    for paper in atom.papers:
        assert_clean(paper)
        twin = rss[paper.key]
        same = ("title", "categories", "version", "published_at", "url", "pdf_url")
        assert {f: getattr(paper, f) for f in same} == {f: getattr(twin, f) for f in same}
        assert twin.abstract.startswith(paper.abstract)  # the RSS one has an extra sentence
    # One <author> per name: a comma inside a name does not split it.
    assert atom.papers[1].authors[0] == "Ada Lovelace, Jr."


def test_arxiv_rss_skips_unusable_items_with_reasons() -> None:
    result = parse_feed(
        "arxiv-rss", body("arxiv_rss_bad_items.xml"), "https://rss.arxiv.org/rss/cs.CR"
    )
    assert result.skipped == [
        "An item with no arXiv id anywhere: no arXiv id in guid, description or link",
        "2507.30001: no title",
    ]
    [paper] = result.papers
    assert (paper.arxiv_id, paper.version) == ("2507.30002", 4)  # from the link alone
    assert paper.abstract == "The abstract, with no arXiv prefix at all & an entity."
    assert paper.authors == ["Ann Author", "Bo Writer"]
    assert paper.announce_type is None  # "surprise" is not an announce type we know


def test_arxiv_rss_weekend_listing_is_empty_not_an_error() -> None:
    result = parse_feed(
        "arxiv-rss", body("arxiv_rss_no_items.xml"), "https://rss.arxiv.org/rss/cs.CR"
    )
    assert result.papers == [] and result.skipped == []


@pytest.mark.parametrize("name", ["latin1_declared_utf8.xml", "utf8_declared_latin1.xml"])
def test_wrong_declared_charset_is_read_as_meant(name: str) -> None:
    [paper] = parse(name, "arxiv-rss")
    assert paper.title.endswith("(révisé)")
    assert paper.authors == ["José García", "Björn Müller"]
    assert "— naïve café ©" in paper.abstract


def test_one_broken_byte_costs_only_itself() -> None:
    """A CMS that cut a string mid-character must not turn the whole feed into mojibake."""
    good = body("arxiv_rss_cs_lg.xml")
    marker = b"</description>"
    broken = good.replace(marker, b"\xc3" + marker, 1)  # the first item's abstract

    def texts(data: bytes) -> list[str]:
        records = parse_feed("arxiv-rss", data, "https://e.org/").papers
        return (
            [r.title for r in records]
            + [a for r in records[1:] for a in r.authors]
            + [r.abstract for r in records[1:]]
        )

    assert texts(broken) == texts(good)
    assert any(not t.isascii() for t in texts(good)), "the fixture has non-ASCII text"


def test_the_http_charset_applies_when_the_body_names_none() -> None:
    rss = (
        "<rss version='2.0'><channel><title>Журнал</title><item><title>Нейронные сети</title>"
        "<link>https://journal.example.ru/a/1</link><description>О сетях.</description>"
        "</item></channel></rss>"
    ).encode("windows-1251")
    ctype = "application/rss+xml; charset=windows-1251"
    [paper] = parse_feed("rss", rss, "https://journal.example.ru/rss", ctype).papers
    assert paper.title == "Нейронные сети"
    # The body's own word wins: UTF-8 bytes under a header that claims latin-1.
    utf8 = rss.decode("windows-1251").encode("utf-8")
    [paper] = parse_feed(
        "rss", utf8, "https://journal.example.ru/rss", "text/xml; charset=iso-8859-1"
    ).papers
    assert paper.title == "Нейронные сети"


@pytest.mark.parametrize("authors", [5, "Jane Doe, John Roe", {"name": "Jane"}, None, True])
def test_hf_authors_that_are_not_a_list_are_ignored(authors: object) -> None:
    items = [
        {"paper": {"id": "2509.00001", "title": "Odd authors", "authors": authors}},
        {"paper": {"id": "2509.00002", "title": "Fine", "authors": [{"name": "Ada Lovelace"}]}},
    ]
    odd, fine = parse_feed("hf-daily", json.dumps(items).encode(), "https://hf.co/api").papers
    assert odd.authors == [] and fine.authors == ["Ada Lovelace"]


# --- arXiv API -----------------------------------------------------------------------


def test_arxiv_api_fixture() -> None:
    result = parse_feed(
        "arxiv-api", body("arxiv_api_query.xml"), "http://export.arxiv.org/api/query"
    )
    assert result.skipped == []
    papers = {p.arxiv_id: p for p in result.papers}
    for paper in result.papers:
        assert_clean(paper)
        assert paper.source == "arxiv" and paper.announce_type is None
        assert paper.pdf_url and paper.pdf_url.startswith("https://arxiv.org/pdf/")

    lora = papers[sid("LoRA Fine-tuning Efficiently")]
    assert lora.version == 1
    assert lora.title == "LoRA Fine-tuning Efficiently Undoes Safety Training in Llama 2-Chat 70B"
    assert lora.abstract.startswith("AI developers often apply safety alignment procedures")
    assert lora.published_at == lora.updated_at == datetime(2025, 6, 5, tzinfo=UTC)
    assert lora.primary_category == lora.categories[0]

    old = papers["cs/0103004"]
    assert old.key == "arxiv:cs/0103004" and old.version == 2
    assert old.primary_category == "stat.ML" and old.categories == ["stat.ML", "cs.LG"]
    assert old.published_at == datetime(2001, 3, 2, 17, 1, tzinfo=UTC)
    assert old.updated_at == datetime(2001, 5, 9, 9, 30, tzinfo=UTC)

    attention = papers[sid("On the Role of Attention Heads")]
    assert attention.doi == "10.1000/attn.heads.2025"
    assert len(attention.title.split("\n")) == 1


def test_arxiv_api_error_feed_is_a_format_error() -> None:
    with pytest.raises(
        FeedFormatError, match=r"^arXiv API error: incorrect id format for 1234\.12345$"
    ):
        parse("arxiv_api_error.xml", "arxiv-api")


def test_arxiv_api_parser_refuses_rss() -> None:
    with pytest.raises(FeedFormatError, match=r"expected an arXiv API Atom feed .* got <rss>"):
        parse("arxiv_rss_cs_lg.xml", "arxiv-api")


def test_arxiv_rss_parser_refuses_other_documents() -> None:
    with pytest.raises(
        FeedFormatError, match=r"^got an arXiv API result .*: use the kind arxiv-api$"
    ):
        parse("arxiv_api_query.xml", "arxiv-rss")
    with pytest.raises(
        FeedFormatError, match=r"expected an arXiv RSS document \(<rss>\), got <RDF>"
    ):
        parse("biorxiv.rdf", "arxiv-rss")


# --- Hugging Face --------------------------------------------------------------------


def test_hf_daily_fixture() -> None:
    result = parse_feed(
        "hf-daily", body("hf_daily.json"), "https://huggingface.co/api/daily_papers"
    )
    assert result.skipped == []
    papers = {p.arxiv_id: p for p in result.papers}
    for paper in result.papers:
        assert_clean(paper)
        assert paper.source == "hf"
        assert paper.hf_url == f"https://huggingface.co/papers/{paper.arxiv_id}"
        assert paper.url == f"https://arxiv.org/abs/{paper.arxiv_id}"
    unlearning = papers[sid("Open Problems in Machine Unlearning")]
    assert (unlearning.upvotes, unlearning.comments) == (42, 3)
    assert unlearning.published_at == datetime(2025, 7, 14, 4, tzinfo=UTC)
    attention = papers[sid("On the Role of Attention Heads")]
    assert "safety & alignment" in attention.abstract
    assert attention.abstract.endswith("We release code <here>.")
    labels = papers[sid("Pervasive Label Errors")]
    assert labels.authors[-1] == "Hidden Author"


def test_hf_bad_items_are_skipped_one_by_one() -> None:
    result = parse_feed(
        "hf-daily", body("hf_bad_items.json"), "https://huggingface.co/api/daily_papers"
    )
    assert result.skipped == [
        "item 1: a JSON string, expected an object",
        "No id at all: no usable paper id",
        "An id that is a path: no usable paper id",
        "2507.30030: no title",
    ]
    [paper] = result.papers
    assert_clean(paper)
    assert paper.upvotes is None and paper.comments is None  # true and -3 are not counts
    assert paper.published_at is None
    assert paper.authors == ["Kim Lee", "Plain String Author"]
    assert paper.abstract == "Abstract with <b>markup</b> and abell."


def test_hf_single_paper_object_is_accepted() -> None:
    item = json.loads(body("hf_daily.json"))[0]["paper"]
    [paper] = parse_feed(
        "hf-daily", json.dumps(item).encode(), "https://huggingface.co/api/papers/x"
    ).papers
    assert paper.arxiv_id == sid("Open Problems in Machine Unlearning")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
def test_hf_json_in_other_encodings(encoding: str) -> None:
    item = json.loads(body("hf_daily.json"))[2]
    item["paper"]["authors"] = [{"name": "José García"}, {"name": "Björn Müller"}]
    item["submittedBy"]["fullname"] = "x"
    data = json.dumps([item], ensure_ascii=False).encode(encoding)
    [paper] = parse_feed("hf-daily", data, "https://huggingface.co/api/daily_papers").papers
    assert paper.authors == ["José García", "Björn Müller"]


def test_hf_deeply_nested_json() -> None:
    with pytest.raises(FeedFormatError, match="nested too deeply"):
        parse_feed(
            "hf-daily", b"[" * 100_000 + b"]" * 100_000, "https://huggingface.co/api/daily_papers"
        )


# --- generic RSS/Atom ----------------------------------------------------------------


def test_biorxiv_rdf_keys_by_doi() -> None:
    url = "http://connect.biorxiv.org/biorxiv_xml/bioinformatics"
    result = parse_feed("rss", body("biorxiv.rdf"), url)
    assert result.title == "bioRxiv Subject Collection: Bioinformatics"
    for paper in result.papers:
        assert_clean(paper)
        assert paper.source == "connect.biorxiv.org"
        assert paper.key == f"doi:{paper.doi}" and paper.doi.startswith("10.1101/")
        assert paper.arxiv_id is None
    keys = [p.key for p in result.papers]
    assert keys == [
        "doi:10.1101/2025.07.10.664123",
        "doi:10.1101/2025.07.11.664501",
        "doi:10.1101/2025.07.09.663870",
        "doi:10.1101/2025.07.09.663870",  # v1 and v2: one paper
    ]
    assert [p.version for p in result.papers] == [1, 1, 1, 2]
    first = result.papers[0]
    assert first.authors == ["Tanaka, Ł.", "Johansson, H."]
    assert first.published_at == datetime(2025, 7, 13, tzinfo=UTC)
    assert first.url == "http://biorxiv.org/cgi/content/short/2025.07.10.664123v1?rss=1"


def test_blog_atom_relative_links_arxiv_links_and_html_titles() -> None:
    result = parse_feed("rss", body("blog_atom.xml"), "https://blog.example.org/feed.atom")
    assert result.skipped == [
        "An entry with neither a link nor a URL id: no arXiv id, DOI or http(s) link"
    ]
    about_arxiv, post = result.papers
    for paper in result.papers:
        assert_clean(paper)
        assert paper.source == "blog.example.org"
    # A blog post about an arXiv paper is that paper, and merges with arXiv's record.
    assert about_arxiv.key == f"arxiv:{sid('Open Problems in Machine Unlearning')}"
    assert about_arxiv.url == f"https://arxiv.org/abs/{about_arxiv.arxiv_id}"
    assert about_arxiv.authors == ["Reading Group"]
    assert about_arxiv.abstract.endswith("& why it matters.")
    assert about_arxiv.published_at == datetime(2025, 7, 15, 6, 30, tzinfo=UTC)
    assert post.key == "url:https://blog.example.org/posts/2025/guardrails"
    assert post.title == "Current state of LLM Risks and AI Guardrails & what to do"
    assert post.categories == ["guardrails", "llm"]
    assert "alert(1)" not in post.abstract


def test_hostile_links_never_survive() -> None:
    result = parse_feed("rss", body("hostile_links.rss"), "https://papers.example.net/feed.rss")
    for paper in result.papers:
        assert_clean(paper)
        assert "\n" not in paper.title and "\r" not in paper.title
        assert "<" not in paper.title
    by_title = {p.title: p for p in result.papers}
    injected = by_title["A fine paper Bcc: victim@example.org Subject: you won"]
    assert injected.url == "https://papers.example.net/p/1"
    assert by_title["Data link, but an http permalink guid"].url == "https://papers.example.net/p/5"
    markup = by_title["Markup in the title"]
    assert markup.authors == ["Mallory Jr."]
    assert markup.abstract == "Text more text"
    assert markup.pdf_url is None  # the javascript: enclosure is dropped
    doi_only = by_title["A DOI but only a vbscript link"]
    assert doi_only.key == "doi:10.5555/hostile.2025.7" and doi_only.url is None
    assert by_title["Credentials in the link"].url == "https://evil.example/p/8"
    assert "Plain javascript link: no arXiv id, DOI or http(s) link" in result.skipped
    assert (
        "Whitespace-obfuscated javascript link: no arXiv id, DOI or http(s) link" in result.skipped
    )
    assert "url:https://papers.example.net/p/9: no title" in result.skipped
    assert "No link, no guid, no id: no arXiv id, DOI or http(s) link" in result.skipped


def test_control_characters_are_stripped() -> None:
    [paper] = parse("control_chars.rss", "rss")
    assert_clean(paper)
    assert paper.title.startswith("Bell and")
    assert paper.abstract == "Form feed in the abstract."  # FF and VT are whitespace


def test_generic_rss_never_reads_a_body_as_a_path_or_url() -> None:
    # feedparser.parse("/etc/passwd") reads the file; our parser must treat it as content.
    for payload in (b"/etc/passwd", b"file:///etc/passwd", b"http://127.0.0.1:9/feed"):
        with pytest.raises(FeedFormatError, match="not an RSS or Atom feed"):
            parse_feed("rss", payload, "https://feeds.example.org/")


def test_generic_rss_refuses_a_cut_off_feed() -> None:
    with pytest.raises(
        FeedFormatError,
        match=r"^not XML: line 21, column \d+: no element found \(the feed is cut off\)$",
    ):
        parse("malformed.xml", "rss")


# --- the same paper across fixtures --------------------------------------------------


def test_fixtures_share_papers_across_formats() -> None:
    keys = {
        kind_file: {p.key: p for p in parse(kind_file[1], kind_file[0])}
        for kind_file in [
            ("arxiv-rss", "arxiv_rss_cs_lg.xml"),
            ("arxiv-api", "arxiv_api_query.xml"),
            ("hf-daily", "hf_daily.json"),
            ("rss", "blog_atom.xml"),
        ]
    }
    unlearning = f"arxiv:{sid('Open Problems in Machine Unlearning')}"
    assert all(unlearning in papers for papers in keys.values())
    lora = f"arxiv:{sid('LoRA Fine-tuning Efficiently')}"
    assert keys[("arxiv-api", "arxiv_api_query.xml")][lora].version == 1
    assert keys[("arxiv-rss", "arxiv_rss_cs_lg.xml")][lora].version == 2
    codeattack = f"arxiv:{sid('CodeAttack')}"
    assert keys[("arxiv-rss", "arxiv_rss_cs_lg.xml")][codeattack].announce_type == "cross"
    assert keys[("hf-daily", "hf_daily.json")][codeattack].upvotes == 17


# --- bad bodies, every kind ----------------------------------------------------------

ALL_KINDS = ["arxiv-rss", "arxiv-api", "hf-daily", "rss"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_html_page_is_not_a_feed(kind: str) -> None:
    with pytest.raises(FeedFormatError, match=r"^got an HTML page, not a feed$"):
        parse("not_a_feed.html", kind)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_body(kind: str) -> None:
    with pytest.raises(FeedFormatError, match=r"^empty response body"):
        parse("empty.xml", kind)


@pytest.mark.parametrize("kind", ["arxiv-rss", "arxiv-api", "rss"])
@pytest.mark.parametrize("name", ["xml_bomb.xml", "xxe.xml"])
def test_entity_declarations_are_refused(kind: str, name: str) -> None:
    with pytest.raises(FeedFormatError, match=r"^XML declares entities in its DTD"):
        parse(name, kind)


def test_defusedxml_still_guards_what_the_dtd_check_misses() -> None:
    # An entity declaration the quick prolog check cannot see (past its 1 MB window).
    padding = b"<!-- " + b"x" * (1 << 20) + b" -->"
    bomb = b'<?xml version="1.0"?>' + padding + b'<!DOCTYPE rss [<!ENTITY a "aaaa">]><rss>&a;</rss>'
    with pytest.raises(FeedFormatError, match=r"^refusing unsafe XML"):
        parse_feed("arxiv-rss", bomb, "https://rss.arxiv.org/rss/cs.LG")


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("malformed.xml", "arxiv-rss", r"^not XML: line 21, column \d+: no element found$"),
        ("malformed.xml", "arxiv-api", r"^not XML: line 21, column \d+: no element found$"),
        (
            "garbage.bin",
            "arxiv-rss",
            r"^not XML: line 1, column 0: not well-formed \(invalid token\)$",
        ),
        ("garbage.bin", "hf-daily", r"^not JSON: line 1, column 1: Expecting value$"),
        ("garbage.bin", "rss", r"^not an RSS or Atom feed: line \d+, column \d+: not well-formed"),
        (
            "hf_error.json",
            "hf-daily",
            r"^JSON is an object, expected a list of papers \(the server says: Invalid date",
        ),
        ("arxiv_rss_cs_lg.xml", "hf-daily", r"^not JSON: line 1, column 1"),
    ],
)
def test_unusable_bodies_say_what_is_wrong(name: str, kind: str, message: str) -> None:
    with pytest.raises(FeedFormatError, match=message):
        parse(name, kind)


def test_hf_json_that_is_not_a_list() -> None:
    with pytest.raises(FeedFormatError, match=r"^JSON is a string, expected a list of papers$"):
        parse_feed("hf-daily", b'"hello"', "https://huggingface.co/api/daily_papers")


def test_unknown_kind() -> None:
    with pytest.raises(FeedFormatError, match=r"^unknown feed kind 'atom'"):
        parse_feed("atom", b"<feed/>", "https://e.org/")


# --- kind detection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://rss.arxiv.org/rss/cs.AI+cs.LG", FeedKind.ARXIV_RSS),
        ("https://rss.arxiv.org/atom/cs.LG", FeedKind.ARXIV_RSS),
        ("http://arxiv.org/rss/cs.LG", FeedKind.ARXIV_RSS),
        ("http://export.arxiv.org/api/query?search_query=all:electron", FeedKind.ARXIV_API),
        ("https://export.arxiv.org/api/query?id_list=2401.00001", FeedKind.ARXIV_API),
        ("https://huggingface.co/api/daily_papers?date=2025-07-15", FeedKind.HF_DAILY),
        ("https://huggingface.co/api/papers/2401.00001", FeedKind.HF_DAILY),
        ("https://connect.biorxiv.org/biorxiv_xml/bioinformatics", FeedKind.RSS),
        ("https://notarxiv.org/rss/cs.LG", FeedKind.RSS),
        ("not a url", FeedKind.RSS),
    ],
)
def test_detect_kind_by_url(url: str, kind: FeedKind) -> None:
    assert detect_kind(url) == kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("arxiv_rss_cs_lg.xml", FeedKind.ARXIV_RSS),
        ("arxiv_rss_no_items.xml", FeedKind.ARXIV_RSS),
        ("arxiv_atom_cs_lg.xml", FeedKind.ARXIV_RSS),
        ("arxiv_api_query.xml", FeedKind.ARXIV_API),
        ("arxiv_api_error.xml", FeedKind.ARXIV_API),
        ("hf_daily.json", FeedKind.HF_DAILY),
        ("biorxiv.rdf", FeedKind.RSS),
        ("blog_atom.xml", FeedKind.RSS),
        ("hostile_links.rss", FeedKind.RSS),
    ],
)
def test_detect_kind_by_body(name: str, kind: FeedKind) -> None:
    assert detect_kind("https://mirror.example.org/feed", body(name)) == kind


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_a_feed.html", r"^got an HTML page, not a feed$"),
        ("empty.xml", r"^empty response body"),
        ("garbage.bin", r"^not a feed: the body starts with"),
    ],
)
def test_detect_kind_refuses_non_feeds(name: str, message: str) -> None:
    with pytest.raises(FeedFormatError, match=message):
        detect_kind("https://mirror.example.org/feed", body(name))


def test_an_error_object_is_reported_with_the_servers_words() -> None:
    url = "https://mirror.example.org/feed"
    kind = detect_kind(url, body("hf_error.json"))
    with pytest.raises(FeedFormatError, match=r"expected a list of papers \(the server says: Inv"):
        parse_feed(kind, body("hf_error.json"), url)


@pytest.mark.parametrize(
    "page",
    [
        b"\xef\xbb\xbf<!DOCTYPE html>\n<html><body>Hi<br></body></html>",
        b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0'
        b' Strict//EN" "x"><html xmlns="http://www.w3.org/1999/xhtml"><body><br></body></html>',
    ],
)
@pytest.mark.parametrize("kind", ["arxiv-rss", "arxiv-api", "hf-daily", "rss"])
def test_an_html_page_is_called_one_whatever_the_kind(page: bytes, kind: str) -> None:
    with pytest.raises(FeedFormatError, match=r"^got an HTML page, not a feed$"):
        parse_feed(kind, page, "https://example.org/feed")


def test_url_wins_over_body() -> None:
    assert (
        detect_kind("https://huggingface.co/api/daily_papers", body("blog_atom.xml"))
        == FeedKind.HF_DAILY
    )


# --- bundled sample data -------------------------------------------------------------


def test_sample_feeds_cover_every_seed_paper_with_its_assigned_id() -> None:
    seen: dict[str, PaperRecord] = {}
    for name, kind in [
        ("arxiv_rss_cs.xml", "arxiv-rss"),
        ("hf_daily.json", "hf-daily"),
        ("arxiv_api.xml", "arxiv-api"),
    ]:
        result = parse_feed(kind, (SAMPLES / name).read_bytes(), "https://example.org/")
        assert result.skipped == []
        for paper in result.papers:
            assert_clean(paper)
            seen.setdefault(paper.arxiv_id or "", paper)
    assert len(SEED_IDS) == 61 and len(set(SEED_IDS.values())) == 61
    for title, arxiv_id in SEED_IDS.items():
        assert seen[arxiv_id].title == clean_text(title)


def test_sample_feeds_overlap_and_mix_announce_types() -> None:
    rss = parse_feed(
        "arxiv-rss", (SAMPLES / "arxiv_rss_cs.xml").read_bytes(), "https://rss.arxiv.org/rss/cs.AI"
    )
    hf = parse_feed(
        "hf-daily",
        (SAMPLES / "hf_daily.json").read_bytes(),
        "https://huggingface.co/api/daily_papers",
    )
    announce = {p.announce_type for p in rss.papers}
    assert announce == {"new", "cross", "replace", "replace-cross"}
    overlap = {p.key for p in rss.papers} & {p.key for p in hf.papers}
    assert len(overlap) >= 10
    assert all(p.upvotes is not None for p in hf.papers)
    categories = {c for p in rss.papers for c in p.categories}
    assert {"cs.LG", "cs.CL", "cs.CR", "cs.AI", "cs.CV", "stat.ML"} <= categories


# --- fuzzing: nothing but FeedFormatError ever escapes a parser ------------------------

GOOD = {
    "arxiv-rss": body("arxiv_rss_cs_lg.xml"),
    "arxiv-api": body("arxiv_api_query.xml"),
    "hf-daily": body("hf_daily.json"),
    "rss": body("hostile_links.rss"),
}
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.floats(0, 1, exclude_max=True),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=6,
)


def mutate(data: bytes, steps: list[tuple[str, float, bytes]]) -> bytes:
    for op, where, junk in steps:
        at = int(where * len(data)) if data else 0
        if op == "flip" and data:
            data = data[:at] + bytes([data[at] ^ junk[0]]) + data[at + 1 :]
        elif op == "insert":
            data = data[:at] + junk + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + len(junk) * 16 :]
        else:
            data = data[:at]
    return data


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(GOOD)), steps=mutations)
def test_mutated_feeds_parse_cleanly_or_fail_with_a_message(
    kind: str, steps: list[tuple[str, float, bytes]]
) -> None:
    data = mutate(GOOD[kind], steps)
    try:
        result = parse_feed(kind, data, "https://feeds.example.org/feed")
    except FeedFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for paper in result.papers:
        assert_clean(paper)


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(sorted(GOOD)), data=st.binary(max_size=300))
def test_random_bytes_never_crash_a_parser(kind: str, data: bytes) -> None:
    with contextlib.suppress(FeedFormatError):
        parse_feed(kind, data, "https://feeds.example.org/feed")
    with contextlib.suppress(FeedFormatError):
        detect_kind("https://feeds.example.org/feed", data)


# --- storage limits ------------------------------------------------------------------


def test_absurd_sizes_are_trimmed_and_unkeyable_entries_skipped() -> None:
    long_path = "x" * 3000
    authors = ", ".join(f"Author {i}" for i in range(2000))
    feed = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Big</title>
<item><title>{"Long title " * 500}</title><link>https://arxiv.org/abs/2507.40001</link>
  <description>{"word " * 10000}</description><dc:creator>{authors}</dc:creator>
  <category>{"c" * 100}</category><enclosure url="https://e.org/{long_path}.pdf" type="application/pdf"/></item>
<item><title>Identity too long</title><link>https://e.org/{long_path}</link></item>
</channel></rss>""".encode()
    result = parse_feed("rss", feed, "https://big.example.org/feed")
    [paper] = result.papers
    assert paper.key == "arxiv:2507.40001"
    assert len(paper.title) == 1000 and paper.title.endswith("…")
    assert len(paper.abstract) <= 20_000
    assert paper.categories == []
    assert paper.pdf_url is None  # longer than the column
    assert result.skipped == ["Identity too long: identifier longer than 600 characters"]


def test_many_authors_are_capped() -> None:
    item = json.loads(body("hf_daily.json"))[0]
    item["paper"]["authors"] = [{"name": f"Author {i}"} for i in range(2000)]
    [paper] = parse_feed(
        "hf-daily", json.dumps([item]).encode(), "https://huggingface.co/api/daily_papers"
    ).papers
    assert len(paper.authors) == 500 and paper.authors[0] == "Author 0"


def test_committed_sample_feeds_match_their_generator() -> None:
    # tests/tools/make_sample_feeds.py writes these; a hand edit or a stale copy fails here.
    sys.path.insert(0, str(ROOT))
    try:
        from tests.tools import make_sample_feeds as gen
    finally:
        sys.path.remove(str(ROOT))
    papers = gen.load_seed()
    for name, text in gen.build_sample_data(papers).items():
        assert (SAMPLES / name).read_text("utf-8") == text, name
    for name, text in gen.build_fixtures(papers).items():
        assert (FEEDS / name).read_text("utf-8") == text, name
    assert {p["title"]: p["id"] for p in papers} == SEED_IDS
