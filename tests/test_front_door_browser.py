"""The front door for real: gunicorn, a real SMTP server, headless Chromium driven by
Selenium through Debian's chromedriver, axe-core checking every page.

One reader's whole journey: the front page (time zone guessed by the page's script),
a bad topic shown in place, fixed, submitted; the confirmation email through SMTP;
confirm; the welcome email's manage link; topics edited with their 7-day counts; two
digests sent; each read in the browser with every matched paper; one topic stopped
from its email link; a mail provider's one-click unsubscribe; subscribing again.
Then the same forms by keyboard alone and with scripting off.

Screenshots of every page at 1280 and 375 px are kept in test-artifacts/web/.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import make_settings
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait
from support.browser import (
    AXE,
    axe_violations,
    describe_violations,
    full_page_png,
    requires_axe,
    requires_chromedriver,
    selenium_chromium,
)
from support.factories import all_titles, make_papers
from support.services import free_port, wait_until
from support.smtpserver import SmtpSink
from test_web import gunicorn, gunicorn_env

from digest import pipeline
from digest.config import Settings
from digest.core.clock import utcnow
from digest.store import db
from digest.store.models import Consent, Subscriber, SubscriberStatus

pytestmark = [pytest.mark.integration, requires_chromedriver]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "web"
READER = "ada@example.org"
ZONE = "Asia/Tokyo"  # what the browser says; the page's script pre-selects it


@dataclass
class Site:
    settings: Settings
    url: str
    smtp: SmtpSink
    tmp: Path
    pages: list[str] = field(default_factory=list)

    def mail(self, count: int, what: str) -> EmailMessage:
        """The ``count``-th message to the reader (waiting for it), parsed."""
        wait_until(lambda: len(self.smtp.to(READER)) >= count, 60, what)
        raw = self.smtp.to(READER)[count - 1].data
        return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]

    def local(self, url: str) -> str:
        assert url.startswith(self.url + "/"), url
        return url


@pytest.fixture
def site(tmp_path: Path, sqlite_template: Path, smtp_server: SmtpSink) -> Iterator[Site]:
    database = tmp_path / "digest.db"
    shutil.copy(sqlite_template, database)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        f"sqlite:///{database}",
        tmp_path,
        smtp_url=smtp_server.url,
        base_url=base,
        allow_insecure_links=True,
    )
    with db.session_scope(settings) as session:
        # Yesterday's and today's papers: the 7-day counts and the sample have something.
        make_papers(session, all_titles(), utcnow() - timedelta(hours=3))
    env = gunicorn_env(
        tmp_path,
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        base_url=base,
        smtp_url=smtp_server.url,
    )
    env["DIGEST_FROM"] = settings.from_addr
    # Mail over SMTP with links to 127.0.0.1: refused unless a test says so.
    env["DIGEST_ALLOW_INSECURE_LINKS"] = "1"
    with gunicorn(tmp_path, env, port=port) as url:
        assert url == base
        yield Site(settings, url, smtp_server, tmp_path)


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def link_after(message: EmailMessage, label: str) -> str:
    found = re.search(rf"{re.escape(label)}\s*(https?://\S+)", text_part(message))
    assert found, (label, text_part(message))
    return found.group(1).rstrip(")")


def shoot(site: Site, driver: Any, name: str, *, audit: bool = True) -> None:
    """Screenshots at 1280 and 375 px, and axe-core's verdict on the page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 375):
        path = ARTIFACTS / f"{name}-{width}.png"
        _, height, overflow = full_page_png(driver, path, width)
        assert path.stat().st_size > 5_000, path
        assert height >= 300, (name, width, height)
        # Nothing wider than the window: no sideways scrolling on a phone.
        assert overflow <= 0, (name, width, overflow)
    if audit and AXE.exists():
        violations = axe_violations(driver)
        assert not violations, f"{name}:\n{describe_violations(violations)}"
    site.pages.append(name)


def field_error(driver: Any, field_id: str) -> str:
    element = driver.find_element(By.ID, field_id)
    assert element.get_attribute("aria-invalid") == "true", field_id
    described = (element.get_attribute("aria-describedby") or "").split()
    assert f"{field_id}-error" in described, described
    return driver.find_element(By.ID, f"{field_id}-error").text


def click_and_wait(driver: Any, element: Any) -> None:
    """Click something that loads a new page, and wait until the old page is gone."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 60).until(staleness_of(old))


def submit(driver: Any, form_selector: str = "form") -> None:
    click_and_wait(
        driver, driver.find_element(By.CSS_SELECTOR, f"{form_selector} button[type=submit]")
    )


def one_click(url: str) -> int:
    """A mail provider's RFC 8058 POST: no cookie, no CSRF token, no script."""
    request = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def next_due(hour: int) -> datetime:
    """The next ``hour``:00 in the reader's zone after now."""
    local = utcnow().astimezone(ZoneInfo(ZONE))
    due = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if due <= local:
        due += timedelta(days=1)
    return due


@requires_axe
def test_the_whole_journey_in_chromium(site: Site) -> None:
    hour = (utcnow().astimezone(ZoneInfo(ZONE)).hour + 1) % 24
    with selenium_chromium(site.tmp) as d:
        d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})

        # -- the front page: its script guessed the zone from the browser.
        d.get(site.url + "/")
        assert d.find_element(By.TAG_NAME, "h1").text == "Get trending papers in your email inbox!"
        assert (
            Select(d.find_element(By.ID, "timezone")).first_selected_option.get_attribute("value")
            == ZONE
        )
        frame = d.find_element(By.CSS_SELECTOR, "iframe.email-frame")
        assert frame.get_attribute("src").endswith("/sample")
        shoot(site, d, "01-front")

        # -- one bad topic: its message next to the field, everything typed kept.
        d.find_element(By.ID, "email").send_keys(READER)
        d.find_element(By.ID, "topics").send_keys('language model\n"reward hacking')
        Select(d.find_element(By.ID, "hour")).select_by_value(str(hour))
        submit(d, "#subscribe form")
        assert "unclosed quote at column 1" in field_error(d, "topics")
        assert "Line 2" in field_error(d, "topics")
        assert d.find_element(By.ID, "topics").get_attribute("value") == (
            'language model\n"reward hacking'
        )
        assert d.find_element(By.ID, "email").get_attribute("value") == READER
        assert (
            Select(d.find_element(By.ID, "timezone")).first_selected_option.get_attribute("value")
            == ZONE
        )
        assert d.find_element(By.CSS_SELECTOR, ".error-summary a[href='#topics']")
        shoot(site, d, "02-front-error")

        # -- fixed and sent.
        topics = d.find_element(By.ID, "topics")
        topics.clear()
        topics.send_keys("language model\nreasoning")
        submit(d, "#subscribe form")
        assert d.find_element(By.TAG_NAME, "h1").text == "Check your inbox"
        assert READER in d.find_element(By.CSS_SELECTOR, ".lead").text
        shoot(site, d, "03-sent")

        # -- the confirmation email, through the real SMTP server.
        confirm_mail = site.mail(1, "the confirmation email")
        assert confirm_mail["Subject"] == "Confirm your subscription to Paper Digest"
        d.get(site.local(link_after(confirm_mail, "Confirm:")))
        assert d.find_element(By.TAG_NAME, "h1").text == "Confirm your subscription"
        shoot(site, d, "04-confirm")
        with db.session_scope(site.settings) as s:
            reader = s.query(Subscriber).one()
            assert reader.status is SubscriberStatus.PENDING  # the GET changed nothing
            assert reader.timezone == ZONE and reader.send_hour == hour
        submit(d)
        assert d.find_element(By.TAG_NAME, "h1").text == "You're subscribed"
        shoot(site, d, "05-confirmed")
        with db.session_scope(site.settings) as s:
            reader = s.query(Subscriber).one()
            assert reader.status is SubscriberStatus.ACTIVE
            consents = [
                (c.action.value, c.ip, bool(c.user_agent), c.wording)
                for c in s.query(Consent).order_by(Consent.id)
            ]
        assert [c[0] for c in consents] == ["signup", "confirm"]
        assert all(c[1] == "127.0.0.1" and c[2] and c[3] for c in consents)

        # -- the welcome email's manage link; every topic with its 7-day count.
        welcome = site.mail(2, "the welcome email")
        assert welcome["Subject"] == "You're subscribed to Paper Digest"
        d.get(site.local(link_after(welcome, "Manage your topics:")))
        assert d.find_element(By.TAG_NAME, "h1").text == "Your subscription"
        counts = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".count")]
        assert len(counts) == 2 and all(
            re.search(r"matched \d+ papers? in the last 7 days", c) for c in counts
        ), counts
        assert all(int(re.search(r"\d+", c).group()) > 0 for c in counts), counts
        shoot(site, d, "06-manage")

        # -- add a topic: a mistake in place first, then saved with its count.
        d.find_element(By.ID, "query-new").send_keys("title:")
        d.find_element(By.ID, "label-new").send_keys("Agents")
        submit(d, "form[action$='/topics']")
        assert "needs" in field_error(d, "query-new") or "column" in field_error(d, "query-new")
        assert d.find_element(By.ID, "label-new").get_attribute("value") == "Agents"
        shoot(site, d, "07-manage-error")
        query = d.find_element(By.ID, "query-new")
        query.clear()
        query.send_keys("agent")
        submit(d, "form[action$='/topics']")
        assert "Your topics are saved." in d.find_element(By.CSS_SELECTOR, ".notice").text
        legends = [e.text for e in d.find_elements(By.CSS_SELECTOR, "fieldset.topic legend")]
        assert legends[:3] == ["LANGUAGE MODEL", "REASONING", "AGENTS"], legends
        assert len(d.find_elements(By.CSS_SELECTOR, ".count")) == 3
        shoot(site, d, "08-manage-saved")

        # -- two digests go out (the pipeline, in this process, on the same database).
        first_due = next_due(hour)
        summary = pipeline.run_once(site.settings, first_due + timedelta(minutes=1), fetch=False)
        assert summary.by_status == {"sent": 1}, summary
        digest_one = site.mail(3, "the first digest")
        body = text_part(digest_one)
        assert "See them all:" in body  # capped at 20: the note links to the browser view
        view_one = link_after(digest_one, "View in a browser:")
        assert re.search(r"/d/[^/]+/\d{8}T\d{4}Z$", view_one), view_one
        with db.session_scope(site.settings) as s:
            make_papers(
                s,
                [f"A second-day paper on language model {n}" for n in range(3)],
                first_due + timedelta(hours=2),
                abstract="A language model study.",
            )
        summary = pipeline.run_once(
            site.settings, first_due + timedelta(days=1, minutes=1), fetch=False
        )
        assert summary.by_status == {"sent": 1}, summary
        digest_two = site.mail(4, "the second digest")

        # -- the first digest in the browser: every matched paper, the other digest listed.
        d.get(site.local(view_one))
        assert d.find_element(By.TAG_NAME, "h1").text.startswith("Your digest of ")
        note = d.find_element(By.CSS_SELECTOR, ".viewbar .note").text
        assert "the email carried 20 papers" in note, note
        history = d.find_elements(By.CSS_SELECTOR, ".history li")
        assert len(history) == 2
        shoot(site, d, "09-view")
        d.switch_to.frame(d.find_element(By.CSS_SELECTOR, "iframe.email-frame"))
        cards = d.find_elements(By.CSS_SELECTOR, ".t")
        heading = d.find_element(By.CSS_SELECTOR, ".h1").text
        d.switch_to.default_content()
        assert len(cards) > 20, len(cards)  # the papers past the reader's limit of 20 too
        assert re.match(r"\d+ new papers for you", heading), heading

        # -- stop one topic from its link in the second digest.
        stops = re.findall(r"\(Stop this topic: (https?://\S+?)\)", text_part(digest_two))
        assert stops, text_part(digest_two)
        d.get(site.local(stops[0]))
        assert d.find_element(By.TAG_NAME, "h1").text == "Stop this topic?"
        shoot(site, d, "10-stop")
        submit(d)
        assert d.find_element(By.TAG_NAME, "h1").text == "Topic stopped"
        shoot(site, d, "11-stopped")
        with db.session_scope(site.settings) as s:
            assert len(s.query(Subscriber).one().topics) == 2

        # -- the footer's unsubscribe link: a page with one button, and a GET changes nothing.
        d.get(site.local(link_after(digest_two, "Unsubscribe (one click, no login):")))
        assert d.find_element(By.TAG_NAME, "h1").text == "Unsubscribe"
        shoot(site, d, "12-unsubscribe")
        with db.session_scope(site.settings) as s:
            assert s.query(Subscriber).one().status is SubscriberStatus.ACTIVE

        # -- the mail provider's one-click unsubscribe, from the digest's header.
        header = re.search(r"<(https?://[^>]+)>", digest_two["List-Unsubscribe"])
        assert header is not None
        # Announced only over https (this test site is plain http); the endpoint takes
        # the provider's POST either way.
        assert digest_two["List-Unsubscribe-Post"] is None
        assert one_click(header.group(1)) == 200
        with db.session_scope(site.settings) as s:
            assert s.query(Subscriber).one().status is SubscriberStatus.UNSUBSCRIBED
        d.get(site.local(header.group(1)))
        assert d.find_element(By.TAG_NAME, "h1").text == "You are already unsubscribed"
        shoot(site, d, "13-unsubscribed")

        # -- and back: the manage page, "Subscribe again", a new confirmation to click.
        d.get(site.local(link_after(digest_two, "Manage your topics:")))
        assert "Unsubscribed" in d.find_element(By.CSS_SELECTOR, ".status-unsubscribed").text
        shoot(site, d, "14-manage-unsubscribed")
        click_and_wait(d, d.find_element(By.XPATH, "//button[normalize-space()='Subscribe again']"))
        assert "confirmation email" in d.find_element(By.CSS_SELECTOR, ".notice").text
        again = site.mail(5, "the second confirmation email")
        assert again["Subject"] == "Confirm your subscription to Paper Digest"
        d.get(site.local(link_after(again, "Confirm:")))
        submit(d)
        assert d.find_element(By.TAG_NAME, "h1").text == "You're subscribed"
        with db.session_scope(site.settings) as s:
            reader = s.query(Subscriber).one()
            assert reader.status is SubscriberStatus.ACTIVE
            actions = [c.action.value for c in s.query(Consent).order_by(Consent.id)]
        assert actions == ["signup", "confirm", "resubscribe", "confirm"]

        # -- an old link, some time later: the page says so and offers a new one by email.
        with db.session_scope(site.settings) as s:
            # (The new-link form mails an address at most once per 10 minutes.)
            s.query(Subscriber).update({"notified_at": utcnow() - timedelta(hours=1)})
        d.get(site.local(link_after(welcome, "Manage your topics:")))
        assert d.find_element(By.TAG_NAME, "h1").text == "This link is not valid anymore"
        shoot(site, d, "15-old-link")
        d.find_element(By.ID, "email").send_keys(READER)
        submit(d)
        assert d.find_element(By.TAG_NAME, "h1").text == "Check your inbox"
        shoot(site, d, "16-new-link-sent")
        fresh = site.mail(7, "the new link email")  # 6 is the welcome after confirming
        assert "/manage/" in link_after(fresh, "Manage your subscription:")

        # -- the rest of the pages, for their screenshots and axe: delete, 404, /link.
        d.get(site.local(link_after(fresh, "Manage your subscription:")))
        click_and_wait(d, d.find_element(By.CSS_SELECTOR, "a.danger"))
        assert d.find_element(By.TAG_NAME, "h1").text == "Delete everything"
        shoot(site, d, "17-delete")
        d.get(site.url + "/link")
        shoot(site, d, "18-link")
        d.get(site.url + "/no-such-page")
        shoot(site, d, "19-not-found")
    assert len(site.pages) == 19


def test_keyboard_only_and_without_scripting(site: Site) -> None:
    """Every field of the form reached with Tab, never the honeypot; Enter submits;
    and with JavaScript off the page works the same (the zone stays UTC)."""
    with selenium_chromium(site.tmp) as d:
        d.get(site.url + "/")
        d.find_element(By.TAG_NAME, "body").click()
        reached: list[str] = []
        for _ in range(40):
            d.switch_to.active_element.send_keys(Keys.TAB)
            active = d.switch_to.active_element
            reached.append(active.get_attribute("id") or active.tag_name)
        for wanted in ("email", "topics", "frequency", "weekday", "hour", "timezone"):
            assert wanted in reached, (wanted, reached)
        assert "website" not in reached  # the honeypot is out of the keyboard's path
        email_field = d.find_element(By.ID, "email")
        email_field.click()
        old = d.find_element(By.TAG_NAME, "html")
        email_field.send_keys("keys@example.org" + Keys.ENTER)
        WebDriverWait(d, 60).until(staleness_of(old))
        wait_until(lambda: d.find_element(By.TAG_NAME, "h1").text == "Check your inbox", 30, "sent")
    wait_until(lambda: site.smtp.to("keys@example.org"), 30, "the confirmation email")

    # A reader whose system is in dark mode gets the emails' dark colours, still legible.
    with selenium_chromium(site.tmp) as d:
        d.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        d.get(site.url + "/")
        background = d.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)", background
        d.find_element(By.ID, "email").send_keys("not an address")
        submit(d, "#subscribe form")
        shoot(site, d, "front-dark-error")

    with selenium_chromium(site.tmp, javascript=False) as d:
        d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
        d.get(site.url + "/")
        zone = Select(d.find_element(By.ID, "timezone")).first_selected_option
        assert zone.get_attribute("value") == "UTC"  # no script: nothing guessed
        d.find_element(By.ID, "email").send_keys("noscript@example.org")
        Select(d.find_element(By.ID, "timezone")).select_by_value("Europe/Paris")
        submit(d, "#subscribe form")
        assert d.find_element(By.TAG_NAME, "h1").text == "Check your inbox"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        full_page_png(d, ARTIFACTS / "front-noscript-375.png", 375)
    wait_until(lambda: site.smtp.to("noscript@example.org"), 30, "the confirmation email")
    with db.session_scope(site.settings) as s:
        row = s.query(Subscriber).filter_by(email_key="noscript@example.org").one()
        assert row.timezone == "Europe/Paris"
