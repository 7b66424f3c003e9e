"""The message bytes, parsed back with the `email` package; DKIM verified with dkimpy."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import dkim
import pytest
from support.emailkit import context, email_settings, hostile_papers, seed_papers

from digest.core.addresses import clean_address
from digest.deliver.message import build_message, make_message_id
from digest.errors import MessageError
from digest.render.emails import RenderedEmail, render_digest, render_simple

UNSUB = "https://digest.example.org/unsubscribe/tok"
ALLOWED_HEADERS = {
    "dkim-signature",
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "auto-submitted",
    "x-auto-response-suppress",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
}


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def header_lines(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def assert_well_formed(data: bytes) -> None:
    """7-bit, CRLF only, short lines, and only the header names we write."""
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert b"\x00" not in data
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
    names = []
    for line in header_lines(data):
        if line[:1] in (" ", "\t"):
            continue
        name, colon, _ = line.partition(":")
        assert colon, line
        names.append(name.lower())
    assert set(names) <= ALLOWED_HEADERS, set(names) - ALLOWED_HEADERS
    assert len(names) == len(set(names))
    assert not parse(data).defects


def build(rendered: RenderedEmail | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    settings = kwargs.pop("settings", None) or email_settings()
    rendered = rendered or render_digest(context(settings, seed_papers(5)))
    values: dict[str, object] = {
        "to": "ada@example.org",
        "message_id": make_message_id(42, settings.from_domain),
        "unsubscribe_url": UNSUB,
        "date": datetime(2026, 11, 29, 7, 0, tzinfo=UTC),
    }
    values.update(kwargs)
    return rendered, build_message(settings, rendered, **values)  # type: ignore[arg-type]


def test_headers_and_parts_parse_back() -> None:
    rendered, built = build()
    assert_well_formed(built.data)
    msg = parse(built.data)
    assert msg["From"].addresses[0].display_name == "Paper Digest"
    assert msg["From"].addresses[0].addr_spec == "digest@digest.example.org"
    assert msg["To"] == "ada@example.org"
    assert msg["Subject"] == rendered.subject
    assert parsedate_to_datetime(msg["Date"]) == datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
    assert msg["Message-ID"] == built.message_id
    assert built.message_id.endswith("@digest.example.org>")
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Id"] == "Paper Digest <digest.digest.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    assert links[0] == UNSUB
    assert links[1].startswith("mailto:digest@digest.example.org?subject=unsubscribe")
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == rendered.text
    assert parts[1].get_content().replace("\r\n", "\n") == rendered.html.replace("\r\n", "\n")
    assert built.envelope_from == "digest@digest.example.org" and built.to == "ada@example.org"


@pytest.mark.parametrize("which", ["seed", "hostile", "crlf"])
def test_html_part_is_base64_and_both_parts_decode_to_what_was_rendered(which: str) -> None:
    settings = email_settings()
    if which == "crlf":
        # Line ends of every kind in the content: both parts carry the CRLF form.
        rendered = RenderedEmail("s", "<p>a</p>\r\n<p>b\rc</p>\n" * 500, "a\rb\r\nc\n" * 50)
    else:
        papers = seed_papers(30) if which == "seed" else hostile_papers()
        rendered = render_digest(context(settings, papers))
    _, built = build(rendered, settings=settings)
    assert_well_formed(built.data)
    text_part, html_part = parse(built.data).iter_parts()
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part["Content-Transfer-Encoding"] == "base64"
    lines = built.data.split(b"\r\n\r\n")[-1].split(b"\r\n")[:-2]
    assert lines and all(len(line) <= 76 for line in lines)

    def crlf(text: str) -> bytes:
        return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode()

    assert html_part.get_payload(decode=True) == crlf(rendered.html)
    assert text_part.get_payload(decode=True) == crlf(rendered.text)
    assert html_part.get_content() == crlf(rendered.html).decode()


def test_non_ascii_headers_use_rfc2047() -> None:
    settings = email_settings(from_addr="Überblick Papers 📚 <digest@digest.example.org>")
    rendered = RenderedEmail(
        "7 new papers · 安全性, Sicherheit — 29 Nov " + "é" * 80, "<p>x</p>", "x"
    )
    _, built = build(rendered, settings=settings)
    assert_well_formed(built.data)
    assert b"=?utf-8?b?" in built.data
    for line in header_lines(built.data):
        assert len(line) <= 78, line
    msg = parse(built.data)
    assert msg["Subject"] == rendered.subject
    assert msg["From"].addresses[0].display_name == "Überblick Papers 📚"


def test_punctuation_in_display_name_is_quoted() -> None:
    settings = email_settings(from_addr='"Papers, Inc. (beta)" <digest@digest.example.org>')
    _, built = build(settings=settings)
    assert parse(built.data)["From"].addresses[0].display_name == "Papers, Inc. (beta)"


def test_no_header_ever_gains_a_line() -> None:
    settings = email_settings(from_addr="Evil\r\nBcc: a@evil.example <digest@digest.example.org>")
    papers = hostile_papers()
    rendered = render_digest(context(settings, papers, topic_labels=["x\r\nBcc: b@evil.example"]))
    sneaky = RenderedEmail(
        "Hi\r\nBcc: c@evil.example\x00\r\n\r\n<body>", rendered.html, rendered.text
    )
    for r in (rendered, sneaky):
        _, built = build(r, settings=settings)
        assert_well_formed(built.data)
        msg = parse(built.data)
        assert msg["Bcc"] is None
        assert "\n" not in msg["Subject"] and "\x00" not in msg["Subject"]
    assert parse(build(sneaky, settings=settings)[1].data)["Subject"].startswith("Hi Bcc:")


@pytest.mark.parametrize(
    "to",
    ["a@b.org\r\nBcc: x@evil.example", "a@b.org, x@evil.example", "<a@b.org>", "nobody", "é@b.org"],
)
def test_bad_recipients_are_refused(to: str) -> None:
    with pytest.raises(MessageError):
        build(to=to)


def test_idn_domain_becomes_punycode() -> None:
    assert clean_address("ada@bücher.example") == "ada@xn--bcher-kva.example"


def test_one_click_is_offered_only_over_https() -> None:
    _, built = build(unsubscribe_url="http://digest.example.org/u/tok")
    msg = parse(built.data)
    assert msg["List-Unsubscribe"] and msg["List-Unsubscribe-Post"] is None


def test_a_bare_from_address_still_gets_a_display_name() -> None:
    settings = replace(email_settings(), from_addr="digest@digest.example.org")
    rendered, built = build(settings=settings)
    msg = parse(built.data)
    assert msg["From"].addresses[0].display_name == "Paper Digest"
    assert msg["List-Id"] == "Paper Digest <digest.digest.example.org>"
    assert "subscribed to Paper Digest" in rendered.text


def test_unsubscribe_url_must_be_http() -> None:
    with pytest.raises(MessageError):
        build(unsubscribe_url="javascript:alert(1)")


def test_transactional_email_without_list_headers() -> None:
    rendered = render_simple(
        "confirm", email_settings(), "ada@example.org", confirm_url="https://x.example/c"
    )
    _, built = build(rendered, unsubscribe_url=None)
    assert_well_formed(built.data)
    msg = parse(built.data)
    assert msg["List-Unsubscribe"] is None and msg["Auto-Submitted"] == "auto-generated"


def test_message_id_is_stable_and_safe() -> None:
    assert make_message_id(42, "digest.example.org") == make_message_id(42, "digest.example.org")
    assert make_message_id(42, "digest.example.org") != make_message_id(43, "digest.example.org")
    assert make_message_id("a b", "x.org") != make_message_id("a-b", "x.org")
    hostile = make_message_id("1>\r\nBcc: x@evil.example", "evil.example\r\nBcc: y")
    assert re.fullmatch(r"<[A-Za-z0-9._-]+@[A-Za-z0-9.-]+>", hostile)


def test_boundary_never_occurs_in_body() -> None:
    _, built = build()
    boundary = parse(built.data).get_boundary()
    assert built.data.count(f"--{boundary}".encode()) == 3


# --- DKIM --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    directory = tmp_path_factory.mktemp("dkim")
    key = directory / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return key, record


def test_dkim_signature_verifies(dkim_key: tuple[Path, bytes]) -> None:
    key, record = dkim_key
    settings = email_settings(dkim_key_file=str(key), dkim_selector="mail2026")
    _, built = build(settings=settings)
    assert built.data.startswith(b"DKIM-Signature:")
    assert_well_formed(built.data)
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return record if name == b"mail2026._domainkey.digest.example.org." else b""

    assert dkim.verify(built.data, dnsfunc=dns)
    assert looked_up == [b"mail2026._domainkey.digest.example.org."]
    signed = parse(built.data)["DKIM-Signature"]
    h = re.search(r"h=([^;]+)", str(signed).replace(" ", "")).group(1).lower().split(":")
    for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe"):
        assert name in h
    assert "list-unsubscribe-post" in h
    # Any change to a signed header breaks the signature.
    tampered = built.data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nope"
    )
    assert not dkim.verify(tampered, dnsfunc=dns)
