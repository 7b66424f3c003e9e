"""A real HTTP server on 127.0.0.1 serving the feed fixtures, well and badly on purpose.

Register it as a pytest plugin to get the ``feed_server`` fixture: a
:class:`FeedServer` for one test (request counts and injected content reset),
backed by one server per session. pytest puts tests/ on sys.path (rootdir
"prepend" import mode, no tests/__init__.py), so the module is ``feedserver``:
``pytest_plugins = ["support.feedserver"]`` in tests/conftest.py, or in a test module
``from feedserver import feed_server, feed_server_session  # noqa: F401``.

Endpoints (``feed_server.url(path)`` builds the absolute URL):

- ``/feeds/<file>``: a file from tests/fixtures/feeds, with a strong ETag and a
  Last-Modified; answers 304 to a matching If-None-Match (or, without one, to an
  If-Modified-Since not older than the file). ``?gzip=1`` gzips it when the client
  accepts gzip; ``?encoding=gzip|deflate|deflate-raw|broken-gzip|br`` encodes it
  that way regardless (``br`` only claims to). ``?type=...`` overrides the
  Content-Type; ``?delay=S`` waits S seconds before answering.
- any path given to ``feed_server.put(path, body, content_type)``: that body, with
  the same validator handling (change it with another ``put`` to get a new ETag).
- ``/slow?seconds=N``: waits N seconds (default 30) before answering.
- ``/drip?interval=S&count=N``: sends headers, then one byte every S seconds
  (default 0.5 s, 10,000 bytes): stays under any read timeout, never finishes.
- ``/drip-headers?interval=S``: dribbles the status line and headers themselves.
- ``/huge?mb=N&declare=1``: N MB (default 50) of garbage, streamed; with
  ``declare=1`` a Content-Length says so up front.
- ``/gzip-bomb?mb=N``: ~100 KB of gzip that inflates to N MB (default 200).
- ``/redirect?to=URL&status=302``: a redirect to URL (relative or absolute).
- ``/redirect-chain/N``: N redirects in a row, then ``/feeds/arxiv_rss_cs_lg.xml``.
- ``/loop``: redirects to itself, forever.
- ``/redirect-file``: redirects to ``file:///etc/passwd``.
- ``/redirect-no-location``: a 302 without a Location header.
- ``/status/<code>``: that status (429 and 503 with ``Retry-After: 120``).
- ``/html``: an HTML page served as text/html with status 200.

Every request is recorded (path, query, headers) and counted per path, so tests
can assert that a 304 was used or that a refused URL was never requested.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
# A fixed Last-Modified, so validators do not depend on checkout time.
LAST_MODIFIED = 1752552000.0  # Tue, 15 Jul 2025 04:00:00 GMT

CONTENT_TYPES = {
    ".xml": "application/xml; charset=utf-8",
    ".rss": "application/rss+xml",
    ".rdf": "application/rdf+xml",
    ".atom": "application/atom+xml",
    ".json": "application/json; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class _Content:
    body: bytes
    content_type: str
    last_modified: float = LAST_MODIFIED

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:20] + '"'


class FeedServer:
    """Handle on the running server: URLs, request log, injected content."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._requests: list[RecordedRequest] = []
        self._content: dict[str, _Content] = {}
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="feed-server", daemon=True
        )

    # --- lifecycle ---
    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._content.clear()

    # --- for tests ---
    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def feed_url(self, name: str) -> str:
        return self.url(f"/feeds/{name}")

    def put(self, path: str, body: bytes | str, content_type: str = "application/xml") -> str:
        """Serve ``body`` at ``path`` from now on; returns its URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self._content[path] = _Content(data, content_type, last_modified=time.time())
        return self.url(path)

    def count(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    # --- used by the handler ---
    def _record(self, path: str, query: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._counts[path] += 1
            self._requests.append(RecordedRequest(path, query, headers))

    def _lookup(self, path: str) -> _Content | None:
        with self._lock:
            injected = self._content.get(path)
        if injected is not None:
            return injected
        if path.startswith("/feeds/"):
            name = path[len("/feeds/") :]
            file = FIXTURES / name
            # Only plain file names from the fixtures folder: no ../ escapes.
            if "/" not in name and name not in ("", ".", "..") and file.is_file():
                content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
                return _Content(file.read_bytes(), content_type)
        return None


def _make_handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: bodies end at close
        server_version = "feedserver/1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            server._record(path, parts.query, {k: v for k, v in self.headers.items()})
            # The client hanging up on /huge or /drip is what we want it to do.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
                self._route(path, query)

        def _param(self, query: dict[str, list[str]], name: str, default: str) -> str:
            return query.get(name, [default])[0]

        def _route(self, path: str, query: dict[str, list[str]]) -> None:
            if path == "/slow":
                self._slow(float(self._param(query, "seconds", "30")))
            elif path == "/drip":
                self._drip(
                    float(self._param(query, "interval", "0.5")),
                    int(self._param(query, "count", "10000")),
                )
            elif path == "/drip-headers":
                self._drip_headers(float(self._param(query, "interval", "0.5")))
            elif path == "/huge":
                self._huge(
                    int(self._param(query, "mb", "50")), self._param(query, "declare", "0") == "1"
                )
            elif path == "/gzip-bomb":
                self._gzip_bomb(int(self._param(query, "mb", "200")))
            elif path == "/redirect":
                self._redirect(
                    self._param(query, "to", "/"), int(self._param(query, "status", "302"))
                )
            elif path.startswith("/redirect-chain/"):
                left = int(path.rsplit("/", 1)[1])
                target = f"/redirect-chain/{left - 1}" if left > 1 else "/feeds/arxiv_rss_cs_lg.xml"
                self._redirect(target, 302)
            elif path == "/loop":
                self._redirect("/loop", 302)
            elif path == "/redirect-file":
                self._redirect("file:///etc/passwd", 302)
            elif path == "/redirect-no-location":
                self._send(302, b"moved, but where?", "text/plain")
            elif path.startswith("/status/"):
                code = int(path.rsplit("/", 1)[1])
                extra = {"Retry-After": "120"} if code in (429, 503) else {}
                self._send(code, f"status {code}\n".encode(), "text/plain", extra)
            elif path == "/html":
                self._send(
                    200, (FIXTURES / "not_a_feed.html").read_bytes(), "text/html; charset=utf-8"
                )
            else:
                content = server._lookup(path)
                if content is None:
                    self._send(404, b"not found\n", "text/plain")
                else:
                    self._serve(content, query)

        # --- well-behaved ---
        def _serve(self, content: _Content, query: dict[str, list[str]]) -> None:
            validators = {
                "ETag": content.etag,
                "Last-Modified": formatdate(content.last_modified, usegmt=True),
            }
            if not self._wait(float(self._param(query, "delay", "0"))):
                return
            if self._not_modified(content):
                self.send_response(304)
                for name, value in validators.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            body, extra = content.body, dict(validators)
            if self._param(query, "gzip", "0") == "1" and "gzip" in self.headers.get(
                "Accept-Encoding", ""
            ):
                body = gzip.compress(body)
                extra["Content-Encoding"] = "gzip"
            encoding = self._param(query, "encoding", "")
            if encoding:
                body, extra["Content-Encoding"] = _encode(body, encoding)
            self._send(200, body, self._param(query, "type", content.content_type), extra)

        def _not_modified(self, content: _Content) -> bool:
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match is not None:  # RFC 9110 13.1.3: INM wins over IMS
                tags = [t.strip() for t in if_none_match.split(",")]
                return "*" in tags or content.etag in tags or f"W/{content.etag}" in tags
            if_modified_since = self.headers.get("If-Modified-Since")
            if if_modified_since:
                try:
                    since = parsedate_to_datetime(if_modified_since).timestamp()
                except (TypeError, ValueError):
                    return False
                return int(content.last_modified) <= since
            return False

        def _send(
            self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, target: str, status: int) -> None:
            self.send_response(status)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        # --- misbehaving ---
        def _wait(self, seconds: float) -> bool:
            """Sleep, but wake up when the server stops; False if it did."""
            return not server.stopping.wait(seconds)

        def _slow(self, seconds: float) -> None:
            if self._wait(seconds):
                self._send(
                    200, (FIXTURES / "arxiv_rss_no_items.xml").read_bytes(), "application/rss+xml"
                )

        def _drip(self, interval: float, count: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.wfile.flush()
            body = (FIXTURES / "arxiv_rss_no_items.xml").read_bytes()
            for i in range(count):
                if not self._wait(interval):
                    return
                self.wfile.write(body[i % len(body) : i % len(body) + 1])
                self.wfile.flush()

        def _drip_headers(self, interval: float) -> None:
            head = (
                b"HTTP/1.0 200 OK\r\nContent-Type: application/rss+xml\r\n"
                + b"X-Padding: "
                + b"x" * 500
            )
            for i in range(len(head)):
                if not self._wait(interval):
                    return
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()

        def _huge(self, megabytes: int, declare: bool) -> None:
            size = megabytes * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            if declare:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = (b"<garbage>" + bytes(range(32, 127)) * 8 + b"</garbage>\n") * 64
            sent = 0
            while sent < size and not server.stopping.is_set():
                piece = chunk[: size - sent]
                self.wfile.write(piece)
                sent += len(piece)

        def _gzip_bomb(self, megabytes: int) -> None:
            body = _gzip_zeros(megabytes)
            self._send(200, body, "application/rss+xml", {"Content-Encoding": "gzip"})

    return Handler


def _encode(body: bytes, how: str) -> tuple[bytes, str]:
    """``?encoding=``: gzip, deflate (zlib-wrapped), deflate-raw, broken-gzip, br (a lie)."""
    if how == "gzip":
        return gzip.compress(body), "gzip"
    if how == "deflate":
        return zlib.compress(body), "deflate"
    if how == "deflate-raw":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(body) + compressor.flush(), "deflate"
    if how == "broken-gzip":
        packed = gzip.compress(body)
        return packed[:10] + bytes(b ^ 0x5A for b in packed[10:40]) + packed[40:], "gzip"
    return body, how  # claims an encoding it does not use


_bombs: dict[int, bytes] = {}


def _gzip_zeros(megabytes: int) -> bytes:
    if megabytes not in _bombs:
        # Compressed a megabyte at a time: never holds the inflated size in memory.
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip framing
        zeros = bytes(1024 * 1024)
        parts = [compressor.compress(zeros) for _ in range(megabytes)]
        _bombs[megabytes] = b"".join(parts) + compressor.flush()
    return _bombs[megabytes]


@pytest.fixture(scope="session")
def feed_server_session() -> Iterator[FeedServer]:
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def feed_server(feed_server_session: FeedServer) -> Iterator[FeedServer]:
    """The fixture feed server, with request counts and injected content reset."""
    feed_server_session.reset()
    yield feed_server_session
    feed_server_session.reset()
