"""Normalisation helpers shared by every source module.

Everything here is pure and total: any string in, a clean value or ``None`` out,
never an exception. Feed content is untrusted, so these are also the places where
control characters, obfuscated ``javascript:`` links and odd dates are defused.
"""

from __future__ import annotations

import html
import ipaddress
import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from digest.core.text import clean_text, strip_control

if TYPE_CHECKING:
    from digest.ingest.sources.base import PaperRecord

#: The most of one feed text field (an abstract with its markup) read: fields are cut to
#: this before any regex, so the work on a hostile one stays bounded.
MAX_FIELD_CHARS = 100_000
#: The most of an identifier or link read; no real one comes near it.
MAX_ID_CHARS = 4096

# --- arXiv identifiers ---------------------------------------------------------------

# New style (April 2007 on): YYMM.NNNN (to 2014) or YYMM.NNNNN (2015 on), optional vN.
_NEW_ID = r"(?P<new>(?P<yy>\d{2})(?P<mm>0[1-9]|1[0-2])\.\d{4,5})"
# Old style: archive[.SUBJECT-CLASS]/YYMMNNN, e.g. hep-th/9901001, math.GT/0309136.
_OLD_ID = r"(?P<old>(?P<archive>[a-z]+(?:-[a-z]+)?)(?:\.[A-Za-z]{2}(?:-[a-z]+)?)?/(?P<num>\d{2}(?:0[1-9]|1[0-2])\d{3}))"
_VERSION = r"(?:v(?P<version>\d{1,3}))?"
_ID = rf"(?:{_NEW_ID}|{_OLD_ID}){_VERSION}"

# The whole string is an id, optionally with an "arXiv:" prefix.
_BARE_RE = re.compile(rf"^\s*(?:arxiv:\s*)?{_ID}\s*$", re.IGNORECASE)
# An id inside a longer string: only where something says it is an arXiv id (a link to
# arxiv.org, an "arXiv:" prefix, an OAI identifier or an arXiv DOI), so a date or a
# bioRxiv DOI such as 10.1101/2024.01.15.575123 is never mistaken for one.
_MARKED_RE = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf|html|format|ps)/|\barxiv:\s*|oai:arxiv\.org:|10\.48550/arxiv\."
    rf"|huggingface\.co/papers/){_ID}"
    r"(?![\d.]*\d)",
    re.IGNORECASE,
)


def _id_from_match(m: re.Match[str]) -> tuple[str, int | None]:
    if m.group("new"):
        arxiv_id = m.group("new")
    else:
        # The subject class is not part of the canonical id: math.GT/0309136 is math/0309136.
        arxiv_id = f"{m.group('archive').lower()}/{m.group('num')}"
    version = m.group("version")
    return arxiv_id, int(version) if version and int(version) > 0 else None


def extract_arxiv_id(text: str | None) -> tuple[str, int | None] | None:
    """The arXiv id (without version) and version in ``text``, or ``None``.

    Accepts a bare id (``2401.00001v3``, ``hep-th/9901001``), an ``arXiv:`` prefix,
    ``arxiv.org/abs|pdf|html`` links, ``oai:arXiv.org:`` identifiers and arXiv DOIs.
    """
    if not text:
        return None
    text = strip_control(text[:MAX_ID_CHARS])
    m = _BARE_RE.match(text) or _MARKED_RE.search(text)
    return _id_from_match(m) if m else None


def arxiv_abs_url(arxiv_id: str) -> str:
    return f"https://arxiv.org/abs/{arxiv_id}"


def arxiv_pdf_url(arxiv_id: str, version: int | None = None) -> str:
    return f"https://arxiv.org/pdf/{arxiv_id}" + (f"v{version}" if version else "")


# --- DOIs ----------------------------------------------------------------------------

_DOI_RE = re.compile(r"\b(10\.\d{4,9}/[^\s\"'<>]+)", re.IGNORECASE)
# What publishers' landing-page links append to the DOI: bioRxiv's ".full" and
# ".full.pdf", Frontiers' "/full", "/abstract", "/pdf", Wiley's "/epdf"…
_LINK_TAIL_RE = re.compile(
    r"(?:[./](?:full|abstract|short|pdf|epdf|html|full-text|fulltext|full\.pdf\+html))+$",
    re.IGNORECASE,
)


def extract_doi(text: str | None) -> str | None:
    """A normalised DOI (lower case, no ``doi:``/resolver prefix) found in ``text``."""
    if not text:
        return None
    text = strip_control(text[:MAX_ID_CHARS])
    if "%2f" in text.lower():  # doi.org/10.1101%2F2024... as some feeds percent-encode it
        text = unquote(text)
    m = _DOI_RE.search(text)
    if not m:
        return None
    doi = m.group(1)
    # Trailing punctuation belongs to the sentence, not the DOI; a "?rss=1" to the link.
    doi = re.split(r"[?#]", doi, maxsplit=1)[0].rstrip(".,;:)]}")
    doi = _LINK_TAIL_RE.sub("", doi)
    if doi.lower().startswith("10.1101/"):
        # bioRxiv/medRxiv links carry a version (…575123v2) that is not part of the DOI.
        doi = re.sub(r"v\d+$", "", doi)
    # DOIs are case-insensitive (the DOI Handbook, 2.4), so one form keys one paper.
    return doi.lower() if len(doi) > len("10.1234/") else None


# --- keys ----------------------------------------------------------------------------


def paper_key(arxiv_id: str | None, doi: str | None, link: str | None) -> str | None:
    """The canonical key: ``arxiv:ID`` over ``doi:DOI`` over ``url:LINK``; None if none."""
    if arxiv_id:
        return f"arxiv:{arxiv_id}"
    if doi:
        return f"doi:{doi.lower()}"
    if link:
        return f"url:{link}"
    return None


# --- text ----------------------------------------------------------------------------

_COMMENT_RE = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
# Every class after a "<" stops at the next "<" too: "[^>]*" would rescan the rest of
# "<script <script <script …" from every match (quadratic: a 1 MB body took minutes).
_DROP_BLOCK_RE = re.compile(
    r"<(script|style|head|template)\b[^<>]*>.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL
)
# Only things that really look like tags: "<" + a letter-led name, then whitespace,
# "/" or ">". A plain-text "p<0.05" or "$n<m$" is left alone.
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
_BLOCK_TAG_RE = re.compile(
    r"</?(?:p|br|div|li|ul|ol|h[1-6]|tr|table|blockquote)\b[^<>]*>", re.IGNORECASE
)


def html_to_text(text: str | None) -> str:
    """Plain text from an HTML (or plain) fragment: tags dropped, entities decoded.

    Block tags become spaces so words either side do not run together; the result
    is whitespace-collapsed and free of control characters.
    """
    if not text:
        return ""
    # Capped before any regex: no feed field needs more, and the work stays bounded.
    text = text[:MAX_FIELD_CHARS]
    if "<" in text:  # most arXiv abstracts have neither markup nor entities
        if "<!--" in text:
            text = _COMMENT_RE.sub(" ", text)
        text = _DROP_BLOCK_RE.sub(" ", text)
        text = _BLOCK_TAG_RE.sub(" ", text)
        text = _TAG_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return clean_text(text)


# --- links ---------------------------------------------------------------------------

# Characters that may not appear raw in a URL we hand to HTML templates or headers.
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"
_TAB_NL_RE = re.compile("[\t\n\r]")


def safe_http_url(text: str | None, base: str | None = None) -> str | None:
    """``text`` as an absolute http(s) URL with a host, or ``None``.

    Entities are decoded and whitespace/control characters removed *before* the
    scheme is checked, so ``jav&#x61;script:``, ``java\\tscript:`` and
    ``\\x01javascript:`` are all recognised and refused. A relative link is
    resolved against ``base`` (the feed URL) when one is given.
    """
    if not text or len(text) > MAX_ID_CHARS:
        return None
    url = html.unescape(html.unescape(text))  # feeds double-escape more often than not
    # As browsers do (WHATWG URL): tabs and newlines vanish anywhere, other controls and
    # spaces at the ends; so "java\tscript:" is seen for what a browser would run.
    url = _TAB_NL_RE.sub("", url).strip("".join(map(chr, range(33))) + "\x7f\u00a0")
    url = strip_control(url)
    if not url:
        return None
    if base and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url):
        base_url = safe_http_url(base)
        if base_url is None:
            return None
        url = urljoin(base_url, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port, or brackets that are not an IPv6 literal
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    # Rebuilt from the host alone: user:password@ in a feed link is either a leak or a
    # phishing trick (https://arxiv.org@evil.example/), and neither belongs in an email.
    host = _clean_host(parts.hostname)
    if host is None:
        return None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit(
        (
            parts.scheme.lower(),
            netloc,
            quote(parts.path, safe=_URL_SAFE),
            quote(parts.query, safe=_URL_SAFE),
            quote(parts.fragment, safe=_URL_SAFE),
        )
    )


_HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")


def _clean_host(host: str) -> str | None:
    """A DNS name (IDNs as punycode) or a bracketed IPv6 literal; None for anything else."""
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host if len(host) <= 253 and _HOST_RE.match(host) else None


def host_of(url: str) -> str:
    """The host of ``url`` without a leading ``www.`` (a generic feed's source tag)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    return host.removeprefix("www.")


# --- dates ---------------------------------------------------------------------------

_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(value: str | time.struct_time | datetime | None) -> datetime | None:
    """An aware UTC datetime from ISO 8601, RFC 822 or feedparser's struct_time.

    A date without a zone is taken as UTC; an unparsable one is ``None``, never an
    exception, so one odd entry never breaks a feed.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, time.struct_time):
        try:
            dt = datetime(*value[:6], tzinfo=UTC)  # feedparser's are already UTC
        except (TypeError, ValueError):
            return None
    else:
        text = value.strip()
        if not text:
            return None
        parsed = _parse_date_text(text)
        if parsed is None:
            return None
        dt = parsed
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _parse_date_text(text: str) -> datetime | None:
    if _ISO_DATE_RE.match(text):
        text += "T00:00:00"
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


# --- storage limits ------------------------------------------------------------------

MAX_KEY = 600  # papers.key
MAX_DOI = 300  # papers.doi
MAX_URL = 2048  # papers.url, pdf_url, hf_url
MAX_CATEGORY = 40  # papers.primary_category
MAX_CATEGORIES = 20
MAX_TITLE = 1000
MAX_ABSTRACT = 20_000
MAX_AUTHOR = 300
MAX_AUTHORS = 500  # big physics collaborations list thousands; a digest shows a handful


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fit_to_storage(record: PaperRecord) -> str | None:
    """Trim a record to what the papers table and an email can hold, in place.

    Returns why the record must be skipped instead (its identity does not fit), or
    None. One absurd entry costs that entry, never the whole feed (a value too long
    for a column would fail the feed's transaction on PostgreSQL).
    """
    if len(record.key) > MAX_KEY:
        return f"{record.title[:80]}: identifier longer than {MAX_KEY} characters"
    if record.doi and len(record.doi) > MAX_DOI:
        if record.key.startswith("doi:"):
            return f"{record.title[:80]}: DOI longer than {MAX_DOI} characters"
        record.doi = None
    for name in ("url", "pdf_url", "hf_url"):
        value = getattr(record, name)
        if value and len(value) > MAX_URL:
            setattr(record, name, None)
    record.title = _cut(record.title, MAX_TITLE)
    record.abstract = _cut(record.abstract, MAX_ABSTRACT)
    record.authors = [_cut(a, MAX_AUTHOR) for a in record.authors[:MAX_AUTHORS]]
    record.categories = [c for c in record.categories if len(c) <= MAX_CATEGORY][:MAX_CATEGORIES]
    if record.primary_category and len(record.primary_category) > MAX_CATEGORY:
        record.primary_category = None
    return None
