"""One settings object, read from ``DIGEST_*`` environment variables.

Every variable is documented in README.md. A wrong value stops start-up with a
:class:`ConfigError` naming the variable, so an operator never discovers a typo
at 6 a.m. when the first digest fails.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from digest import __version__
from digest.core import caches
from digest.core.addresses import clean_address, clean_domain, split_from
from digest.core.text import clean_text
from digest.errors import ConfigError, MessageError


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: not a URL ({exc}): {value!r}") from exc
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme not in schemes:
        raise ConfigError(
            f"{name}: scheme {parts.scheme or '(none)'!r} not supported, use one of "
            f"{', '.join(s + '://' for s in schemes)}: {value!r}"
        )
    if scheme not in ("sqlite", "file") and not parts.hostname:
        raise ConfigError(f"{name}: no host in {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name}: bad port in {value!r}") from exc
    return value


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true/false (1/0, yes/no, on/off), got {value!r}")


def _number(name: str, value: str, kind: type[int] | type[float], minimum: float) -> float:
    try:
        number = kind(value.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a {kind.__name__}, got {value!r}") from exc
    if number < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value!r}")
    return number


def _is_local_host(host: str) -> bool:
    """localhost, *.localhost, a loopback or unspecified address: this machine only."""
    name = host.strip("[]").rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def normalise_database_url(url: str) -> str:
    """Pick the driver we ship (psycopg 3) for a plain ``postgresql://`` URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///digest.db"
    broker_url: str = ""
    smtp_url: str = ""
    outbox: Path = Path("outbox")
    base_url: str = "http://localhost:8000"
    secret_key: str = ""
    from_addr: str = "Paper Digest <digest@localhost>"
    allow_private_feeds: bool = False
    postal_address: str = ""
    send_rate: float = 0.0  # messages per second per transport; 0 = unlimited
    fetch_timeout: float = 30.0
    fetch_max_bytes: int = 20 * 1024 * 1024
    #: Largest web request body, refused with 413 before it is parsed (50 topics of the
    #: longest query fit; a 300 MB POST does not).
    max_request_bytes: int = 64 * 1024
    fetch_delay: float = 3.0  # seconds between two requests to the same host
    user_agent_contact: str = ""
    dkim_key_file: str = ""
    dkim_selector: str = ""
    quiet_day_note: bool = False
    lease_seconds: int = 600
    batch_size: int = 100
    # Outcomes committed together: a killed sender may resend at most this many.
    commit_every: int = 10
    ingest_interval_minutes: int = 60
    plan_interval_seconds: int = 300
    sweep_interval_seconds: int = 120
    # Mail in (`digest inbound`): see README "Mail in".
    inbound: bool = True  # digests carry VERP return paths, a mailto unsubscribe, a Reply-To
    inbound_domain: str = ""  # empty: the domain of DIGEST_FROM
    request_address: str = ""  # empty: papers-request@<inbound domain>
    inbound_max_bytes: int = 1024 * 1024
    inbound_replies_per_hour: int = 5
    bounce_score_threshold: float = 5.0
    bounce_stale_days: int = 7
    allow_insecure_links: bool = False  # send over SMTP with a localhost / http base URL
    # Seconds between beat's sends of queued transactional emails (confirm, welcome, new
    # link) when a broker is configured; without one they go out at once, in-process.
    notify_interval_seconds: int = 10
    # Reverse proxies in front of the web app whose X-Forwarded-For/-Proto to believe:
    # the client address is what rate limits and consent records use.
    trusted_proxies: int = 0
    # Bearer token that makes /healthz show each failure's details (empty: never shown;
    # the public answer is only ok / not ok per dependency).
    health_token: str = ""

    @property
    def uses_broker(self) -> bool:
        return bool(self.broker_url)

    @property
    def uses_smtp(self) -> bool:
        return bool(self.smtp_url)

    def mail_destination(self) -> str:
        """Where mail goes, for `digest run` and `digest stats`: the outbox folder, or the
        SMTP server (host, port, security; never the user's password)."""
        if self.smtp_url:
            smtp = parse_smtp_url(self.smtp_url)
            return f"SMTP server {smtp.host}:{smtp.port} ({smtp.security})"
        return f"outbox folder {self.outbox.resolve()}"

    def insecure_links(self) -> str | None:
        """Why mail must not go out over SMTP with this ``DIGEST_BASE_URL``, or None.

        Every link in an email (unsubscribe, manage, confirm) starts with the base URL:
        a localhost one cannot work for any reader, and over plain http mail programs
        never offer One-Click unsubscribe (RFC 8058 wants https), so we drop the header.
        The outbox is for looking at emails, so it is always allowed.
        """
        if not self.smtp_url or self.allow_insecure_links:
            return None
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "").lower()
        if _is_local_host(host):
            why = f"points at this machine ({host}): no reader can open its links"
        elif parts.scheme.lower() != "https":
            why = "is not https: links go out unencrypted and One-Click unsubscribe is dropped"
        else:
            return None
        return (
            f"refusing to send mail over SMTP: DIGEST_BASE_URL={self.base_url} {why}; set it "
            "to the web app's public https URL (DIGEST_ALLOW_INSECURE_LINKS=1 sends anyway, "
            "for tests)"
        )

    @property
    def brand(self) -> str:
        """The sender's name from ``DIGEST_FROM``; a bare address gets the product's name,
        so the From line, List-Id and footer never show a raw address as the brand."""
        name, _address = split_from(self.from_addr)
        return clean_text(name) or "Paper Digest"

    @property
    def from_domain(self) -> str:
        _, address = split_from(self.from_addr)
        return address.rpartition("@")[2] or "localhost"

    @property
    def mail_domain(self) -> str:
        """The domain of our inbound addresses (VERP return paths, unsubscribe, replies)."""
        return self.inbound_domain or self.from_domain

    @property
    def request_addr(self) -> str:
        """Where commands by email go: ``DIGEST_REQUEST_ADDRESS`` or papers-request@…"""
        return self.request_address or f"papers-request@{self.mail_domain}"

    @property
    def user_agent(self) -> str:
        contact = f"; {self.user_agent_contact}" if self.user_agent_contact else ""
        return f"digest/{__version__} (+{self.base_url}{contact})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None else value.strip()

        if v := get("DIGEST_DATABASE_URL"):
            values["database_url"] = normalise_database_url(
                _url("DIGEST_DATABASE_URL", v, ("sqlite", "postgresql", "postgres"))
            )
        if (v := get("DIGEST_BROKER_URL")) is not None:
            values["broker_url"] = v and _url("DIGEST_BROKER_URL", v, ("redis", "rediss", "memory"))
        if (v := get("DIGEST_SMTP_URL")) is not None:
            values["smtp_url"] = v and _url("DIGEST_SMTP_URL", v, ("smtp", "smtps"))
            if v:
                # Every option checked now, not halfway through a run with digests leased.
                parse_smtp_url(v)
        if v := get("DIGEST_OUTBOX"):
            values["outbox"] = Path(v)
        if v := get("DIGEST_BASE_URL"):
            values["base_url"] = _url("DIGEST_BASE_URL", v, ("http", "https")).rstrip("/")
        if (v := get("DIGEST_SECRET_KEY")) is not None:
            if v and len(v) < 16:
                raise ConfigError("DIGEST_SECRET_KEY: use at least 16 characters")
            values["secret_key"] = v
        if v := get("DIGEST_FROM"):
            _name, address = split_from(v)
            if "@" not in address or any(c in v for c in "\r\n"):
                raise ConfigError(f"DIGEST_FROM: not an email address: {v!r}")
            # The check the message builder makes: refused here, not as every digest failing.
            try:
                clean_address(address)
            except MessageError as exc:
                raise ConfigError(f"DIGEST_FROM: {exc}") from None
            values["from_addr"] = v
        if (v := get("DIGEST_ALLOW_PRIVATE_FEEDS")) is not None:
            values["allow_private_feeds"] = _bool("DIGEST_ALLOW_PRIVATE_FEEDS", v)
        if (v := get("DIGEST_POSTAL_ADDRESS")) is not None:
            values["postal_address"] = v
        if v := get("DIGEST_SEND_RATE"):
            values["send_rate"] = _number("DIGEST_SEND_RATE", v, float, 0)
        if v := get("DIGEST_FETCH_TIMEOUT"):
            values["fetch_timeout"] = _number("DIGEST_FETCH_TIMEOUT", v, float, 0.1)
        if v := get("DIGEST_FETCH_MAX_BYTES"):
            values["fetch_max_bytes"] = int(_number("DIGEST_FETCH_MAX_BYTES", v, int, 1024))
        if v := get("DIGEST_MAX_REQUEST_BYTES"):
            values["max_request_bytes"] = int(_number("DIGEST_MAX_REQUEST_BYTES", v, int, 1024))
        if v := get("DIGEST_FETCH_DELAY"):
            values["fetch_delay"] = _number("DIGEST_FETCH_DELAY", v, float, 0)
        if (v := get("DIGEST_USER_AGENT_CONTACT")) is not None:
            values["user_agent_contact"] = v
        if (v := get("DIGEST_DKIM_KEY_FILE")) is not None:
            if v and not Path(v).is_file():
                raise ConfigError(f"DIGEST_DKIM_KEY_FILE: no such file: {v!r}")
            values["dkim_key_file"] = v
        if (v := get("DIGEST_DKIM_SELECTOR")) is not None:
            values["dkim_selector"] = v
        if (v := get("DIGEST_QUIET_DAY_NOTE")) is not None:
            values["quiet_day_note"] = _bool("DIGEST_QUIET_DAY_NOTE", v)
        if v := get("DIGEST_LEASE_SECONDS"):
            values["lease_seconds"] = int(_number("DIGEST_LEASE_SECONDS", v, int, 10))
        if v := get("DIGEST_BATCH_SIZE"):
            values["batch_size"] = int(_number("DIGEST_BATCH_SIZE", v, int, 1))
        if v := get("DIGEST_COMMIT_EVERY"):
            values["commit_every"] = int(_number("DIGEST_COMMIT_EVERY", v, int, 1))
        if v := get("DIGEST_INGEST_INTERVAL_MINUTES"):
            values["ingest_interval_minutes"] = int(
                _number("DIGEST_INGEST_INTERVAL_MINUTES", v, int, 1)
            )
        if (v := get("DIGEST_ALLOW_INSECURE_LINKS")) is not None:
            values["allow_insecure_links"] = _bool("DIGEST_ALLOW_INSECURE_LINKS", v)
        for name in ("PLAN_INTERVAL_SECONDS", "SWEEP_INTERVAL_SECONDS", "NOTIFY_INTERVAL_SECONDS"):
            if v := get(f"DIGEST_{name}"):
                values[name.lower()] = int(_number(f"DIGEST_{name}", v, int, 1))
        _inbound_settings(get, values)
        if v := get("DIGEST_TRUSTED_PROXIES"):
            values["trusted_proxies"] = int(_number("DIGEST_TRUSTED_PROXIES", v, int, 0))
        if (v := get("DIGEST_HEALTH_TOKEN")) is not None:
            if v and len(v) < 16:
                raise ConfigError("DIGEST_HEALTH_TOKEN: use at least 16 characters")
            values["health_token"] = v
        if values.get("dkim_key_file") and not values.get("dkim_selector"):
            raise ConfigError("DIGEST_DKIM_SELECTOR: required when DIGEST_DKIM_KEY_FILE is set")
        return cls(**values)  # type: ignore[arg-type]


def _inbound_settings(get: Callable[[str], str | None], values: dict[str, object]) -> None:
    """The ``DIGEST_*`` settings of mail in (`digest inbound`)."""
    if (v := get("DIGEST_INBOUND")) is not None:
        values["inbound"] = _bool("DIGEST_INBOUND", v)
    if v := get("DIGEST_INBOUND_DOMAIN"):
        domain = clean_domain(v)
        if (domain == "localhost" and v.strip(".").lower() != "localhost") or "@" in v:
            raise ConfigError(f"DIGEST_INBOUND_DOMAIN: not a domain name: {v!r}")
        values["inbound_domain"] = domain
    if v := get("DIGEST_REQUEST_ADDRESS"):
        try:
            address = clean_address(v)
        except MessageError as exc:
            raise ConfigError(f"DIGEST_REQUEST_ADDRESS: {exc}") from None
        if "+" in address.partition("@")[0]:
            # The +tag forms are our signed addresses (bounce+…, reply+…): no request
            # address may look like one.
            raise ConfigError(f"DIGEST_REQUEST_ADDRESS: no '+' in the local part: {v!r}")
        values["request_address"] = address
    if v := get("DIGEST_INBOUND_MAX_BYTES"):
        values["inbound_max_bytes"] = int(_number("DIGEST_INBOUND_MAX_BYTES", v, int, 65536))
    if v := get("DIGEST_INBOUND_REPLIES_PER_HOUR"):
        values["inbound_replies_per_hour"] = int(
            _number("DIGEST_INBOUND_REPLIES_PER_HOUR", v, int, 1)
        )
    if v := get("DIGEST_BOUNCE_SCORE_THRESHOLD"):
        threshold = _number("DIGEST_BOUNCE_SCORE_THRESHOLD", v, float, 1)
        if not math.isfinite(threshold):
            raise ConfigError(f"DIGEST_BOUNCE_SCORE_THRESHOLD: expected a number, got {v!r}")
        values["bounce_score_threshold"] = threshold
    if v := get("DIGEST_BOUNCE_STALE_DAYS"):
        values["bounce_stale_days"] = int(_number("DIGEST_BOUNCE_STALE_DAYS", v, int, 1))


#: The environment variables :meth:`Settings.from_env` reads, for docs and checks.
ENV_VARS: tuple[str, ...] = tuple(
    "DIGEST_" + f.name.upper().replace("FROM_ADDR", "FROM") for f in fields(Settings)
)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (workers, gunicorn)."""
    return Settings.from_env()


caches.register(get_settings.cache_clear)


# --- the SMTP URL ------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "ssl"]
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    verify: bool = True
    helo: str | None = None

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port} ({self.security})"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_smtp_url(url: str) -> SmtpConfig:
    """``DIGEST_SMTP_URL`` → :class:`SmtpConfig`, or :class:`ConfigError` naming the problem."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"DIGEST_SMTP_URL: {exc}: {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ConfigError(f"DIGEST_SMTP_URL: use smtp:// or smtps://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError("DIGEST_SMTP_URL: no host")
    query = {k.lower(): v[-1].strip().lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout", "verify", "helo"}
    if unknown:
        raise ConfigError(
            f"DIGEST_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}; "
            "use starttls, timeout, verify or helo"
        )

    def flag(name: str) -> bool | None:
        value = query.get(name)
        if value is None:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(f"DIGEST_SMTP_URL: {name}={value!r}, expected 1 or 0")

    starttls = flag("starttls")
    if scheme == "smtps":
        if starttls:
            raise ConfigError("DIGEST_SMTP_URL: smtps:// is already TLS; drop starttls=1")
        security: Literal["none", "starttls", "ssl"] = "ssl"
        port = port or 465
    else:
        port = port or 25
        security = "starttls" if (starttls or (starttls is None and port == 587)) else "none"
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            raise ConfigError(
                f"DIGEST_SMTP_URL: timeout={query['timeout']!r} is no number"
            ) from None
        if not 0 < timeout <= 3600:  # also refuses nan
            raise ConfigError(
                f"DIGEST_SMTP_URL: timeout={query['timeout']!r}, expected seconds in (0, 3600]"
            )
    verify = flag("verify")
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        timeout=timeout,
        verify=True if verify is None else verify,
        helo=query.get("helo") or None,
    )
