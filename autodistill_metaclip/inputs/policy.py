"""What an input string may reach: :class:`InputPolicy`.

Every string input (an image, a folder to list) is checked here before anything is opened:
:func:`~autodistill_metaclip.inputs.images.read_image` (the one entry for every image),
:func:`~autodistill_metaclip.inputs.sources.list_images` (every folder ``label()``, the index
and Ray list) and :func:`~autodistill_metaclip.inputs.urls.download` (each redirect, and the
address each connection goes to).

A model carries its policy (``MetaCLIP(inputs=...)``, :class:`~autodistill_metaclip.ModelSpec`):
its images are read under it in any thread. Code that lists or reads without a model uses the
policy in force in the calling thread (:func:`in_force`), set for a block with :func:`using`
(``MetaCLIP.label`` and the command line do), else the default ``InputPolicy()``.

Examples:
    >>> InputPolicy().refusal("https://example.com/a.jpg") is None
    True
    >>> InputPolicy().refusal("ftp://host/a.jpg")[:50]
    'ftp:// inputs are not allowed by the input policy '
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TypeAlias
from urllib.parse import urlsplit

from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError

Address: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
Network: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"

LOCAL = "file"
"""The scheme name of local paths (and ``file://`` URIs without a host)."""
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
"""Object stores fsspec reads with the process's own configuration (endpoint, credentials)."""
DEFAULT_SCHEMES = frozenset({LOCAL, "http", "https"} | OBJECT_STORES)
"""What an input may be by default: a local path, an http(s) URL, an object store URI."""
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)
"""Cloud instance-metadata endpoints (AWS, ECS, AWS IPv6, Alibaba, Azure's wire server): never
reachable under ``public_only``, even from ``trusted_networks``."""
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHECKABLE = OBJECT_STORES | {LOCAL, "memory", "http", "https"}
"""What ``public_only`` can vouch for: http(s), whose every address is checked, and schemes
whose inputs name no network host (an object store's endpoint is the operator's)."""


@dataclass(frozen=True)
class InputPolicy:
    """Which schemes an input string may use, and for services, which addresses it may reach.

    Args:
        schemes: Allowed schemes: ``"file"`` for local paths (and ``file://`` URIs without a
            host), ``"http"``, ``"https"``, and fsspec protocols (``"s3"``, ``"memory"``,
            ``"ftp"``, ``"zip"``...). Every protocol of an fsspec chain
            (``zip://a.png::s3://b/c.zip``) must be allowed. Default: :data:`DEFAULT_SCHEMES`.
        public_only: For services taking untrusted URLs: http(s) connections go only to public
            addresses (not loopback, private, link-local, shared, multicast, reserved,
            unspecified or cloud-metadata), checked on the address each connection actually
            uses, every redirect included. fsspec protocols that name a host (ftp, webhdfs,
            http inside a chain...) are refused, since their connections cannot be checked.
        trusted_networks: With ``public_only``: networks (``"10.1.0.0/16"``) that may be
            reached anyway, e.g. a service's own image store; never a metadata address.

    Examples:
        >>> InputPolicy().allowing("memory").refusal("memory://photos/a.png") is None
        True
    """

    schemes: frozenset[str] = DEFAULT_SCHEMES
    public_only: bool = False
    trusted_networks: tuple[str | Network, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.schemes, str) or not isinstance(self.schemes, Iterable):
            raise ArgumentTypeError(
                "inputs", f"expected a set of scheme names, but got {self.schemes!r}"
            )
        names = frozenset(_scheme_name(s) for s in self.schemes)
        if not isinstance(self.public_only, bool):
            raise ArgumentTypeError(
                "inputs", f"public_only: expected True or False, but got {self.public_only!r}"
            )
        networks = tuple(_network(n) for n in self.trusted_networks)
        object.__setattr__(self, "schemes", names)
        object.__setattr__(self, "trusted_networks", networks)

    @classmethod
    def public_urls(cls) -> InputPolicy:
        """For a service taking URLs from users (CLI ``--public-urls-only``): http(s) URLs to
        public addresses only; no local files, no other scheme."""
        return cls(frozenset({"http", "https"}), public_only=True)

    def allowing(self, *schemes: str) -> InputPolicy:
        """This policy with more schemes allowed (``InputPolicy().allowing("memory")``)."""
        return replace(self, schemes=self.schemes | {_scheme_name(s) for s in schemes})

    def refusal(self, location: str) -> str | None:
        """Why an input string may not be read under this policy; ``None`` if it may."""
        kinds = schemes_of(location)
        for kind in kinds:
            if kind not in self.schemes:
                what = "local files" if kind == LOCAL else f"{kind}:// inputs"
                return (
                    f"{what} are not allowed by the input policy (allowed: "
                    f"{', '.join(sorted(self.schemes)) or 'nothing'}; enable with "
                    f"inputs=InputPolicy().allowing({kind!r}) or --allow-scheme {kind})"
                )
        if self.public_only and (len(kinds) > 1 or kinds[0] not in _CHECKABLE):
            return (
                f"{'::'.join(kinds)} inputs cannot be checked for public addresses; refused "
                "under public_only (--public-urls-only)"
            )
        return None

    def address_refusal(self, address: str) -> str | None:
        """Why a connection to ``address`` (an IP, as connected to) is refused; ``None`` if
        allowed. Only ``public_only`` refuses addresses."""
        if not self.public_only:
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 scope
        for candidate in _embedded(ip):
            if candidate in METADATA_ADDRESSES:
                return f"{address} is a cloud metadata address"
        if any(ip in _network(network) for network in self.trusted_networks):
            return None
        for candidate in _embedded(ip):
            kind = _non_public_kind(candidate)
            if kind is not None:
                return f"{address} is not a public address ({kind})"
        return None


def in_force(policy: InputPolicy | None = None) -> InputPolicy:
    """``policy`` if given, else the one in force in this thread (see :func:`using`), else
    the default."""
    return policy if policy is not None else _CURRENT.get()


@contextmanager
def using(policy: InputPolicy) -> Iterator[InputPolicy]:
    """Make ``policy`` the one in force in this thread for the block."""
    token = _CURRENT.set(policy)
    try:
        yield policy
    finally:
        _CURRENT.reset(token)


def schemes_of(location: str) -> list[str]:
    """The schemes an input string uses: ``["file"]`` for a local path, ``["https"]``, or each
    protocol of an fsspec URI, chained ones included (``["zip", "http"]``)."""
    match = _SCHEME.match(location)
    if match is None:
        return [LOCAL]
    scheme = match[1].lower()
    if scheme in ("http", "https"):  # fetched by urls.download: "::" may be an IPv6 address
        return [scheme]
    if scheme == LOCAL and urlsplit(location).netloc in ("", "localhost"):
        return [LOCAL]  # read as the local path it names, never through fsspec
    return [part.split("://", 1)[0].lower() for part in location.split("::")]


def _scheme_name(scheme: object) -> str:
    if not isinstance(scheme, str) or not scheme.strip(": /"):
        raise ArgumentTypeError("inputs", f"expected scheme names such as 's3', but got {scheme!r}")
    return scheme.strip().removesuffix("://").lower()


def _network(network: str | Network) -> Network:
    try:
        return ipaddress.ip_network(network, strict=False)
    except (TypeError, ValueError) as e:
        raise ArgumentError("inputs", f"trusted_networks: {e}") from None


def _embedded(ip: Address) -> list[Address]:
    """``ip``, and the IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64)."""
    found: list[Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        found += [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        found += list(ip.teredo or ())
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _non_public_kind(ip: Address) -> str | None:
    """What kind of non-public address ``ip`` is; ``None`` for a public one."""
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global),
    ):
        if flag:
            return kind
    return None


DEFAULT_POLICY = InputPolicy()
"""The default: local paths, http(s) to any address, and object stores."""
_CURRENT: ContextVar[InputPolicy] = ContextVar("input_policy", default=DEFAULT_POLICY)
