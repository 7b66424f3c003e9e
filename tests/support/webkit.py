"""Driving the web app's forms in Flask's test client, as a browser would.

A browser keeps the session cookie, sends the form's CSRF token back, and on an
https site sends a same-origin Referer (which Flask-WTF checks there): ``Visitor``
does the same, so tests post forms through the real protection instead of around it.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from digest.config import Settings
from digest.web.app import create_app

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page: str) -> str:
    found = _TOKEN.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


class Visitor:
    """One browser: a test client with a cookie jar, on the app built from ``settings``."""

    def __init__(
        self, settings: Settings, ip: str = "203.0.113.7", agent: str = "TestBrowser/1"
    ) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.client: FlaskClient = self.app.test_client()
        secure = urlsplit(settings.base_url).scheme == "https"
        self.client.environ_base.update(
            {
                "REMOTE_ADDR": ip,
                "HTTP_USER_AGENT": agent,
                "wsgi.url_scheme": "https" if secure else "http",
            }
        )
        if secure:
            self.client.environ_base["HTTP_REFERER"] = "https://localhost/"
        self._token: str | None = None

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, **kwargs)

    def head(self, path: str) -> TestResponse:
        return self.client.head(path)

    def token(self) -> str:
        """This browser's CSRF token (from the front page's form, fetched once)."""
        if self._token is None:
            self._token = csrf_token(self.get("/").get_data(as_text=True))
        return self._token

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> TestResponse:
        """POST a form as its page would: with this browser's cookie and CSRF token."""
        form = {"csrf_token": self.token(), **(data or {})}
        return self.client.post(path, data=form, **kwargs)

    def post_bare(self, path: str, data: Any = None, **kwargs: Any) -> TestResponse:
        """POST without a CSRF token (what a mail provider or an attacker does)."""
        return self.client.post(path, data=data, **kwargs)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def unescape(page: str) -> str:
    return html.unescape(page)


def path_of(settings: Settings, url: str) -> str:
    """The path of one of our links (the test client has no host)."""
    assert url.startswith(settings.base_url + "/"), url
    return url[len(settings.base_url) :]


def outbox_messages(settings: Settings) -> list[EmailMessage]:
    files = sorted(Path(settings.outbox).glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for f in files
    ]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def links_in(message: EmailMessage, kind: str) -> list[str]:
    """Our links of one kind (``confirm``, ``manage``, ``d``, ``stop`` …) in the text part."""
    return re.findall(rf"https?://\S+?/{kind}/[^\s>)]+", body_text(message))


SIGNUP = {
    "email": "ada@example.org",
    "topics": "diffusion",
    "frequency": "daily",
    "weekday": "mon",
    "hour": "7",
    "timezone": "Europe/Paris",
}


__all__ = [
    "SIGNUP",
    "Visitor",
    "body_text",
    "csrf_token",
    "links_in",
    "outbox_messages",
    "path_of",
    "text",
    "unescape",
]
