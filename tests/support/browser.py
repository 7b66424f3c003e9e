"""Headless Debian chromium for the tests: one set of flags, a fresh profile each run.

Two ways in: the ``chromium`` command line (``dump_dom``, ``screenshot``) for a page,
and Selenium driving it through Debian's ``chromedriver`` (:func:`selenium_chromium`)
for a journey through forms; :func:`axe_violations` runs axe-core, the accessibility
checker from ``tests/browser-tools`` (``npm ci`` there), inside the page.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# None when neither Debian name is on PATH.
FOUND = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM = FOUND or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)

# A laptop without the browser skips these tests with the command that enables them;
# CI (.ci/run installs chromium, then sets this) fails instead of silently skipping.
REQUIRED = os.environ.get("DIGEST_TESTS_REQUIRE_CHROMIUM") == "1"
if FOUND is None and REQUIRED:
    raise RuntimeError("DIGEST_TESTS_REQUIRE_CHROMIUM=1 but chromium is not on PATH")
if DRIVER is None and REQUIRED:
    raise RuntimeError("DIGEST_TESTS_REQUIRE_CHROMIUM=1 but chromedriver is not on PATH")

requires_chromium = pytest.mark.skipif(
    FOUND is None,
    reason="Debian's chromium is not installed: apt-get install chromium chromium-driver",
)
requires_chromedriver = pytest.mark.skipif(
    FOUND is None or DRIVER is None,
    reason="Debian's chromium and chromedriver are not installed: "
    "apt-get install chromium chromium-driver",
)

# axe-core comes from the npm registry into tests/browser-tools (pinned by its
# package-lock.json). Skipped locally without it; CI (.ci/run runs `npm ci` there, then
# sets this) fails instead.
BROWSER_TOOLS = Path(__file__).resolve().parent.parent / "browser-tools"
AXE = BROWSER_TOOLS / "node_modules" / "axe-core" / "axe.min.js"
AXE_REQUIRED = os.environ.get("DIGEST_TESTS_REQUIRE_AXE") == "1"
if AXE_REQUIRED and not AXE.exists():
    raise RuntimeError(
        f"DIGEST_TESTS_REQUIRE_AXE=1 but {AXE} is missing: npm ci in {BROWSER_TOOLS}"
    )
requires_axe = pytest.mark.skipif(
    not AXE.exists(),
    reason=f"axe-core is not installed: (cd {BROWSER_TOOLS} && npm ci)",
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


# --- Selenium ------------------------------------------------------------------------------


@contextmanager
def selenium_chromium(
    tmp: Path, width: int = 1280, height: int = 900, *, javascript: bool = True
) -> Iterator[Any]:
    """A headless chromium driven by Selenium through Debian's chromedriver (no
    browser download), in a fresh profile; quit however the test ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument("--headless=new" if flag == "--headless" else flag)
    options.add_argument(f"--user-data-dir={fresh_profile(tmp)}")
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument("--hide-scrollbars")
    options.add_argument("--lang=en-GB")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    service = Service(executable_path=DRIVER, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def _metrics(driver: Any, width: int, height: int) -> tuple[int, int]:
    """Lay the page out in a ``width`` x ``height`` window; (content height, overflow)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    # Frames lay out again on their own schedule (and a page may have scripting off, so
    # no waiting in the page): a moment before measuring.
    time.sleep(0.6)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    viewport = metrics.get("cssLayoutViewport") or metrics["layoutViewport"]
    return int(size["height"]), int(size["width"]) - int(viewport["clientWidth"])


def full_page_png(driver: Any, path: Path, width: int) -> tuple[int, int, int]:
    """A PNG of the whole page (not only the window) at ``width`` CSS pixels: its width,
    height, and how many pixels the page is wider than ``width`` (0: no sideways scroll).

    Measured in a 900 px high window, then shot in a window as tall as the page: Chromium
    paints no frame (an email shown in a page) outside the window, even for a full-page
    capture, so a short window would show blank frames.
    """
    tall, overflow = _metrics(driver, width, 900)
    tall = max(1, min(tall, 12000))
    height, _ = _metrics(driver, width, tall)
    height = max(1, min(height, 12000))
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return width, height, overflow


def axe_violations(
    driver: Any, rules: tuple[str, ...] = ("wcag2a", "wcag2aa", "wcag21aa", "best-practice")
) -> list[dict[str, Any]]:
    """axe-core's violations on the current page (WCAG 2.1 A/AA and best practice).

    Injected through the driver, which the page's Content-Security-Policy does not
    govern; the page itself never runs it.
    """
    driver.execute_script(AXE.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify({error: String(e)})));",
        list(rules),
    )
    found = json.loads(result)
    if isinstance(found, dict):
        raise AssertionError(f"axe-core failed: {found['error']}")
    return found  # type: ignore[no-any-return]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [
            ", ".join(n["target"]) if isinstance(n["target"], list) else str(n["target"])
            for n in v["nodes"][:5]
        ]
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {'; '.join(targets)}")
    return "\n".join(lines)
