"""The digest rendered by a real browser (headless Debian chromium) at 600 and 375 px.

Screenshots are kept under test-artifacts/email/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from support.browser import dump_dom, requires_chromium, screenshot
from support.emailkit import context, email_settings, hostile_papers, seed_papers

from digest.render.emails import render_digest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "email"

pytestmark = [
    pytest.mark.integration,
    requires_chromium,
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def digest_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    settings = email_settings()
    rendered = render_digest(
        context(settings, seed_papers(15), web_url="https://digest.example.org/d/42")
    )
    path = ARTIFACTS / "digest.html"
    path.write_text(rendered.html)
    (ARTIFACTS / "digest.txt").write_text(rendered.text)
    return path


@pytest.mark.parametrize(("width", "dark"), [(600, False), (375, False), (600, True)])
def test_screenshot(digest_html: Path, tmp_path: Path, width: int, dark: bool) -> None:
    shot = ARTIFACTS / f"digest-{width}{'-dark' if dark else ''}.png"
    shot.unlink(missing_ok=True)
    extra = ["--force-dark-mode"] if dark else []
    result = screenshot(digest_html.as_uri(), shot, width, 3000, tmp_path, *extra)
    assert shot.exists(), result.stderr[-2000:]
    assert png_size(shot) == (width, 3000)
    # A blank or near-blank page compresses to a few KB; a page of text does not.
    assert shot.stat().st_size > 40_000


def test_page_renders_and_runs_no_script(digest_html: Path, tmp_path: Path) -> None:
    hostile = render_digest(context(email_settings(), hostile_papers(), topic_labels=["agents"]))
    page = ARTIFACTS / "hostile.html"
    page.write_text(hostile.html)
    for path, expect in (
        (digest_html, "15 new papers for you"),
        (page, "&lt;img src=x onerror=alert(1)&gt; an &lt;b&gt;abstract&lt;/b&gt;"),
    ):
        dom = dump_dom(path.as_uri(), tmp_path)
        assert expect in dom
        assert "<script" not in dom.lower()
        assert "<iframe" not in dom.lower() and "<form" not in dom.lower()
        assert not re.search(r"<[^>]*\son\w+\s*=", dom, re.IGNORECASE)
    shot = ARTIFACTS / "hostile-375.png"
    screenshot(page.as_uri(), shot, 375, 3000, tmp_path)
    assert shot.exists() and shot.stat().st_size > 20_000
