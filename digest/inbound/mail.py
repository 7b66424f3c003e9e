"""One received message, read defensively: headers, sender, the text that holds commands.

Mail comes from strangers and from broken software: no From, two From lines,
8-bit bytes in headers, a charset nobody knows, MIME that does not parse,
parts nested a thousand deep, a 100 KB line. Reading it never raises and never
takes more than linear time: the whole message is at most the listener's size
cap, header values are cut at :data:`HEADER_MAX` before decoding, the MIME tree is
walked iteratively over at most :data:`MAX_PARTS` parts and :data:`MAX_DEPTH`
levels, and only the first :data:`LINES_KEEP` lines of the text are kept, each cut
at :data:`LINE_KEEP` characters.
"""

from __future__ import annotations

import codecs
import contextlib
import email
import email.policy
import hashlib
import html as html_module
import io
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser

from digest.core.text import clean_text
from digest.errors import SubscriptionError
from digest.subscriptions.validate import normalise_email

HEADER_MAX = 2000
#: The commands' text keeps this many lines, each cut at LINE_KEEP characters (a longer
#: line is refused whole by the command reader, which only needs to see that it is long).
LINES_KEEP = 200
LINE_KEEP = 2000
TEXT_MAX = LINES_KEEP * (LINE_KEEP + 1)
#: At most this much of a part is decoded (the listener's size cap is far below).
PART_MAX = 4 * 1024 * 1024
HTML_MAX = 100_000
MAX_PARTS = 200
MAX_DEPTH = 20
MAX_MULTIPARTS = 50

_ANGLE = re.compile(r"<([^<>\s]{3,320})>")
_BARE = re.compile(r"^[^\s<>,;\"()]{1,320}@[^\s<>,;\"()]{1,255}$")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}>")


@dataclass
class Mail:
    """What the handlers need from one message; every field already bounded and cleaned."""

    raw: bytes
    message: Message | None
    from_addr: str | None  # the one sender address, validated, or None
    from_problem: str  # why there is no usable From, if so
    subject: str
    message_id: str | None
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased name -> value
    text: str = ""  # the commands' text: the first text/plain part (or the HTML's text)
    report_type: str = ""  # multipart/report's report-type (delivery-status, feedback-report)
    defects: list[str] = field(default_factory=list)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse(raw: bytes) -> Mail:
    """Read ``raw`` (the bytes as received); total: anything in, a :class:`Mail` out."""
    defects: list[str] = []
    try:
        if raw.lower().count(b"multipart/") > MAX_MULTIPARTS:
            # The stdlib parser recurses per nesting level and is quadratic in the depth:
            # no real message nests this much; read its headers only.
            raise ValueError(f"more than {MAX_MULTIPARTS} multipart parts")
        # compat32: the lenient parser. The default policy's header parser builds
        # structured objects from stranger input (and had quadratic cases).
        message: Message | None = email.message_from_bytes(raw, policy=email.policy.compat32)
    except (Exception, RecursionError) as exc:  # MIME nested beyond Python's stack
        message = None
        defects.append(f"unparseable MIME: {type(exc).__name__}")
    if message is not None:
        headers = _headers(message)
    else:  # the headers alone, so the sender can still be told
        try:
            headers = _headers(BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw))
        except Exception:
            headers = {}
    from_addr, from_problem = sender(headers.get("from", ""), "from" in headers)
    text, report_type = ("", "")
    if message is not None:
        try:
            text, report_type = _text_and_report(message, defects)
        except (Exception, RecursionError) as exc:  # malformed MIME: no commands
            defects.append(f"malformed MIME: {type(exc).__name__}")
    return Mail(
        raw=raw,
        message=message,
        from_addr=from_addr,
        from_problem=from_problem,
        subject=clean_text(headers.get("subject", ""), 300),
        message_id=message_id(headers.get("message-id", "")),
        headers=headers,
        text=text,
        report_type=report_type,
        defects=defects,
    )


def header_value(value: object) -> str:
    """One header's text: 8-bit bytes read as UTF-8 (else Latin-1), RFC 2047 decoded."""
    if isinstance(value, Header):
        # compat32 hands back raw 8-bit header bytes as a Header of "unknown-8bit".
        try:
            parts = decode_header(value)
        except Exception:
            parts = []
        text = "".join(
            _bytes_text(chunk[: HEADER_MAX * 4]) if isinstance(chunk, bytes) else str(chunk)
            for chunk, _charset in parts
        )[:HEADER_MAX]
    else:
        text = str(value)[:HEADER_MAX] if value is not None else ""
    if any("\udc80" <= c <= "\udcff" for c in text):
        # Raw 8-bit bytes (the parser keeps them as surrogates): most likely UTF-8.
        text = _bytes_text(text.encode("ascii", "surrogateescape"))
    if "=?" in text:
        with contextlib.suppress(Exception):  # a broken encoded-word: keep the text as is
            text = str(make_header(decode_header(text)))
    return clean_text(text, HEADER_MAX)


def _bytes_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _headers(message: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for count, (name, value) in enumerate(message.items()):
        if count >= 500:
            break
        key = str(name).strip().lower()[:100]
        if key in out:
            # A second From or Subject is a forgery's trick: keep both for the checks.
            if key == "from":
                out[key] += ", " + header_value(value)
            continue
        out[key] = header_value(value)
    return out


def sender(value: str, present: bool = True) -> tuple[str | None, str]:
    """(the one address of a From value, or None, and why not)."""
    if not present or not value.strip():
        return None, "the message has no From address"
    found = _ANGLE.findall(value)
    if len(found) > 1 or (not found and value.count("@") > 1):
        return None, "the From line names more than one address"
    candidate = found[0] if found else value.strip()
    if not found and not _BARE.match(candidate):
        return None, "the From line holds no plain email address"
    try:
        address, _key = normalise_email(candidate)
    except SubscriptionError as exc:
        return None, f"the From address is not valid ({exc})"
    return address, ""


def message_id(value: str) -> str | None:
    match = _MESSAGE_ID.search(value or "")
    return match.group(0) if match else None


def content_key(raw: bytes) -> str:
    """A stable key for a message without a Message-ID: its sender, date, subject, body.

    Trace headers (Received, Delivered-To) differ between two deliveries of the same
    message; these do not.
    """
    head, _sep, body = raw.partition(b"\r\n\r\n")
    if not _sep:
        head, _sep, body = raw.partition(b"\n\n")
    wanted = (b"from:", b"date:", b"subject:", b"to:")
    picked = [line.strip() for line in head.splitlines() if line.lower().startswith(wanted)]
    hasher = hashlib.sha256(b"\n".join(sorted(picked)))
    hasher.update(b"\n\n")
    hasher.update(body)
    return hasher.hexdigest()


# --- the body -------------------------------------------------------------------------


def walk(message: Message) -> list[tuple[int, Message]]:
    """(depth, part) for at most :data:`MAX_PARTS` parts, :data:`MAX_DEPTH` deep, iteratively."""
    out: list[tuple[int, Message]] = []
    stack: list[tuple[int, Message]] = [(0, message)]
    while stack and len(out) < MAX_PARTS:
        depth, part = stack.pop()
        out.append((depth, part))
        if depth >= MAX_DEPTH:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [p for p in payload[:MAX_PARTS] if isinstance(p, Message)]
            stack.extend((depth + 1, child) for child in reversed(children))
    return out


def part_text(part: Message, limit: int = TEXT_MAX) -> str:
    """A leaf part's text, decoded (transfer encoding, then charset), first ``limit`` chars."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        charset = "utf-8"
    try:
        # 4 bytes per character at most: decode no more than the text we keep.
        return data[: limit * 4].decode(charset, "replace")[:limit]
    except Exception:
        return data[: limit * 4].decode("utf-8", "replace")[:limit]


def _text_and_report(message: Message, defects: list[str]) -> tuple[str, str]:
    report_type = ""
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "") or "").lower()[:40]
    plain: str | None = None
    html: str | None = None
    for _depth, part in walk(message):
        if part.is_multipart():
            continue
        if str(part.get("content-disposition", "")).lower().startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = compact(part_text(part, PART_MAX))
        elif ctype == "text/html" and html is None:
            html = html_text(part_text(part, HTML_MAX))
        if plain is not None:
            break
    if message.defects:
        defects.extend(type(d).__name__ for d in message.defects[:10])
    text = plain if plain is not None else compact(html or "")
    return text, report_type


def compact(text: str) -> str:
    """The first :data:`LINES_KEEP` lines, each cut at :data:`LINE_KEEP` characters."""
    lines: list[str] = []
    for line in io.StringIO(text, newline=None):  # lazily: stop after LINES_KEEP lines
        lines.append(line.rstrip("\n")[:LINE_KEEP])
        if len(lines) >= LINES_KEEP:
            break
    return "\n".join(lines)


# A tag runs to the next ">" or the next "<", whichever comes first: "[^<>]*" cannot
# run past the next tag, so the scan is linear whatever the input ("<script <script …"
# made html.parser, and "[^>]*", quadratic: NOTES.md).
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]{0,20})?[^<>]*>?")
_SKIPPED = frozenset({"script", "style", "head", "blockquote", "title"})
_BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "table"})


def html_text(html: str) -> str:
    """The text of an HTML body (only when a message has no text/plain part), in one pass.

    Scripts, styles and quoted replies (blockquote) are left out; block tags become
    line breaks; entities are decoded.
    """
    chunks: list[str] = []
    skip = 0
    last = 0
    source = html[:PART_MAX]
    for match in _TAG.finditer(source):
        if not skip:
            chunks.append(source[last : match.start()])
        last = match.end()
        closing, name = match.group(1), (match.group(2) or "").lower()
        if name in _SKIPPED:
            skip = max(0, skip - 1) if closing else skip + 1
        if name in _BREAKS or (closing and name in _SKIPPED):
            chunks.append("\n")
    if not skip:
        chunks.append(source[last:])
    return html_module.unescape("".join(chunks))


__all__ = ["Mail", "content_key", "header_value", "html_text", "message_id", "parse", "sender"]
