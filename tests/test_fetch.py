"""digest.fetch against a real HTTP server on localhost (tests/feedserver.py).

The server misbehaves on purpose: slow, dripping, huge, gzip bombs, redirect
loops, redirects to file: and to private addresses, 5xx.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.feedserver import FIXTURES, FeedServer

from digest.config import Settings
from digest.errors import FetchError
from digest.ingest import guard
from digest.ingest import http as fetch_module
from digest.ingest.guard import address_refusal
from digest.ingest.http import fetch


def make(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "allow_private_feeds": True,
        "fetch_delay": 0.0,
        "fetch_timeout": 2.0,
        "base_url": "https://digest.example.org",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def fixture_bytes(name: str) -> bytes:
    return (Path(FIXTURES) / name).read_bytes()


# --- well-behaved server -------------------------------------------------------------


@pytest.mark.integration
def test_200_returns_body_and_validators(feed_server: FeedServer) -> None:
    url = feed_server.feed_url("arxiv_rss_cs_lg.xml")
    result = fetch(url, make())
    assert result.status == 200
    assert not result.not_modified
    assert result.body == fixture_bytes("arxiv_rss_cs_lg.xml")
    assert result.etag and result.etag.startswith('"')
    assert result.last_modified == "Tue, 15 Jul 2025 04:00:00 GMT"
    assert result.content_type and result.content_type.startswith("application/xml")
    assert result.url == result.final_url == url
    assert result.redirects == []


@pytest.mark.integration
def test_second_conditional_request_gets_304(feed_server: FeedServer) -> None:
    url = feed_server.feed_url("hf_daily.json")
    first = fetch(url, make())
    second = fetch(url, make(), etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified and second.status == 304
    assert second.body is None
    assert (second.etag, second.last_modified) == (first.etag, first.last_modified)
    assert feed_server.count("/feeds/hf_daily.json") == 2
    sent = feed_server.requests[-1].headers
    assert sent["If-None-Match"] == first.etag
    assert sent["If-Modified-Since"] == first.last_modified


@pytest.mark.integration
def test_last_modified_alone_gets_304(feed_server: FeedServer) -> None:
    url = feed_server.feed_url("biorxiv.rdf")
    first = fetch(url, make())
    assert fetch(url, make(), last_modified=first.last_modified).not_modified


@pytest.mark.integration
def test_unusable_validators_are_neither_sent_nor_returned(feed_server: FeedServer) -> None:
    url = feed_server.feed_url("hf_daily.json")
    result = fetch(url, make(), etag='"caf\u00e9"\r\nX-Injected: 1', last_modified="x" * 101)
    assert result.status == 200  # no validators went out, so no 304
    sent = feed_server.requests[-1].headers
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent
    assert "X-Injected" not in sent


@pytest.mark.integration
def test_changed_feed_is_fetched_again_despite_old_etag(feed_server: FeedServer) -> None:
    url = feed_server.put("/dynamic/feed.xml", fixture_bytes("arxiv_rss_no_items.xml"))
    first = fetch(url, make())
    feed_server.put("/dynamic/feed.xml", fixture_bytes("arxiv_rss_cs_lg.xml"))
    second = fetch(url, make(), etag=first.etag)
    assert not second.not_modified
    assert second.body == fixture_bytes("arxiv_rss_cs_lg.xml")
    assert second.etag != first.etag


@pytest.mark.integration
def test_user_agent_and_accept_headers_are_sent(feed_server: FeedServer) -> None:
    settings = make(user_agent_contact="ops@digest.example.org")
    fetch(feed_server.feed_url("blog_atom.xml"), settings)
    headers = feed_server.requests[-1].headers
    assert headers["User-Agent"] == settings.user_agent
    assert "ops@digest.example.org" in headers["User-Agent"]
    assert "gzip" in headers["Accept-Encoding"]
    assert "application/rss+xml" in headers["Accept"]


@pytest.mark.integration
def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    result = fetch(feed_server.url("/feeds/arxiv_api_query.xml?gzip=1"), make())
    assert result.body == fixture_bytes("arxiv_api_query.xml")


@pytest.mark.integration
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw"])
def test_content_encodings_are_decoded(feed_server: FeedServer, encoding: str) -> None:
    result = fetch(feed_server.url(f"/feeds/biorxiv.rdf?encoding={encoding}"), make())
    assert result.body == fixture_bytes("biorxiv.rdf")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("broken-gzip", r"^cannot decode the gzip response: "),
        ("br", r"^unsupported Content-Encoding 'br'$"),
    ],
)
def test_undecodable_content_encoding(feed_server: FeedServer, encoding: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        fetch(feed_server.url(f"/feeds/biorxiv.rdf?encoding={encoding}"), make())


@pytest.mark.integration
def test_304_without_validators_is_an_error(feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match="304 Not Modified to a request without validators"):
        fetch(feed_server.url("/status/304"), make())


@pytest.mark.integration
def test_bytes_are_returned_undecoded(feed_server: FeedServer) -> None:
    # Charset handling belongs to the parsers: latin-1 bytes must arrive as they were sent.
    result = fetch(feed_server.feed_url("latin1_declared_utf8.xml"), make())
    assert result.body == fixture_bytes("latin1_declared_utf8.xml")


# --- slow servers --------------------------------------------------------------------


@pytest.mark.integration
def test_slow_server_times_out(feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match=r"^timed out after 0\.5 s waiting for 127\.0\.0\.1$"):
        fetch(feed_server.url("/slow?seconds=30"), make(fetch_timeout=0.5))


@pytest.mark.integration
def test_dripping_body_hits_the_overall_deadline(feed_server: FeedServer) -> None:
    # Each byte arrives well within the read timeout; only the overall deadline stops it.
    settings = make(fetch_timeout=0.5)
    with pytest.raises(
        FetchError, match=r"^timed out after 1\.5 s: 127\.0\.0\.1 is sending too slowly"
    ):
        fetch(feed_server.url("/drip?interval=0.05"), settings)


@pytest.mark.integration
def test_dripping_headers_hit_the_overall_deadline(feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match=r"^timed out after 1\.5 s"):
        fetch(feed_server.url("/drip-headers?interval=0.05"), make(fetch_timeout=0.5))


# --- big bodies ----------------------------------------------------------------------


@pytest.mark.integration
def test_huge_streamed_body_is_cut_at_the_cap(feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match=r"^response larger than 20 MB$"):
        fetch(feed_server.url("/huge"), make())


@pytest.mark.integration
def test_huge_declared_length_is_refused_up_front(feed_server: FeedServer) -> None:
    with pytest.raises(
        FetchError, match=r"^response larger than 20 MB \(Content-Length: 52,428,800 bytes\)"
    ):
        fetch(feed_server.url("/huge?declare=1"), make())


@pytest.mark.integration
def test_cap_counts_decoded_bytes_so_a_gzip_bomb_is_stopped(feed_server: FeedServer) -> None:
    settings = make(fetch_max_bytes=5 * 1024 * 1024)
    with pytest.raises(FetchError, match=r"^response larger than 5 MB$"):
        fetch(feed_server.url("/gzip-bomb?mb=50"), settings)


@pytest.mark.integration
def test_body_exactly_at_the_cap_is_accepted(feed_server: FeedServer) -> None:
    body = fixture_bytes("hf_daily.json")
    url = feed_server.put("/exact.json", body, "application/json")
    assert fetch(url, make(fetch_max_bytes=len(body))).body == body
    with pytest.raises(FetchError, match="response larger than"):
        fetch(url, make(fetch_max_bytes=len(body) - 1))


# --- redirects -----------------------------------------------------------------------


@pytest.mark.integration
def test_relative_redirect_is_followed(feed_server: FeedServer) -> None:
    result = fetch(feed_server.url("/redirect?to=/feeds/hf_daily.json&status=301"), make())
    assert result.body == fixture_bytes("hf_daily.json")
    assert result.final_url == feed_server.feed_url("hf_daily.json")
    assert result.redirects == [feed_server.feed_url("hf_daily.json")]


@pytest.mark.integration
def test_five_redirects_are_fine_six_are_too_many(feed_server: FeedServer) -> None:
    result = fetch(feed_server.url("/redirect-chain/5"), make())
    assert result.body == fixture_bytes("arxiv_rss_cs_lg.xml")
    assert len(result.redirects) == 5
    with pytest.raises(FetchError, match=r"^too many redirects \(more than 5\)"):
        fetch(feed_server.url("/redirect-chain/6"), make())


@pytest.mark.integration
def test_redirect_loop_stops(feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match=r"^too many redirects"):
        fetch(feed_server.url("/loop"), make())
    assert feed_server.count("/loop") == 6  # the first request and five redirects


@pytest.mark.integration
def test_redirect_to_file_url_is_refused(feed_server: FeedServer) -> None:
    with pytest.raises(
        FetchError,
        match=r"^refusing file: URL \(redirected from http://127\.0\.0\.1:\d+/redirect-file\)",
    ):
        fetch(feed_server.url("/redirect-file"), make())


@pytest.mark.integration
def test_redirect_without_location(feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match="without a Location header"):
        fetch(feed_server.url("/redirect-no-location"), make())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "refusing file: URL"),
        ("ftp://ftp.example.org/feed.xml", "refusing ftp: URL"),
        ("javascript:alert(1)", "refusing javascript: URL"),
        ("/feeds/relative.xml", "refusing scheme-less URL"),
        ("http:///no-host", "no host in URL"),
    ],
)
def test_non_http_urls_are_refused_before_any_connection(url: str, message: str) -> None:
    with pytest.raises(FetchError, match=f"^{message}"):
        fetch(url, make())


# --- errors --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("code", "message"),
    [
        (500, "HTTP 500 Internal Server Error"),
        (404, "HTTP 404 Not Found"),
        (403, "HTTP 403 Forbidden"),
        (503, "HTTP 503 Service Unavailable (retry after 120 s)"),
        (429, "HTTP 429 Too Many Requests (retry after 120 s)"),
    ],
)
def test_http_error_statuses(feed_server: FeedServer, code: int, message: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch(feed_server.url(f"/status/{code}"), make())
    assert str(excinfo.value) == message


@pytest.mark.integration
def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now.
    with pytest.raises(FetchError, match=r"^cannot connect to 127\.0\.0\.1: .*refused"):
        fetch(f"http://127.0.0.1:{port}/feed.xml", make())


@pytest.mark.integration
def test_unresolvable_host() -> None:
    with pytest.raises(FetchError, match=r"^cannot resolve host no-such-host\.invalid"):
        fetch("http://no-such-host.invalid/feed.xml", make())


# --- private addresses ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_server_is_refused_without_allow_private(
    feed_server: FeedServer, host: str
) -> None:
    url = feed_server.feed_url("hf_daily.json").replace("127.0.0.1", host)
    with pytest.raises(FetchError) as excinfo:
        fetch(url, make(allow_private_feeds=False))
    message = str(excinfo.value)
    assert message.startswith(f"host {host} resolves to a loopback address")
    assert message.endswith("(set DIGEST_ALLOW_PRIVATE_FEEDS=1 to allow)")
    assert feed_server.count("/feeds/hf_daily.json") == 0  # refused before connecting


@pytest.mark.integration
@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "a cloud metadata"),
        ("http://10.1.2.3/feed.xml", "a private"),
        ("http://127.0.0.2:9/feed.xml", "a loopback"),
        ("http://[::ffff:192.168.1.1]/feed.xml", "a private"),
        ("http://[fec0::1]/feed.xml", "a site-local"),
    ],
)
def test_redirect_hop_to_a_private_address_is_refused(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, target: str, reason: str
) -> None:
    # The fixture server itself lives on loopback, so let exactly its address count as
    # public for this test: the first hop then passes and the redirect is what is judged.
    real = guard.address_refusal
    server_ip = ipaddress.ip_address(feed_server.host)
    monkeypatch.setattr(guard, "address_refusal", lambda ip: None if ip == server_ip else real(ip))
    with pytest.raises(FetchError, match=f"resolves to {reason} address"):
        fetch(feed_server.url(f"/redirect?to={target}"), make(allow_private_feeds=False))
    assert feed_server.count("/redirect") == 1


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "a loopback"),
        ("127.8.9.10", "a loopback"),
        ("::1", "a loopback"),
        ("10.0.0.1", "a private"),
        ("172.16.5.4", "a private"),
        ("192.168.0.10", "a private"),
        ("fc00::1", "a private"),
        ("169.254.1.1", "a link-local"),
        ("fe80::1", "a link-local"),
        ("fec0::1", "a site-local"),  # deprecated site-local (RFC 3879), "global" to Python
        ("feff:ffff::1", "a site-local"),
        ("fec0:0:0:ffff::1", "a site-local"),
        ("169.254.169.254", "a cloud metadata"),
        ("fd00:ec2::254", "a cloud metadata"),
        ("224.0.0.1", "a multicast"),
        ("ff02::1", "a multicast"),
        ("0.0.0.0", "an unspecified"),
        ("::", "an unspecified"),
        ("240.0.0.1", "a private"),  # reserved, and Python files 240/4 under private too
        ("100.64.0.1", "a non-public"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "a loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "a cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "a loopback"),  # 6to4 of 127.0.0.1
        ("93.184.215.14", None),
        ("2606:4700::6810:84e5", None),
    ],
)
def test_address_policy(ip: str, reason: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(ip)) == reason


# --- politeness ----------------------------------------------------------------------


@pytest.mark.integration
def test_one_request_per_delay_per_host(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(fetch_module, "_next_slot", {})
    monkeypatch.setattr(fetch_module, "_sleep", waits.append)
    settings = make(fetch_delay=3.0)
    fetch(feed_server.feed_url("hf_daily.json"), settings)
    assert waits == []  # the first request to a host goes at once
    fetch(feed_server.feed_url("hf_daily.json").replace("127.0.0.1", "localhost"), settings)
    assert waits == []  # another host name is another host
    fetch(feed_server.feed_url("hf_daily.json"), settings)
    assert len(waits) == 1 and 2.0 < waits[0] <= 3.0
    assert feed_server.count("/feeds/hf_daily.json") == 3


# --- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a fresh self-signed certificate for localhost."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    payload = fixture_bytes("arxiv_rss_cs_lg.xml")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}/feed.xml", cert
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.integration
def test_https_certificate_is_verified(tls_server: tuple[str, Path]) -> None:
    url, _cert = tls_server
    with pytest.raises(
        FetchError, match=r"^cannot connect to localhost: .*CERTIFICATE_VERIFY_FAILED"
    ):
        fetch(url, make())


@pytest.mark.integration
def test_https_through_the_guarded_connection(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trust the test certificate: TLS runs over the address-pinned, deadline-bound
    # stream, with SNI and hostname checks against "localhost", not the IP we dialled.
    url, cert = tls_server
    monkeypatch.setattr(guard, "_ssl_context", ssl.create_default_context(cafile=str(cert)))
    result = fetch(url, make())
    assert result.status == 200
    assert result.body == fixture_bytes("arxiv_rss_cs_lg.xml")
