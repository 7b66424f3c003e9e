"""Fetch one feed URL over HTTP(S), politely and defensively.

Feed URLs come from operators and from redirects chosen by strangers, so every
hop is checked: only http(s), and only hosts :mod:`digest.ingest.guard` allows,
checked inside the connection itself.

Limits: a per-read timeout (``fetch_timeout``) plus an overall deadline of
``OVERALL_TIMEOUT_FACTOR`` times that, enforced on every socket read, so a server
dripping one byte at a time (even during the headers) cannot hold a worker; a
size cap (``fetch_max_bytes``) on the decoded body, checked against
Content-Length up front and while streaming; at most ``MAX_REDIRECTS`` redirects;
one request per ``fetch_delay`` seconds per host within the process.

Nothing is decoded here beyond Content-Encoding: parsers get the bytes and own
charset handling.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from digest.config import Settings
from digest.core import caches
from digest.errors import FetchError
from digest.ingest.guard import Deadline, guarded_transport

MAX_REDIRECTS = 5
OVERALL_TIMEOUT_FACTOR = 3.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, application/json;q=0.9, text/xml;q=0.8, */*;q=0.5"
)


@dataclass
class FetchResult:
    url: str  # as requested
    final_url: str  # after redirects
    status: int
    body: bytes | None  # None when not_modified
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    not_modified: bool = False
    redirects: list[str] = field(default_factory=list)


# --- politeness ----------------------------------------------------------------------

#: When each host may next be asked, per process (arXiv asks for one request per 3 s).
_next_slot: dict[str, float] = {}
caches.register(_next_slot.clear)
_slot_lock = threading.Lock()
_sleep = time.sleep  # a seam for tests, which check the waits without waiting


def _wait_for_host(host: str, delay: float) -> float:
    """Sleep until ``host`` may be asked again; returns the seconds slept."""
    if delay <= 0:
        return 0.0
    with _slot_lock:
        now = time.monotonic()
        slot = max(now, _next_slot.get(host, now))
        _next_slot[host] = slot + delay  # reserve, so concurrent threads queue up
    wait = slot - now
    if wait > 0:
        _sleep(wait)
    return max(wait, 0.0)


# --- fetch ---------------------------------------------------------------------------


def _check_url(url: str, redirected_from: str | None = None) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise FetchError(f"not a valid URL ({exc}): {url!r}") from None
    scheme = parts.scheme.lower()
    via = f" (redirected from {redirected_from})" if redirected_from else ""
    if scheme not in ("http", "https"):
        shown = f"{scheme}:" if scheme else "scheme-less"
        raise FetchError(f"refusing {shown} URL{via}: only http and https feeds are fetched")
    if not parts.hostname:
        raise FetchError(f"no host in URL {url!r}{via}")
    return url


def _validator(value: str | None, max_length: int) -> str | None:
    """An ETag / Last-Modified worth storing and sending back, else None.

    They come from the server and go back into our request headers (and into
    columns of limited width): anything but short printable ASCII is dropped, which
    only costs a full fetch instead of a 304.
    """
    if not value:
        return None
    value = value.strip()
    if not value or len(value) > max_length or not value.isascii() or not value.isprintable():
        return None
    return value


def _size(n: int) -> str:
    mb = 1024 * 1024
    return f"{n // mb} MB" if n % mb == 0 else f"{n:,} bytes"


def fetch(
    url: str,
    settings: Settings,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET ``url`` (following up to 5 checked redirects); raise :class:`FetchError` on failure.

    With ``etag``/``last_modified`` from the previous 200, sends a conditional
    request; a 304 comes back as ``FetchResult(not_modified=True, body=None)``.
    """
    url = url.strip()
    current = _check_url(url)
    timeout = settings.fetch_timeout
    deadline = Deadline(timeout * OVERALL_TIMEOUT_FACTOR)
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": ACCEPT,
        "Accept-Encoding": "gzip, deflate",
    }
    etag, last_modified = _validator(etag, 500), _validator(last_modified, 100)
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    transport = guarded_transport(settings.allow_private_feeds, deadline)
    redirects: list[str] = []
    with httpx.Client(
        transport=transport,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        trust_env=False,
    ) as client:
        while True:
            host = urlsplit(current).hostname or ""
            slept = _wait_for_host(host, settings.fetch_delay)
            deadline.at += slept  # waiting our turn is not the server's slowness
            try:
                result = _one_request(client, current, headers, settings, deadline, host)
            except FetchError:
                raise
            except httpx.TimeoutException:
                if deadline.expired():
                    raise FetchError(
                        f"timed out after {deadline.seconds:.1f} s: {host} is sending too slowly"
                    ) from None
                raise FetchError(f"timed out after {timeout:.1f} s waiting for {host}") from None
            except httpx.InvalidURL as exc:
                raise FetchError(f"not a valid URL ({exc}): {current!r}") from None
            except httpx.ConnectError as exc:
                raise FetchError(f"cannot connect to {host}: {_reason(exc)}") from None
            except httpx.RemoteProtocolError as exc:
                raise FetchError(f"{host} broke the HTTP protocol: {_reason(exc)}") from None
            except httpx.DecodingError as exc:
                raise FetchError(
                    f"cannot decode the response from {host}: {_reason(exc)}"
                ) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"network error talking to {host}: {_reason(exc)}") from None
            except (UnicodeError, ValueError) as exc:  # e.g. a Location httpx cannot encode
                raise FetchError(f"cannot request {current!r}: {_reason(exc)}") from None
            if isinstance(result, str):  # a redirect
                if len(redirects) >= MAX_REDIRECTS:
                    raise FetchError(
                        f"too many redirects (more than {MAX_REDIRECTS}), last to {result}"
                    )
                target = _check_url(result, redirected_from=current)
                redirects.append(target)
                current = target
                continue
            result.url, result.redirects = url, redirects
            if result.not_modified:
                # A 304 may omit the validators; the ones we sent are still current.
                result.etag = result.etag or etag
                result.last_modified = result.last_modified or last_modified
            return result


def _one_request(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    settings: Settings,
    deadline: Deadline,
    host: str,
) -> FetchResult | str:
    """One hop: a FetchResult, or the absolute URL a redirect points to."""
    request = client.build_request("GET", url, headers=headers)
    response = client.send(request, stream=True)
    try:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise FetchError(f"HTTP {status} redirect from {url} without a Location header")
            return urljoin(url, location.strip())
        common = {
            "final_url": url,
            "status": status,
            "etag": _validator(response.headers.get("etag"), 500),
            "last_modified": _validator(response.headers.get("last-modified"), 100),
            "content_type": response.headers.get("content-type"),
        }
        if status == 304:
            if "If-None-Match" not in headers and "If-Modified-Since" not in headers:
                # Callers rely on "no validators sent, so a body comes back".
                raise FetchError("HTTP 304 Not Modified to a request without validators")
            return FetchResult(url=url, body=None, not_modified=True, **common)
        if not 200 <= status < 300:
            raise FetchError(_status_message(response))
        limit = settings.fetch_max_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(
                f"response larger than {_size(limit)} (Content-Length: {int(declared):,} bytes)"
            )
        inflater = _Inflater(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        received = 0
        for raw in response.iter_raw():
            # Inflate at most one byte past the cap: a gzip bomb never gets to allocate
            # its inflated size, however much one network chunk would expand to.
            for chunk in inflater.feed(raw, limit - received + 1):
                received += len(chunk)
                if received > limit:
                    raise FetchError(f"response larger than {_size(limit)}")
                chunks.append(chunk)
            if deadline.expired():
                raise httpx.ReadTimeout("overall deadline passed")
        tail = inflater.finish()
        if received + len(tail) > limit:
            raise FetchError(f"response larger than {_size(limit)}")
        chunks.append(tail)
        return FetchResult(url=url, body=b"".join(chunks), **common)
    finally:
        response.close()


class _Inflater:
    """Content-Encoding decoding with a bound on output per call (zlib ``max_length``)."""

    def __init__(self, content_encoding: str) -> None:
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self._wbits: int | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._wbits = 16 + zlib.MAX_WBITS
        elif encoding == "deflate":
            self._wbits = zlib.MAX_WBITS  # zlib-wrapped, as RFC 9110 says; raw tried below
        else:
            # We only ever offer gzip and deflate.
            raise FetchError(f"unsupported Content-Encoding {content_encoding!r}")
        self._inflater = zlib.decompressobj(self._wbits) if self._wbits else None
        self._started = False

    def feed(self, data: bytes, budget: int) -> Iterator[bytes]:
        if self._inflater is None:
            yield data
            return
        try:
            while data:
                if self._inflater.eof:  # a second gzip member follows the first
                    self._inflater = zlib.decompressobj(self._wbits or zlib.MAX_WBITS)
                out = self._decompress(data, budget)
                self._started = True
                budget -= len(out)
                if out:
                    yield out
                if budget <= 0:
                    return
                data = self._inflater.unconsumed_tail or self._inflater.unused_data
        except zlib.error as exc:
            raise FetchError(
                f"cannot decode the {_encoding_name(self._wbits)} response: {exc}"
            ) from None

    def _decompress(self, data: bytes, budget: int) -> bytes:
        assert self._inflater is not None
        try:
            return self._inflater.decompress(data, max(budget, 1))
        except zlib.error:
            if self._wbits != zlib.MAX_WBITS or self._started:
                raise
            # Some servers send raw deflate under "deflate"; browsers accept it, so do we.
            self._wbits = -zlib.MAX_WBITS
            self._inflater = zlib.decompressobj(self._wbits)
            return self._inflater.decompress(data, max(budget, 1))

    def finish(self) -> bytes:
        if self._inflater is None:
            return b""
        return self._inflater.flush()


def _encoding_name(wbits: int | None) -> str:
    return "gzip" if wbits and wbits > zlib.MAX_WBITS else "deflate"


def _status_message(response: httpx.Response) -> str:
    message = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    retry_after = response.headers.get("retry-after", "").strip()
    if response.status_code in (429, 503) and retry_after.isdigit():
        message += f" (retry after {int(retry_after)} s)"
    return message


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # "[Errno 111] Connection refused" reads better as "Connection refused".
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return " ".join(text.split())
