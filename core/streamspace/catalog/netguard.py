"""Where repository syncs may connect: addresses resolved once, checked, pinned; no redirects away.

A repository URL is chosen by a caller and fetched by the operator from inside the cluster, so
it is a way to make the operator connect anywhere (SSRF). ``NetworkGuard.pin`` resolves the
host once, refuses the whole name when any of its addresses is in a refused range, and returns
the address that every connection of that fetch then uses (no second lookup a rebinding DNS
server could answer differently). ``guarded_pool_manager`` is the urllib3 pool manager handed to
dulwich's HTTP client: it connects only to the pinned address of the pinned origin (TLS still
verifies the certificate for the host name) and follows a redirect only within that origin.

Ranges (``refusal``): metadata endpoints, unspecified, multicast, broadcast and reserved
addresses are always refused; loopback, private (RFC 1918, CGNAT, ULA), link-local and the like
are refused unless ``ALLOW_PRIVATE_NETWORKS=true`` (development and tests). Addresses that embed
an IPv4 address (IPv4-mapped, NAT64, 6to4, IPv4-compatible) are judged by that address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from streamspace.catalog.errors import Reason, RepositoryError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
Connector = Callable[[tuple[str, int], float | None], socket.socket]

MAX_REDIRECTS = 5
DEFAULT_PORTS = {"https": 443, "ssh": 22}

# Cloud metadata services: refused even where private networks are allowed.
METADATA = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2/32",  # AWS ECS task metadata
        "169.254.169.123/32",  # AWS time sync
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud
        "fd00:ec2::254/128",  # AWS over IPv6
    )
)
# Never a Git server: refused always.
NEVER = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
        "::/128",  # unspecified
        "ff00::/8",  # multicast
    )
)
# Inside the cluster, the node or the local network: refused unless private networks are allowed.
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "::1/128",  # loopback
        "fc00::/7",  # unique local (ULA)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "2001::/32",  # Teredo: tunnels to an address we cannot judge
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def _embedded(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv6 one that carries it (mapped, NAT64, 6to4, compatible)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address, allow_private: bool) -> str | None:
    """Why a connection to ``address`` is refused (a range's description), or None."""
    inner = _embedded(address)
    if inner is not None:
        return refusal(inner, allow_private)
    if any(address in net for net in METADATA):
        return "a cloud metadata address"
    if any(address in net for net in NEVER):
        return "an unspecified, multicast or reserved address"
    if not allow_private and any(address in net for net in PRIVATE):
        return "a loopback, private or link-local address"
    return None


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _system_connect(address: tuple[str, int], timeout: float | None) -> socket.socket:
    return socket.create_connection(address, timeout)


@dataclass(frozen=True)
class Pinned:
    """One origin of a fetch and the single address all its connections go to."""

    scheme: str
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class NetworkGuard:
    """The outbound policy of repository syncs; resolver and connector are injectable for tests."""

    allow_private: bool = False
    resolve: Resolver = field(default=_system_resolve, repr=False)
    connect: Connector = field(default=_system_connect, repr=False)

    def pin(self, url: str) -> Pinned:
        """Resolve the URL's host once and check every address; RepositoryError if refused."""
        parts = urlsplit(url)
        scheme = parts.scheme
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(scheme, 443)
        try:
            addresses: Sequence[str] = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = self.resolve(host, port)
            except OSError:
                addresses = []
        if not addresses:
            raise RepositoryError(
                "the repository host name could not be resolved", Reason.FETCH_FAILED
            )
        for text in addresses:
            why = refusal(ipaddress.ip_address(text.split("%", 1)[0]), self.allow_private)
            if why is not None:
                raise RepositoryError(
                    f"the repository host resolves to {why}; such addresses are refused "
                    "(ALLOW_PRIVATE_NETWORKS)",
                    Reason.ADDRESS_REFUSED,
                )
        return Pinned(scheme, host, port, addresses[0])


def same_origin(pinned: Pinned, url: str) -> bool:
    """True when ``url`` has the pinned scheme, host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
    except ValueError:
        return False
    return (parts.scheme, (parts.hostname or "").lower().rstrip("."), port) == (
        pinned.scheme,
        pinned.host,
        pinned.port,
    )


def guarded_pool_manager(
    guard: NetworkGuard, pinned: Pinned, ca_bundle: Path | None, timeout: float = 60
) -> urllib3.PoolManager:
    """A pool manager that reaches only ``pinned`` (its address, its origin, https only)."""

    class PinnedConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            if (self.host.lower().rstrip("."), self.port) != (pinned.host, pinned.port):
                raise RepositoryError(
                    "the sync tried to reach another host", Reason.REDIRECT_REFUSED
                )
            limit = self.timeout if isinstance(self.timeout, int | float) else None
            sock = guard.connect((pinned.address, pinned.port), limit)
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            return sock

    class PinnedPool(HTTPSConnectionPool):
        ConnectionCls = PinnedConnection

    class Manager(urllib3.PoolManager):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.responses: list[urllib3.BaseHTTPResponse] = []

        def clear(self) -> None:
            """Close the pools and every response handed out (dulwich leaves some unread)."""
            for response in self.responses:
                response.close()
            self.responses.clear()
            super().clear()

        def urlopen(  # type: ignore[override]
            self, method: str, url: str, redirect: bool = True, **kw: Any
        ) -> urllib3.BaseHTTPResponse:
            del redirect  # followed here, within the origin only
            for _ in range(MAX_REDIRECTS + 1):
                if not same_origin(pinned, url):
                    raise RepositoryError(
                        "the server redirected to another host or scheme; redirects are only "
                        "followed within the repository's origin",
                        Reason.REDIRECT_REFUSED,
                    )
                response = super().urlopen(method, url, redirect=False, **kw)
                self.responses.append(response)
                location = response.get_redirect_location()
                if not location:
                    return response
                response.drain_conn()
                response.release_conn()
                if method.upper() != "GET":
                    raise RepositoryError(
                        "the server redirected a Git request", Reason.REDIRECT_REFUSED
                    )
                url = urljoin(url, location)
            raise RepositoryError("too many redirects", Reason.REDIRECT_REFUSED)

    manager = Manager(
        num_pools=1,
        timeout=urllib3.Timeout(connect=20, read=timeout),
        retries=urllib3.Retry(total=0, redirect=0, raise_on_redirect=False),
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(ca_bundle) if ca_bundle is not None else None,
        headers={"User-Agent": "streamspace-operator"},
    )
    manager.pool_classes_by_scheme = {"https": PinnedPool}  # plain http: no pool, KeyError
    return manager


def ssh_pin_options(pinned: Pinned) -> list[str]:
    """ssh options that check the host key of the name while connecting to the pinned address."""
    alias = pinned.host if pinned.port == 22 else f"[{pinned.host}]:{pinned.port}"
    return ["-o", f"HostKeyAlias={alias}", "-o", "CheckHostIP=no"]
