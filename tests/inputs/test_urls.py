"""Fetching image URLs from a local server that misbehaves in every way: one deadline for the
whole fetch (a server dripping bytes cannot hold it), capped bodies, limited redirects, and no
credentials in any message."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autodistill_metaclip import ImageLoadError, MetaCLIP, synthetic
from autodistill_metaclip.inputs import urls
from autodistill_metaclip.inputs.policy import InputPolicy
from autodistill_metaclip.inputs.urls import download, redact
from tests.helpers import QuietHandler, serve, trusted_certificate

PNG = io.BytesIO()
synthetic.make_image("red", "circle", size=(64, 64), seed=3).save(PNG, format="PNG")
DRIPPING = threading.Event()
"""Set by the server while it drips a response a byte at a time."""


class Misbehaving(QuietHandler):
    def do_GET(self) -> None:
        deadline = time.monotonic() + 5
        if self.path == "/ok.png":
            self.send(200, "image/png", PNG.getvalue())
        elif self.path == "/slow.png":
            time.sleep(2)
            self.send(200, "image/png", PNG.getvalue())
        elif self.path == "/gzip.png":
            self.send(200, "image/png", gzip.compress(PNG.getvalue()), encoding="gzip")
        elif self.path == "/gzip-bomb.png":  # 2 MB of zeros in 2 kB: over the 1 MB cap decoded
            self.send(200, "image/png", gzip.compress(bytes(2_000_000)), encoding="gzip")
        elif self.path == "/brotli.png":
            self.send(200, "image/png", b"\x00" * 10, encoding="br")
        elif self.path == "/drip-headers.png":  # each byte in time for a per-read timeout
            DRIPPING.set()
            with contextlib.suppress(OSError):
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: " + b"a" * 200:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)
        elif match := re.fullmatch(r"/hop/(\d+)", self.path):  # 0.1 s, then one more redirect
            time.sleep(0.1)
            self.send_response(302)
            self.send_header("Location", f"/hop/{int(match[1]) + 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-ok":
            self.send_response(301)
            self.send_header("Location", "/ok.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/private.png"):
            expected = "Basic " + base64.b64encode(b"ann:hunter2").decode()
            if self.headers.get("Authorization") == expected:
                self.send(200, "image/png", PNG.getvalue())
            else:
                self.send(401, "text/plain", b"who are you")
        elif self.path == "/page.png":
            self.send(200, "text/html; charset=utf-8", b"<html><body>not here</body></html>")
        elif self.path == "/data.json":
            self.send(200, "application/json", b"{}")
        elif self.path in ("/endless.jpg", "/drip.jpg"):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            chunk = b"\xff" * (65536 if self.path == "/endless.jpg" else 1)
            if self.path == "/drip.jpg":
                DRIPPING.set()
            with contextlib.suppress(OSError):
                while time.monotonic() < deadline:
                    self.wfile.write(chunk)
                    if self.path == "/drip.jpg":
                        time.sleep(0.05)
        else:
            self.send(404, "text/plain", b"no such image")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(urls, "URL_TIMEOUT", 0.5)
    monkeypatch.setattr(urls, "MAX_URL_BYTES", 1_000_000)
    DRIPPING.clear()
    with serve(Misbehaving) as url:
        yield url


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The same server behind TLS, with a certificate this test makes and trusts."""
    key, cert = trusted_certificate(tmp_path, monkeypatch)
    monkeypatch.setattr(urls, "URL_TIMEOUT", 0.5)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    DRIPPING.clear()
    with serve(Misbehaving, tls=context) as url:
        yield url


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("http://ann:hunter2@host/a.png?X-Amz-Signature=abc&size=2",
         "http://***@host/a.png?X-Amz-Signature=***&size=2"),
        ("https://h/x.jpg?access_token=t0k&flag&w=3", "https://h/x.jpg?access_token=***&flag&w=3"),
        ("https://h/x.jpg?sig=1&api_key=2&Password=3&credential=4&auth=5&page=6",
         "https://h/x.jpg?sig=***&api_key=***&Password=***&credential=***&auth=***&page=6"),
        ("s3://user@bucket/key.png", "s3://***@bucket/key.png"),
        ("https://example.com/a.png", "https://example.com/a.png"),
        ("photos/a b.png", "photos/a b.png"),
    ],
)  # fmt: skip
def test_redact_hides_credentials_and_signatures(location: str, shown: str) -> None:
    assert redact(location) == shown


def test_download_returns_the_body(server: str) -> None:
    assert download(server + "/ok.png") == PNG.getvalue()
    assert download(server + "/gzip.png") == PNG.getvalue()  # decoded
    assert download(server + "/to-ok") == PNG.getvalue()  # redirected


@pytest.mark.parametrize("path", ["/drip.jpg", "/drip-headers.png"])
def test_a_server_dripping_bytes_cannot_hold_a_download(server: str, path: str) -> None:
    """A byte every 0.05 s never trips a per-read timeout; the deadline (0.5 s here) covers
    the whole fetch. The server was still dripping when the download gave up."""
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"not complete within 0\.5s"):
        download(server + path)
    assert DRIPPING.is_set()
    assert time.monotonic() - started < 1.5  # the server would have gone on for 5 s


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/missing.png", r"HTTP 404 Not Found"),
        ("/page.png", r"the server sent text/html; charset=utf-8, not an image"),
        ("/data.json", r"the server sent application/json, not an image"),
        ("/brotli.png", r"unsupported Content-Encoding 'br'"),
        ("/gzip-bomb.png", r"body larger than 1000000 bytes"),
    ],
)
def test_download_refuses_what_is_not_an_image(server: str, path: str, error: str) -> None:
    with pytest.raises(ImageLoadError, match=rf"^'{re.escape(server + path)}': {error}"):
        download(server + path)


def test_download_refuses_other_schemes() -> None:
    with pytest.raises(ImageLoadError, match=r"'ftp://h/a\.png': ftp:// inputs are not allowed"):
        download("ftp://h/a.png")
    with pytest.raises(ImageLoadError, match=r"'ftp://h/a\.png': not an http\(s\) URL"):
        download("ftp://h/a.png", InputPolicy().allowing("ftp"))


@pytest.mark.parametrize(("path", "error"), [("/ok.png", None), ("/drip-headers.png", "0.5s")])
def test_https_is_under_the_same_deadline(demo_model, tls_server: str, path, error) -> None:
    if error is None:
        assert demo_model.embed_image(tls_server + path).shape == (64,)
        return
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=rf"not complete within {error}"):
        demo_model.predict(tls_server + path)
    assert time.monotonic() - started < 1.5


def test_a_malformed_url_fails_alone_and_hides_its_secrets(demo_model: MetaCLIP, shape_file):
    bad = ["http://127.0.0.1:99999/x.png", "http://h/a b.png?X-Amz-Signature=SECRET123"]
    results = list(demo_model.iter_predictions([*bad, shape_file()], 0.5))
    assert [r.status for r in results] == ["failed", "failed", "labeled"]
    assert all("SECRET123" not in str(r.error) for r in results[:2])


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/ok.png", None),
        ("/gzip.png", None),
        ("/to-ok", None),
        ("/missing.png", "HTTP 404"),
        ("/slow.png", r"not complete within 0\.5s"),
        ("/page.png", "sent text/html.*not an image"),
        ("/endless.jpg", "larger than 1000000 bytes|not complete within"),
        ("/drip.jpg", r"not complete within 0\.5s"),
        ("/drip-headers.png", r"not complete within 0\.5s"),
        ("/hop/0", r"not complete within 0\.5s"),  # 0.1 s a hop: the deadline covers them all
        ("/gzip-bomb.png", "larger than 1000000 bytes"),
    ],
)
def test_urls(demo_model: MetaCLIP, server: str, path: str, error: str | None) -> None:
    url = server + path
    if error is None:
        assert demo_model.embed_image(url).shape == (64,)
        return
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=error) as raised:
        demo_model.predict(url)
    assert url in str(raised.value) or "/hop/" in str(raised.value)
    assert time.monotonic() - started < 1.5  # one deadline (0.5 s here) for the whole URL


def test_url_redirects_are_limited(demo_model: MetaCLIP, server: str, monkeypatch) -> None:
    monkeypatch.setattr(urls, "URL_TIMEOUT", 5.0)
    with pytest.raises(ImageLoadError, match=r"/hop/6'?: more than 5 redirects"):
        demo_model.predict(server + "/hop/0")


def test_url_credentials_are_sent_but_never_shown(demo_model: MetaCLIP, server: str) -> None:
    host = server.removeprefix("http://")
    assert demo_model.embed_image(f"http://ann:hunter2@{host}/private.png").shape == (64,)
    signed = f"http://ann:wrong@{host}/private.png?X-Amz-Signature=abc123&size=2"
    with pytest.raises(ImageLoadError, match="HTTP 401") as raised:
        demo_model.predict(signed)
    message = str(raised.value)
    assert "wrong" not in message and "abc123" not in message and "ann" not in message
    assert f"***@{host}/private.png?X-Amz-Signature=***&size=2" in message
