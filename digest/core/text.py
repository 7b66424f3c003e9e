"""The one sanitiser of untrusted text: feed titles, abstracts, author names, labels.

Ingest cleans what it stores with it, render cleans what it lays out with it, the
message builder cleans every header value with it: one character set, one rule.

Removed everywhere: C0 and C1 controls (tab, CR and LF are whitespace and are
collapsed), DEL, bidirectional embeddings, overrides, isolates and marks (they can
make "gpj.exe" read as "exe.jpg", or a topic label lie about itself), zero-width
characters used to smuggle text past a reader, the BOM, interlinear annotation
characters, and unpaired surrogates. The Unicode line and paragraph separators
(U+2028, U+2029) are whitespace: in one-line text they become a space.

Everything here is linear in the input and total: any value in, a string out.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from digest.core.caches import memoize

#: The characters no untrusted text keeps (see the module docstring).
UNSAFE_CHARACTERS = (
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # controls, except tab, LF and CR
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, isolates
    "\u200b\u2060-\u2064\ufeff"  # zero-width space, word joiner, invisible operators, BOM
    "\u2028\u2029"  # line and paragraph separators
    "\ufff9-\ufffb"  # interlinear annotations
    "\ud800-\udfff"  # unpaired surrogates
)
_UNSAFE = re.compile(f"[{UNSAFE_CHARACTERS}]")


def strip_control(text: str) -> str:
    """``text`` without the unsafe characters; tab, CR and LF are kept (as whitespace)."""
    return _UNSAFE.sub("", text)


def collapse_ws(text: str | None) -> str:
    """Every run of whitespace (CR/LF and tabs included) becomes one space; ends trimmed."""
    if not text:
        return ""
    # str.split() splits on exactly what \s matches, and is several times faster.
    return " ".join(text.split())


def clean_text(value: object, limit: int | None = None) -> str:
    """One line of untrusted text: NFC, unsafe characters gone, whitespace collapsed.

    ``limit`` cuts the result to that many characters, the last one an ellipsis.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split())
    # isprintable() is False for every control and format character (and for a few
    # harmless ones): only then is the slower regex pass needed.
    if not text.isprintable():
        text = " ".join(_UNSAFE.sub("", text).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


#: Subjects longer than this are cut (RFC 5322 recommends 78 per line; clients show ~60-90).
SUBJECT_MAX = 120


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


@memoize(maxsize=8192)
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


__all__ = [
    "SUBJECT_MAX",
    "UNSAFE_CHARACTERS",
    "clean_text",
    "collapse_ws",
    "header_safe",
    "safe_url",
    "strip_control",
]
