"""Email addresses as headers and the SMTP envelope need them (no I/O, no DNS).

Validating what a stranger typed into a form is :mod:`digest.subscriptions.validate`'s
job (email-validator); this module turns an address we already hold into the bare
form a header can carry, and reads ``DIGEST_FROM``.
"""

from __future__ import annotations

import re

from digest.core.text import clean_text
from digest.errors import MessageError

_NAME_AND_ADDRESS = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>\s*$", re.DOTALL)
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$")


def split_from(value: str) -> tuple[str, str]:
    """``'Paper Digest <d@x.org>'`` -> ``('Paper Digest', 'd@x.org')``.

    Our own reading rather than ``email.utils.parseaddr``, whose answer for odd
    display names changed between Python 3.11 patch releases (CVE-2023-27043): the
    address is what is inside the last angle brackets, or the whole value.
    """
    value = " ".join(value.split())
    match = _NAME_AND_ADDRESS.match(value)
    if not match:
        return "", value
    name = match.group("name").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"')
    return name, match.group("address").strip()


def clean_domain(domain: str) -> str:
    """``domain`` lower-cased in its IDNA form, or ``localhost`` if it is no domain."""
    host = clean_text(domain).strip().strip(".").lower()
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        host = ""
    return host if host and _DOMAIN.match(host) else "localhost"


def clean_address(address: str) -> str:
    """A bare ``local@domain`` fit for a header and the SMTP envelope.

    A non-ASCII domain becomes its IDNA (punycode) form; a non-ASCII local part
    would need SMTPUTF8, which we do not use, so it is refused clearly.
    """
    text = (address or "").strip()
    if any(ord(c) < 32 or c == "\x7f" for c in text) or any(c in text for c in ' <>,;"()[]\\'):
        raise MessageError(f"not a plain email address: {address!r}")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise MessageError(f"not an email address: {address!r}")
    if not local.isascii():
        raise MessageError(f"non-ASCII local part needs SMTPUTF8, not supported: {address!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as exc:
        raise MessageError(f"bad domain in {address!r}: {exc}") from None
    if not _DOMAIN.match(ascii_domain):
        raise MessageError(f"bad domain in {address!r}")
    return f"{local}@{ascii_domain}"


def strip_root_dot(address: str) -> str:
    """``ada@example.org.`` -> ``ada@example.org``: the same mailbox, written fully
    qualified (the DNS root). Only one dot goes; ``example.org..`` stays invalid."""
    text = (address or "").strip()
    if "@" in text and text.endswith(".") and not text.endswith(".."):
        return text[:-1]
    return text


def email_key(email: str) -> str:
    """The lower-cased address: one subscription (and one suppression) per mailbox.

    A non-ASCII domain is keyed by its IDNA (punycode) form, the form mail goes out
    with, so ``ada@bücher.example`` and ``ada@xn--bcher-kva.example`` are one mailbox;
    a trailing dot of the domain is dropped, so ``ada@example.org.`` (as a bounce may
    name it) is that mailbox too.
    """
    text = strip_root_dot(email).lower()
    local, at, domain = text.rpartition("@")
    if at and not domain.isascii():
        try:
            return f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            return text
    return text


__all__ = ["clean_address", "clean_domain", "email_key", "split_from", "strip_root_dot"]
