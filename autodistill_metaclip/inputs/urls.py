"""Fetching an image URL: one deadline for all of it, capped bodies, no credentials shown.

:func:`download` speaks HTTP/1.1 through :mod:`http.client` on a socket it owns, so that a timer
can shut the socket down when :data:`URL_TIMEOUT` is up: a server that drips headers or body a
byte at a time, or redirects slowly, cannot hold a call longer. The name lookup runs in a thread
under the same deadline. Redirects are followed (at most :data:`MAX_REDIRECTS`); ``gzip`` and
``deflate`` bodies are decoded within :data:`MAX_URL_BYTES`; ``user:password@`` is sent as basic
authentication. URLs are fetched directly, without proxy variables.

Each URL, redirects included, must pass the input policy (see
:mod:`autodistill_metaclip.inputs.policy`); under ``public_only`` the name is resolved once, each
address is checked, and the socket connects to a checked address itself (no second lookup that a
rebinding DNS server could answer differently); https still verifies the certificate against the
URL's host name (SNI).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
import zlib
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.inputs.policy import InputPolicy, in_force

URL_TIMEOUT = 10.0
"""Seconds for everything one URL takes: connecting, each redirect, the headers and the body."""
MAX_URL_BYTES = 64 * 1024 * 1024
"""Largest URL body, before and after gzip/deflate decoding."""
MAX_REDIRECTS = 5
_SECRET_PARAMETER = re.compile(r"sig|signature|token|key|secret|password|credential|auth", re.I)


def redact(location: str) -> str:
    """A URL or URI without its secrets: the user info, and query values named like
    signatures, tokens or keys (``X-Amz-Signature``, ``access_token``...) become ``***``."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{name}=***" if _SECRET_PARAMETER.search(name) else f"{name}={value}" if sep else name
        for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def download(url: str, policy: InputPolicy | None = None) -> bytes:
    """Fetch a URL's body within one deadline (:data:`URL_TIMEOUT`) for the name lookup,
    connecting, every redirect, the headers and the body; errors, non-images and oversized
    bodies are refused, and so is a URL or redirect that ``policy`` (default: the one in force,
    :func:`~autodistill_metaclip.inputs.policy.in_force`) refuses. No message shows the URL's
    credentials."""
    policy = in_force(policy)
    shown = repr(redact(url))
    deadline = time.monotonic() + URL_TIMEOUT
    for _ in range(MAX_REDIRECTS + 1):
        why = policy.refusal(url)
        if why is not None:
            raise ImageLoadError(f"{shown}: {why}")
        try:
            redirect, body = _fetch(url, deadline, shown, policy)
        except ImageLoadError:
            raise
        except (OSError, ValueError, http.client.HTTPException) as e:  # ValueError: a bad port
            if time.monotonic() >= deadline:
                raise ImageLoadError(f"{shown}: not complete within {URL_TIMEOUT:g}s") from None
            why = _scrub(f"{type(e).__name__}: {e}", url)
            raise ImageLoadError(f"{shown}: download failed ({why})") from None
        if redirect is None:
            return body
        url, shown = redirect, repr(redact(redirect))
    raise ImageLoadError(f"{shown}: more than {MAX_REDIRECTS} redirects")


def _fetch(url: str, deadline: float, shown: str, policy: InputPolicy) -> tuple[str | None, bytes]:
    """One request: ``(redirect target, b"")`` or ``(None, body)``. At the deadline the socket
    is shut down from a timer, so no server can hold a read open by dripping bytes."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ImageLoadError(f"{shown}: not an http(s) URL")
    secure = parts.scheme.lower() == "https"
    port = parts.port or (443 if secure else 80)
    with contextlib.ExitStack() as cleanup:
        current = [_connect(parts.hostname, port, deadline, policy, shown)]  # the timer shuts it
        cleanup.callback(lambda: current[0].close())
        timer = threading.Timer(_left(deadline), _shut, (current,))
        timer.daemon = True
        timer.start()
        cleanup.callback(timer.cancel)
        if secure:
            context = ssl.create_default_context()
            current[0] = context.wrap_socket(current[0], server_hostname=parts.hostname)
            _left(deadline)  # the timer may have fired on the socket before it was wrapped
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        connection = kind(parts.hostname, port, timeout=_left(deadline))
        connection.sock = current[0]
        cleanup.callback(connection.close)
        headers = {"Accept-Encoding": "gzip, deflate", "User-Agent": "autodistill-metaclip"}
        if parts.username is not None:
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            return urljoin(url, location), b""
        if response.status != 200:
            raise ImageLoadError(f"{shown}: HTTP {response.status} {response.reason}".rstrip())
        content_type = response.getheader("Content-Type", "")
        if content_type.startswith(("text/", "application/json")):
            raise ImageLoadError(f"{shown}: the server sent {content_type}, not an image")
        body = _body(response, response.getheader("Content-Encoding", ""), shown)
        _left(deadline)  # a body cut short by the deadline's shutdown is no body
        return None, body


def _connect(
    host: str, port: int, deadline: float, policy: InputPolicy, shown: str
) -> socket.socket:
    """A socket connected to an address of ``host`` that ``policy`` allows (checked on the
    address connected to); the name lookup runs in a thread so that it, too, ends in time."""
    found: list[Any] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as e:
            found.append(e)

    resolver = threading.Thread(target=lookup, daemon=True)
    resolver.start()
    resolver.join(_left(deadline))
    if not found:
        raise TimeoutError(f"no address for {host!r} in time")
    if isinstance(found[0], Exception):
        raise found[0]
    error: OSError = OSError(f"no address for {host!r}")
    refused = []
    for family, kind, protocol, _, address in found[0]:
        why = policy.address_refusal(address[0])
        if why is not None:
            refused.append(why)
            continue
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            error = e
    if refused and len(refused) == len(found[0]):
        raise ImageLoadError(f"{shown}: {refused[0]}; refused under public_only")
    raise error


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's password or secret query values (as :func:`redact` hides)."""
    parts = urlsplit(url)
    secrets = [parts.password or ""]
    secrets += [
        value
        for name, _, value in (item.partition("=") for item in parts.query.split("&"))
        if _SECRET_PARAMETER.search(name)
    ]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***").replace(unquote(secret), "***")
    return text


def _body(response: http.client.HTTPResponse, encoding: str, shown: str) -> bytes:
    """The body, gzip/deflate decoded; both sizes capped at :data:`MAX_URL_BYTES`."""
    encoding = encoding.strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise ImageLoadError(f"{shown}: unsupported Content-Encoding {encoding!r}")
    inflate = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding not in ("", "identity") else None
    received, body = 0, bytearray()
    while chunk := response.read1(65536):
        received += len(chunk)
        if inflate is not None:
            try:
                # At most one byte over the cap comes out: enough to refuse it.
                chunk = inflate.decompress(chunk, MAX_URL_BYTES + 1 - len(body))
            except zlib.error as e:
                raise ImageLoadError(f"{shown}: corrupt {encoding} body ({e})") from None
        body += chunk
        if received > MAX_URL_BYTES or len(body) > MAX_URL_BYTES:
            raise ImageLoadError(f"{shown}: body larger than {MAX_URL_BYTES} bytes")
    return bytes(body)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _shut(current: list[socket.socket]) -> None:
    try:
        current[0].shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
