"""Where a feed may be fetched from: the address policy, and the urllib3 connections that
apply it inside ``_new_conn``, on the very addresses the socket then connects to (so DNS
cannot answer differently between the check and the connection)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from monitor.fetch.deadline import Attempt

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressPolicy:
    """Which addresses a feed may be fetched from: public ones, unless the config says more.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4, NAT64
    ``64:ff9b::/96``) are judged by the IPv4 address inside.
    """

    _NAT64 = ipaddress.ip_network("64:ff9b::/96")

    def __init__(self, allow_private: bool = False, allowed_networks: tuple[str, ...] = ()):
        self.allow_private = allow_private
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    @classmethod
    def unwrap(cls, ip: IPAddress) -> IPAddress:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return ip.ipv4_mapped
            if ip.sixtofour is not None:
                return ip.sixtofour
            if ip in cls._NAT64:
                return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        return ip

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` is refused ("loopback", "private", ...), or None when it is allowed."""
        inner = self.unwrap(ip)
        if any(inner.version == n.version and inner in n for n in self.networks) or any(
            ip.version == n.version and ip in n for n in self.networks
        ):
            return None
        if inner.is_multicast:
            return "multicast"
        if inner.is_unspecified:
            return "unspecified"
        if self.allow_private:
            return None
        for kind in ("loopback", "link_local", "private", "reserved"):
            if getattr(inner, f"is_{kind}"):
                return kind.replace("_", "-")
        if not inner.is_global:
            return "non-public"
        return None


class AddressRefused(Exception):
    """Raised inside a connection attempt; deliberately not an OSError, so neither
    urllib3 nor requests retries or rewraps it. The fetcher turns it into FeedError."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if host.strip("[]") == address:  # an address literal in the URL
            super().__init__(f"{address} is a {reason} address")
        else:
            super().__init__(f"{host} resolves to {address}, a {reason} address")


STRICT = AddressPolicy()


class _Current(threading.local):
    """The fetch running on this thread, which the connections it opens report to."""

    policy: AddressPolicy = STRICT
    attempt: Attempt | None = None


this_thread = _Current()


def _connect(conn: HTTPConnection) -> socket.socket:
    """``_new_conn`` for our connections: resolve, check every address, connect to an
    allowed one. Errors are raised the way urllib3's own ``_new_conn`` raises them."""
    attempt = this_thread.attempt
    policy = this_thread.policy
    host = conn._dns_host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameResolutionError(conn.host, conn, e) from e
    allowed = []
    refused: tuple[str, str] | None = None
    for info in infos:
        address = str(info[4][0])
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        reason = policy.refusal(ip)
        if reason is None:
            allowed.append((info, STRICT.refusal(ip) is not None))
        elif refused is None:
            refused = (address, reason)
    if not allowed:
        assert refused is not None
        raise AddressRefused(conn.host, *refused)
    timeout = conn.timeout
    err: OSError | None = None
    for (family, kind, proto, _, sockaddr), private in allowed:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if attempt is not None:
                attempt.watch(sock)
                left = max(attempt.left(), 0.01)
                timeout = left if timeout in (None, _DEFAULT_TIMEOUT) else min(timeout, left)
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as e:
            err = e
            sock.close()
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        if attempt is not None and private:
            attempt.private = True  # the host's slots: see fetch/hosts.py
        return sock
    if isinstance(err, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})"
        ) from err
    raise NewConnectionError(conn, f"Failed to establish a new connection: {err}") from err


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = this_thread.attempt
        if attempt is not None:  # a kept-alive connection: the watchdog must know it too
            attempt.watch(self.sock)
        return super().request(*args, **kwargs)


class _CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = this_thread.attempt
        if attempt is not None:
            attempt.watch(self.sock)
        return super().request(*args, **kwargs)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """A requests adapter whose pools open only checked connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }
