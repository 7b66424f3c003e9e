"""Headless Debian chromium for the tests: one set of flags, a fresh profile each run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# None when neither Debian name is on PATH.
FOUND = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM = FOUND or "/usr/bin/chromium"

# A laptop without the browser skips these tests with the command that enables them;
# CI (.ci/run installs chromium, then sets this) fails instead of silently skipping.
REQUIRED = os.environ.get("DIGEST_TESTS_REQUIRE_CHROMIUM") == "1"
if FOUND is None and REQUIRED:
    raise RuntimeError("DIGEST_TESTS_REQUIRE_CHROMIUM=1 but chromium is not on PATH")

requires_chromium = pytest.mark.skipif(
    FOUND is None,
    reason="Debian's chromium is not installed: apt-get install chromium chromium-driver",
)

# Headless in a container: no sandbox, no GPU, and nothing that phones home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_command(*args: str, profile_dir: Path) -> list[str]:
    return [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", *args]


def fresh_profile(tmp: Path) -> Path:
    """A profile directory under `tmp` that no earlier run in this test has used."""
    return tmp / f"profile-{len(list(tmp.glob('profile-*')))}"


def run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = chromium_command(*args, profile_dir=fresh_profile(tmp))
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def dump_dom(url: str, tmp: Path) -> str:
    """The DOM chromium built for `url`, after its scripts ran; fails the test if it crashed."""
    result = run_chromium(tmp, "--dump-dom", url)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(
    url: str, path: Path, width: int, height: int, tmp: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """A PNG of `url` in a `width` x `height` window; the caller checks the file."""
    return run_chromium(
        tmp,
        *extra,
        "--hide-scrollbars",
        f"--screenshot={path}",
        f"--window-size={width},{height}",
        url,
    )
