"""Build the bytes of one email: multipart/alternative, UTF-8, list headers, DKIM.

The message is assembled by hand with the stdlib's C encoders (``binascii``)
instead of ``email.message.EmailMessage``: on a 53 KB digest that is ~0.4 ms
instead of ~3.5 ms, which was most of the CPU of a whole send. The output is
plain RFC 5322/2045/2047 and every test parses it back with the ``email``
package.

Nothing from a feed or a subscriber reaches a header as is: header values are
stripped of control characters (so no header ever gains a line), non-ASCII text
becomes RFC 2047 encoded-words, and long lines are folded.
"""

from __future__ import annotations

import binascii
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from hashlib import sha256
from pathlib import Path
from typing import Protocol

import dkim

from digest.config import Settings
from digest.core.addresses import clean_address, clean_domain, split_from
from digest.core.caches import memoize
from digest.core.text import header_safe, safe_url
from digest.errors import MessageError

CRLF = "\r\n"
#: Headers the DKIM signature covers (From twice: an added second From breaks it).
DKIM_HEADERS = (
    b"From",
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
    b"Auto-Submitted",
    b"Reply-To",
    b"In-Reply-To",
)

_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# A Message-ID we quote back (In-Reply-To) comes from a stranger: only a plain one passes.
_QUOTABLE_ID = re.compile(r"<[!-;=?-~]{1,200}@[!-;=?-~]{1,200}>")
AUTO_SUBMITTED = ("auto-generated", "auto-replied")


class EmailContent(Protocol):
    """What a rendered email gives the builder (``digest.render.RenderedEmail`` is one)."""

    @property
    def subject(self) -> str: ...

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class BuiltMessage:
    """What the transport needs: envelope sender and recipient, the bytes, the id."""

    envelope_from: str
    to: str
    message_id: str
    data: bytes


# --- addresses and ids ------------------------------------------------------------------


def make_message_id(key: int | str, domain: str) -> str:
    """``<digest-{key}.{hash}@{domain}>``: the same key always gives the same id.

    The pipeline passes the digest row's id, so a resend of the same digest carries
    the same Message-ID and a mail client shows one message, not two. The hash
    keeps ids from different keys that sanitise alike distinct.
    """
    raw = str(key)
    safe = _ID_UNSAFE.sub("-", raw).strip("-.")[:64] or "x"
    host = clean_domain(domain)
    tag = sha256(f"{raw}@{host}".encode()).hexdigest()[:10]
    return f"<digest-{safe}.{tag}@{host}>"


# --- header encoding ---------------------------------------------------------------------


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 encoded-words of at most 75 characters, split between characters."""
    words: list[bytes] = []
    chunk = b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > 39:  # 39 bytes -> 52 base64 chars -> 64 with the wrapper
            words.append(chunk)
            chunk = b""
        chunk += b
    if chunk:
        words.append(chunk)
    return ["=?utf-8?b?" + binascii.b2a_base64(w, newline=False).decode() + "?=" for w in words]


def _fold(name: str, tokens: list[str]) -> str:
    """``Name: tok tok …`` folded before a token when a line would pass 78 characters."""
    lines: list[str] = []
    line = f"{name}:"
    for token in tokens:
        if len(line) + 1 + len(token) > 78 and line != f"{name}:":
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
    lines.append(line)
    return CRLF.join(lines) + CRLF


@memoize(maxsize=4096)
def encode_text_header(name: str, value: str) -> str:
    """An unstructured header (e.g. Subject): one line of text, folded, 2047 if needed.

    Cached: readers with the same topics and counts share a subject."""
    text = header_safe(value, 300)
    if text.isascii() and "=?" not in text:
        return _fold(name, text.split(" ") if text else [""])
    return _fold(name, _encoded_words(text))


def encode_phrase(phrase: str) -> str:
    """A display name: atoms as is, else a quoted string, else encoded-words."""
    text = header_safe(phrase, 120)
    if not text:
        return ""
    if text.isascii():
        if _ATEXT_PHRASE.match(text):
            return text
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(_encoded_words(text))


def format_address(name: str, address: str) -> str:
    phrase = encode_phrase(name)
    return f"{phrase} <{address}>" if phrase else address


def list_unsubscribe(unsubscribe_url: str, mailto: str) -> str:
    url = safe_url(unsubscribe_url)
    if not url or (not url.startswith("https://") and not url.startswith("http://")):
        raise MessageError(f"unsubscribe URL must be http(s): {unsubscribe_url!r}")
    # The mailto is the reader's signed unsubscribe address when `digest inbound` runs
    # (mail to it unsubscribes), else the sender's mailbox.
    return f"<{url}>, <mailto:{mailto}?subject=unsubscribe>"


# --- body encoding -----------------------------------------------------------------------


def _crlf(text: str) -> bytes:
    """``text`` in UTF-8 with CRLF line ends (the canonical form of a text part)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", "\r\n").encode("utf-8")


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (long lines are soft-broken at 76)."""
    return binascii.b2a_qp(_crlf(text), quotetabs=False, istext=True, header=False)


#: Base64 lines of 76 characters (RFC 2045), from 57 bytes of content each.
_B64_LINE = 76
#: The HTML part's transfer encoding. Base64 costs ~0.3 ms less CPU per digest than
#: quoted-printable but is ~22 % more bytes per message (bench/README.md, "Render, MIME
#: and SMTP per digest"); "quoted-printable" here is the other choice.
HTML_ENCODING = "base64"


def _base64(text: str) -> bytes:
    """Base64 of the CRLF form, in lines of 76 characters each ending in CRLF.

    For the HTML part: MJML's lines run to thousands of characters, which
    quoted-printable has to break and escape (every ``=`` of every ``style=``)
    byte by byte, ~0.6 ms for a 65 KB digest; this is one C call and a split.
    """
    encoded = memoryview(binascii.b2a_base64(_crlf(text), newline=False))
    lines = [encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE)]
    return b"\r\n".join(lines)


def _part(content_type: str, text: str, encoding: str = "quoted-printable") -> bytes:
    body = _base64(text) if encoding == "base64" else _qp(text)
    return (
        (
            f"Content-Type: {content_type}; charset=utf-8{CRLF}"
            f"Content-Transfer-Encoding: {encoding}{CRLF}{CRLF}"
        ).encode()
        + body
        + b"\r\n"
    )  # this CRLF belongs to the next boundary line


# --- DKIM --------------------------------------------------------------------------------


@memoize(maxsize=4)
def _dkim_key(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


def dkim_sign(data: bytes, selector: str, domain: str, private_key: bytes) -> bytes:
    """``data`` with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
    present = {
        line.split(b":", 1)[0].strip().lower()
        for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    }
    headers = [h for h in DKIM_HEADERS if h.lower() in present or h == b"From"]
    signature = dkim.sign(
        data,
        selector.encode(),
        domain.encode(),
        private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=headers,
        linesep=b"\r\n",
    )
    return signature + data


# --- the message -------------------------------------------------------------------------


def build_message(
    settings: Settings,
    rendered: EmailContent,
    *,
    to: str,
    message_id: str,
    unsubscribe_url: str | None,
    date: datetime | None = None,
    list_id: str | None = None,
    return_path: str | None = None,
    reply_to: str | None = None,
    unsubscribe_mailto: str | None = None,
    in_reply_to: str | None = None,
    auto_submitted: str = "auto-generated",
) -> BuiltMessage:
    """The full message for one recipient, ready for :meth:`Transport.send`.

    ``unsubscribe_url`` is the one-click (RFC 8058) URL; it is required for every
    digest. Pass None only for a transactional email to someone not (yet)
    subscribed, such as the double opt-in confirmation.

    Mail in (`digest inbound`) adds: ``return_path``, the envelope sender (a digest's
    VERP address; default the From address); ``reply_to``, where a reply goes;
    ``unsubscribe_mailto``, the address of List-Unsubscribe's mailto (default the
    From address); ``in_reply_to``, the Message-ID answered (dropped unless plain);
    ``auto_submitted``, "auto-replied" for an answer to a message (RFC 3834).
    """
    _name, from_address = split_from(settings.from_addr)
    sender = clean_address(from_address)
    recipient = clean_address(to)
    envelope_from = clean_address(return_path) if return_path else sender
    if auto_submitted not in AUTO_SUBMITTED:
        raise MessageError(f"Auto-Submitted must be one of {AUTO_SUBMITTED}: {auto_submitted!r}")
    domain = sender.rpartition("@")[2]
    if not re.fullmatch(r"<[A-Za-z0-9._+\-=]+@[A-Za-z0-9.\-]+>", message_id):
        raise MessageError(f"bad Message-ID {message_id!r}: use make_message_id()")
    when = (date or datetime.now(UTC)).astimezone(UTC)
    # From the content, not random: the same email built twice (a preview and the send,
    # a resend) is the same bytes but for Date and Message-ID. "=_" never occurs in a
    # quoted-printable or base64 body, so the boundary cannot clash with the content.
    content = f"{rendered.text}\0{rendered.html}".encode()
    boundary = f"==_{zlib.crc32(content):08x}{len(content):x}"
    brand = settings.brand
    headers = [
        _fold("From", format_address(brand, sender).split(" ")),
        f"To: {recipient}{CRLF}",
        encode_text_header("Subject", rendered.subject),
        f"Date: {format_datetime(when)}{CRLF}",
        f"Message-ID: {message_id}{CRLF}",
        f"MIME-Version: 1.0{CRLF}",
        f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}',
        f"Auto-Submitted: {auto_submitted}{CRLF}",
        f"X-Auto-Response-Suppress: All{CRLF}",
    ]
    if reply_to:
        headers.append(_fold("Reply-To", format_address(brand, clean_address(reply_to)).split(" ")))
    if in_reply_to and _QUOTABLE_ID.fullmatch(in_reply_to.strip()):
        quoted = in_reply_to.strip()
        headers.append(f"In-Reply-To: {quoted}{CRLF}")
        headers.append(f"References: {quoted}{CRLF}")
    if unsubscribe_url is not None:
        list_tokens = [*encode_phrase(brand).split(" "), f"<{list_id or 'digest.' + domain}>"]
        headers.append(_fold("List-Id", [t for t in list_tokens if t]))
        headers.append(
            _fold(
                "List-Unsubscribe",
                list_unsubscribe(
                    unsubscribe_url, clean_address(unsubscribe_mailto or sender)
                ).split(" "),
            )
        )
        if unsubscribe_url.startswith("https://"):
            # RFC 8058 one-click is for https only; over http the header would be a lie
            # that mailbox providers punish.
            headers.append(f"List-Unsubscribe-Post: List-Unsubscribe=One-Click{CRLF}")
    head = "".join(headers).encode("ascii")
    dash = f"--{boundary}".encode()
    data = b"".join(
        (
            head,
            b"\r\nThis is a multi-part message in MIME format.\r\n\r\n",
            dash,
            b"\r\n",
            _part("text/plain", rendered.text),
            dash,
            b"\r\n",
            # The text part stays quoted-printable: short lines, readable as it is sent.
            _part("text/html", rendered.html, HTML_ENCODING),
            dash,
            b"--\r\n",
        )
    )
    if settings.dkim_key_file and settings.dkim_selector:
        key_path = Path(settings.dkim_key_file)
        key = _dkim_key(str(key_path), key_path.stat().st_mtime)
        data = dkim_sign(data, settings.dkim_selector, domain, key)
    return BuiltMessage(envelope_from=envelope_from, to=recipient, message_id=message_id, data=data)


__all__ = [
    "BuiltMessage",
    "MessageError",
    "build_message",
    "clean_address",
    "dkim_sign",
    "encode_text_header",
    "make_message_id",
]
