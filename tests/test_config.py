from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import ENV_VARS, Settings
from digest.core.addresses import split_from
from digest.errors import ConfigError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///digest.db"
    assert not settings.uses_broker and not settings.uses_smtp
    assert settings.outbox == Path("outbox")


def test_values_are_read_and_normalised() -> None:
    settings = Settings.from_env(
        {
            "DIGEST_DATABASE_URL": "postgresql://digest:pw@db:5432/digest",
            "DIGEST_BROKER_URL": "redis://redis:6379/0",
            "DIGEST_SMTP_URL": "smtps://u:p@mail.example.org:465",
            "DIGEST_BASE_URL": "https://papers.example.org/",
            "DIGEST_ALLOW_PRIVATE_FEEDS": "yes",
            "DIGEST_SEND_RATE": "2.5",
            "DIGEST_FROM": '"Papers, Inc." <news@papers.example.org>',
        }
    )
    assert settings.database_url == "postgresql+psycopg://digest:pw@db:5432/digest"
    assert settings.base_url == "https://papers.example.org"
    assert settings.allow_private_feeds is True
    assert settings.send_rate == 2.5
    assert settings.from_domain == "papers.example.org"
    assert "digest/" in settings.user_agent and "https://papers.example.org" in settings.user_agent


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIGEST_BASE_URL": "papers.example.org"}, "DIGEST_BASE_URL: scheme '(none)'"),
        ({"DIGEST_SECRET_KEY": "short"}, "DIGEST_SECRET_KEY: use at least 16 characters"),
        ({"DIGEST_FETCH_TIMEOUT": "0"}, "DIGEST_FETCH_TIMEOUT: must be at least 0.1"),
        ({"DIGEST_BATCH_SIZE": "1.5"}, "DIGEST_BATCH_SIZE: expected a int"),
        ({"DIGEST_FROM": "Evil\r\nBcc: x@evil.example <d@x.org>"}, "DIGEST_FROM: not an email"),
        ({"DIGEST_DKIM_KEY_FILE": "/nonexistent/key.pem"}, "DIGEST_DKIM_KEY_FILE: no such file"),
        # Checked at start-up as the message builder would, not as every digest failing.
        ({"DIGEST_FROM": "Digest <dïgest@example.org>"}, "DIGEST_FROM: non-ASCII local part"),
        ({"DIGEST_FROM": "Digest <digest@exa_mple.org>"}, "DIGEST_FROM: bad domain"),
        ({"DIGEST_FROM": "Digest <a b@example.org>"}, "DIGEST_FROM: not a plain email"),
        # Every SMTP option, before a run leases digests and fails halfway.
        ({"DIGEST_SMTP_URL": "smtp://mx:25?starttls=maybe"}, "DIGEST_SMTP_URL: starttls='maybe'"),
        ({"DIGEST_SMTP_URL": "smtp://mx:25?foo=1"}, "DIGEST_SMTP_URL: unknown option(s) foo"),
        ({"DIGEST_SMTP_URL": "smtp://mx:25?timeout=nan"}, "DIGEST_SMTP_URL: timeout='nan'"),
        ({"DIGEST_SMTP_URL": "smtp://mx:25?timeout=-5"}, "DIGEST_SMTP_URL: timeout='-5'"),
        (
            {"DIGEST_PLAN_INTERVAL_SECONDS": "-1"},
            "DIGEST_PLAN_INTERVAL_SECONDS: must be at least 1",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_env_vars_lists_every_setting() -> None:
    assert "DIGEST_FROM" in ENV_VARS and "DIGEST_DATABASE_URL" in ENV_VARS
    assert all(name.startswith("DIGEST_") for name in ENV_VARS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Paper Digest <digest@example.org>", ("Paper Digest", "digest@example.org")),
        ('"Papers, Inc. (beta)" <d@example.org>', ("Papers, Inc. (beta)", "d@example.org")),
        ("digest@example.org", ("", "digest@example.org")),
        ("<digest@example.org>", ("", "digest@example.org")),
        # What older and newer Pythons' parseaddr disagree on: the address is in the brackets.
        ("Evil Bcc: a@evil.example <d@example.org>", ("Evil Bcc: a@evil.example", "d@example.org")),
        (
            "Evil\r\nBcc: a@evil.example <d@example.org>",
            ("Evil Bcc: a@evil.example", "d@example.org"),
        ),
    ],
)
def test_split_from(value: str, expected: tuple[str, str]) -> None:
    assert split_from(value) == expected
