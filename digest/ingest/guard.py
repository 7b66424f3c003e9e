"""Where a feed fetch may connect: the SSRF policy, enforced inside the connection.

Feed URLs come from operators and from redirects chosen by strangers. Unless
``allow_private_feeds``, a host must not resolve to a loopback, private,
link-local, multicast, reserved, unspecified, non-global or cloud-metadata
address. A guarded httpcore network backend resolves the name once, checks every
address, then connects to the address it checked, so DNS rebinding between check
and connect has no window; the same backend enforces the read deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from typing import Any

import httpcore
import httpx

from digest.errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints: most are link-local or private already, but they
# get their own name in the error because reaching one is the classic SSRF payoff.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- address policy ------------------------------------------------------------------


def address_refusal(ip: IPAddress) -> str | None:
    """Why we will not connect to ``ip`` (e.g. ``"a loopback"``), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 is judged as the IPv4 address it reaches.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
        ip = ipaddress.IPv6Address(int(ip))  # drops any %scope
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata"
    for attribute, reason in (
        ("is_loopback", "a loopback"),
        ("is_unspecified", "an unspecified"),
        ("is_link_local", "a link-local"),
        # fec0::/10 was deprecated (RFC 3879) but some stacks still route it inside a
        # site, and Python counts it as global.
        ("is_site_local", "a site-local"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    ):
        if getattr(ip, attribute, False):
            return reason
    if not ip.is_global:  # carrier-grade NAT 100.64/10 and the like
        return "a non-public"
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FetchError(f"cannot resolve host {host}: {reason}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchError(f"cannot resolve host {host}: no addresses")
    return addresses


# --- the guarded network backend -----------------------------------------------------


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def cap(self, timeout: float | None) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise httpcore.ReadTimeout("overall deadline passed")
        return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """Every read and write gets at most what is left of the overall deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.cap(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.cap(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.cap(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, allow_private: bool, deadline: Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port)
        if not self._allow_private:
            for ip in addresses:
                reason = address_refusal(ip)
                if reason:
                    shown = "" if str(ip) == host.strip("[]") else f" ({ip})"
                    raise FetchError(
                        f"host {host} resolves to {reason} address{shown} "
                        "(set DIGEST_ALLOW_PRIVATE_FEEDS=1 to allow)"
                    )
        last_error: Exception | None = None
        for ip in addresses:
            try:
                # Connect to the address we checked, not to the name: no second lookup.
                stream = self._inner.connect_tcp(
                    str(ip), port, self._deadline.cap(timeout), local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        assert last_error is not None
        raise last_error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise FetchError("refusing to connect to a unix socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, backend: _GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no public hook for a network backend; the pool is the one thing
        # replaced, and HTTPTransport keeps mapping httpcore errors to httpx ones.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=2,
            max_keepalive_connections=1,
            network_backend=backend,
        )


_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def _shared_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~20 ms; once per process is plenty.
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


def guarded_transport(allow_private: bool, deadline: Deadline) -> httpx.HTTPTransport:
    """An httpx transport that connects only where the policy allows, within ``deadline``."""
    return _GuardedTransport(_GuardedBackend(allow_private, deadline), _shared_ssl_context())


__all__ = ["METADATA_ADDRESSES", "Deadline", "IPAddress", "address_refusal", "guarded_transport"]
