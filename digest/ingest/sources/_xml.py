"""Bytes to a safe ElementTree, with honest error messages.

Parsers get raw bytes (``digest.fetch`` decodes nothing). Charset handling lives
here: the XML declaration is honoured, but a body that contradicts it (latin-1
bytes declared UTF-8, UTF-8 bytes declared latin-1 — both seen in the wild) is
read the way it was obviously meant instead of failing or turning into mojibake.
"""

from __future__ import annotations

import codecs
import re
from xml.etree.ElementTree import Element, ParseError
from xml.parsers import expat

import defusedxml
import defusedxml.ElementTree as SafeET

from digest.errors import FeedFormatError

_DECL_RE = re.compile(
    rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.IGNORECASE
)
_PROLOG_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
# Characters XML 1.0 forbids outright. Real feeds do carry stray ones (a form feed
# pasted into an abstract); dropping them beats losing the whole feed.
_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0e-\x1f\ufffe\uffff]")
_XML_ILLEGAL_SPACE_RE = re.compile("[\x0b\x0c]")  # vertical tab, form feed: still whitespace
# An HTML page, possibly behind a byte-order mark, an XML declaration (XHTML) or comments.
_HTML_START_RE = re.compile(
    rb"^(?:\xef\xbb\xbf)?(?:\s|<!--.*?-->|<\?xml[^>]*\?>)*"
    rb"<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_NON_ASCII_RE = re.compile("[^\x00-\x7f\ufffd]")
_LATIN1_NAMES = {
    "latin-1",
    "latin1",
    "iso-8859-1",
    "iso8859-1",
    "windows-1252",
    "cp1252",
    "us-ascii",
    "ascii",
}

_SNIFF_LIMIT = 1 << 20


def looks_like_html(body: bytes) -> bool:
    return bool(_HTML_START_RE.match(body[:4096]))


def refuse_entity_declarations(body: bytes) -> None:
    """Refuse a DTD that declares entities: the shape of billion-laughs and XXE bodies.

    No real feed format we read needs entity declarations, so this costs nothing and
    keeps feedparser (which has no defusedxml switch) out of harm's way too. A plain
    scan, not a regex: ``<!DOCTYPE[^[>]*`` retried after every ``<!DOCTYPE`` of a
    hostile body rescans the rest of it each time (quadratic; minutes for 1 MB).
    """
    head = body[:_SNIFF_LIMIT].upper()
    doctype = head.find(b"<!DOCTYPE")
    # Entities can only be declared inside a DTD; any <!ENTITY after a <!DOCTYPE is
    # refused, even in a malformed or second DTD that a loose parser might still read.
    if doctype >= 0 and head.find(b"<!ENTITY", doctype) >= 0:
        raise FeedFormatError(
            "XML declares entities in its DTD (an XML bomb or external-entity attack?); "
            "refusing to parse"
        )


def declared_encoding(body: bytes) -> str | None:
    m = _DECL_RE.match(body[:200])
    return m.group(1).decode("ascii").lower() if m else None


def decode_xml(body: bytes) -> str:
    """Decode an XML body, trusting the bytes over a declaration they contradict."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, errors="replace")
    declared = declared_encoding(body)
    if declared in (None, "utf-8", "utf8"):
        return decode_utf8(body)
    if declared in _LATIN1_NAMES:
        if not body.isascii():
            try:
                # Non-ASCII latin-1 text is practically never valid UTF-8 by accident,
                # so a body that decodes as UTF-8 was mislabelled.
                return body.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return decode_single_byte(body)
    try:
        return body.decode(declared, errors="replace")
    except LookupError:  # an encoding name Python does not know
        return body.decode("utf-8", errors="replace")


def decode_utf8(body: bytes) -> str:
    """UTF-8 as declared (or defaulted to), with the two ways real feeds break it.

    A few broken sequences among many good ones (a CMS that cut a string in the middle
    of a character) cost only those bytes, as U+FFFD. Not one good multi-byte sequence
    means the body was never UTF-8: almost always windows-1252, read as such.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = body.decode("utf-8", errors="replace")
    broken = text.count("\ufffd") - body.count("\ufffd".encode())
    good = sum(1 for _ in _NON_ASCII_RE.finditer(text))
    return text if good > broken else decode_single_byte(body)


def with_http_charset(body: bytes, content_type: str | None) -> bytes:
    """The body as UTF-8 when only the HTTP ``Content-Type`` says what charset it is in.

    The document's own word wins: a byte-order mark or an XML encoding declaration, or
    bytes that already are valid UTF-8 (a header claiming latin-1 over UTF-8 is a common
    server default). Otherwise the header's charset is applied, instead of our guess.
    """
    match = _CHARSET_RE.search(content_type or "")
    if not match or body.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body
    if declared_encoding(body) is not None:
        return body
    try:
        body.decode("utf-8")
        return body
    except UnicodeDecodeError:
        pass
    try:
        return body.decode(match.group(1), errors="replace").encode("utf-8")
    except LookupError:  # a charset name Python does not know: keep guessing from the bytes
        return body


def decode_single_byte(body: bytes) -> str:
    try:
        return body.decode("cp1252")
    except UnicodeDecodeError:  # cp1252 leaves five bytes undefined; latin-1 has them all
        return body.decode("latin-1")


def xml_text(body: bytes) -> str:
    """The document as text: decoded as meant, without its XML declaration (which would
    name the wrong encoding now) and without characters XML 1.0 forbids."""
    text = _XML_ILLEGAL_RE.sub("", _PROLOG_RE.sub("", decode_xml(body), count=1))
    return _XML_ILLEGAL_SPACE_RE.sub(" ", text)


def parse_xml(body: bytes) -> Element:
    """Parse untrusted bytes into an Element, or raise :class:`FeedFormatError`."""
    if not body.strip():
        raise FeedFormatError("empty response body, expected a feed")
    if looks_like_html(body):
        raise FeedFormatError("got an HTML page, not a feed")
    refuse_entity_declarations(body)
    text = xml_text(body)
    try:
        root = SafeET.fromstring(text)
    except defusedxml.DefusedXmlException as exc:
        raise FeedFormatError(f"refusing unsafe XML: {exc}") from None
    except ParseError as exc:
        raise FeedFormatError(f"not XML: {_describe_parse_error(exc)}") from None
    if _local(root.tag).lower() == "html":
        raise FeedFormatError("got an HTML page, not a feed")
    return root


def well_formed_problem(data: bytes) -> str | None:
    """Where ``data`` stops being well-formed XML (expat, in C: linear), or None.

    Only for bodies already past :func:`refuse_entity_declarations`; expat expands no
    external entities and refuses parameter entities here.
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        return f"line {exc.lineno}, column {exc.offset}: {expat.ErrorString(exc.code)}"
    return None


def _describe_parse_error(exc: ParseError) -> str:
    message = str(exc)
    line, column = getattr(exc, "position", (None, None))
    if line is None:
        return message
    # expat says "syntax error: line 1, column 0"; we lead with where, then what.
    what = re.sub(r":\s*line \d+, column \d+\s*$", "", message)
    return f"line {line}, column {column}: {what}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def local_name(tag: str) -> str:
    return _local(tag)


def child_text(el: Element, path: str, ns: dict[str, str]) -> str:
    found = el.find(path, ns)
    return "".join(found.itertext()) if found is not None else ""
