"""Untrusted input, round three, against real servers on 127.0.0.1 and real files: what an input
string may reach (the input policy), one deadline and byte cap for every remote read whatever
its scheme, a JPEG whose scans would decode for minutes, and prompts and ontologies of any size.
Each attack finishes within its deadline (0.5 s here) and a second."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import random
import re
import socket
import ssl
import string
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from autodistill_metaclip import ImageLoadError, MetaCLIP, synthetic
from autodistill_metaclip.inputs import images, sources, urls
from autodistill_metaclip.inputs.images import load_image
from autodistill_metaclip.inputs.policy import InputPolicy
from autodistill_metaclip.inputs.sources import MAX_STALLED, is_folder, list_images, read_bytes
from tests.helpers import QuietHandler, manifest, run_cli, serve, trusted_certificate

PNG = io.BytesIO()
synthetic.make_image("red", "circle", size=(64, 64), seed=3).save(PNG, format="PNG")
ALLOWING = InputPolicy().allowing("ftp", "webhdfs", "zip", "memory")
"""The default policy, with the schemes these attacks need enabled."""
HUNG = {
    "ftp": "ftp://127.0.0.1:{port}/photos/a.png",
    "webhdfs": "webhdfs://127.0.0.1:{port}/photos/a.png",
    "zip-over-http": "zip://a.png::http://127.0.0.1:{port}/photos.zip",
}
"""Reads that connect to a server (ours, which never answers), per protocol."""


@pytest.fixture
def deadline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Deadlines of 0.5 s; afterwards, every read given up on has ended (its server closed)."""
    monkeypatch.setattr(urls, "URL_TIMEOUT", 0.5)
    monkeypatch.setattr(sources, "LIST_TIMEOUT", 0.5)
    yield
    _wait_for_given_up_reads()


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte: its port and
    the connections it accepted. Closing it ends those connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        listener.close()
        for connection in accepted:
            connection.close()


def _given_up_reads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "metaclip-remote"]


def _wait_for_given_up_reads(seconds: float = 10) -> None:
    end = time.monotonic() + seconds
    while _given_up_reads() and time.monotonic() < end:
        time.sleep(0.05)
    assert not _given_up_reads(), "a read on a closed server did not end"


def _timed(call: Callable[[], object], error: str) -> float:
    """Seconds until ``call`` raised an error matching ``error``."""
    started = time.monotonic()
    with pytest.raises((ImageLoadError, ValueError), match=error):
        call()
    return time.monotonic() - started


@pytest.fixture(scope="module")
def model() -> MetaCLIP:
    return MetaCLIP(None, "demo", inputs=ALLOWING)


# --- 1. one deadline and byte cap for every remote read -------------------------------------


@pytest.mark.parametrize("template", HUNG.values(), ids=HUNG.keys())
def test_a_server_that_never_answers_cannot_hold_a_read(
    demo_model: MetaCLIP, model: MetaCLIP, template: str, deadline: None
) -> None:
    with silent_server() as (port, accepted):
        location = template.format(port=port)
        scheme = location.split("://", 1)[0]
        refused = _timed(
            lambda: demo_model.predict(location), f"{scheme}:// inputs are not allowed"
        )
        assert refused < 0.5 and not accepted  # the default policy connects to nothing
        waited = _timed(lambda: model.embed_image(location), r"not complete within 0\.5s")
        assert waited < 1.5 and accepted  # it connected, and gave up at the deadline
        assert not is_folder(location, ALLOWING) and _elapsed(lambda: is_folder(location)) < 0.1
        assert _elapsed(lambda: is_folder(location, ALLOWING)) < 1.5
        folder = location.rsplit("/", 1)[0]
        listing = _timed(
            lambda: list_images(folder, None, policy=ALLOWING),
            r"input_folder: cannot list .* \(not complete within 0\.5s\)",
        )
        assert listing < 1.5


@pytest.fixture
def in_memory() -> Iterator[str]:
    """``memory://round3/``, with ``ok.png`` in it; removed afterwards."""
    with fsspec.open("memory://round3/ok.png", "wb") as file:
        file.write(PNG.getvalue())
    yield "memory://round3/"
    fsspec.filesystem("memory").rm("/round3", recursive=True)


def test_hung_servers_hold_at_most_max_stalled_threads(deadline: None, in_memory: str) -> None:
    """Every read given up on keeps its thread until its socket ends: at most MAX_STALLED (32)
    of them; then remote reads fail at their deadline until the hung ones end."""
    with silent_server() as (port, _):
        hung = [f"ftp://127.0.0.1:{port}/{i}.png" for i in range(MAX_STALLED)]
        with ThreadPoolExecutor(MAX_STALLED) as pool:
            waits = list(
                pool.map(lambda u: _timed(lambda: read_bytes(u, policy=ALLOWING), "0.5s"), hung)
            )
        assert max(waits) < 1.5 and len(_given_up_reads()) == MAX_STALLED
        full = _timed(
            lambda: read_bytes("memory://round3/ok.png", policy=ALLOWING),
            r"not complete within 0\.5s \(32 earlier remote reads are still waiting on servers\)",
        )
        assert full < 1.5
    _wait_for_given_up_reads()  # the server closed: its threads ended
    assert read_bytes("memory://round3/ok.png", policy=ALLOWING) == PNG.getvalue()


def test_every_remote_read_is_capped(
    model: MetaCLIP, monkeypatch: pytest.MonkeyPatch, in_memory: str
) -> None:
    monkeypatch.setattr(urls, "MAX_URL_BYTES", 100_000)
    with fsspec.open("memory://round3/huge.png", "wb") as file:
        file.write(PNG.getvalue() + bytes(10_000_000))
    with pytest.raises(ImageLoadError, match=r"'memory://round3/huge.png': larger than 100000"):
        model.embed_image("memory://round3/huge.png")


# --- 2. what an input string may reach ------------------------------------------------------

REQUESTS: list[str] = []


class Redirecting(QuietHandler):
    def do_GET(self) -> None:
        REQUESTS.append(self.path)
        port = self.server.server_address[1]
        targets = {
            "/to-metadata": "http://169.254.169.254/latest/meta-data/iam/",
            "/to-other-loopback": f"http://127.0.0.2:{port}/ok.png",
            "/to-file": "file:///etc/passwd",
            "/to-ok": "/ok.png",
        }
        if self.path == "/ok.png":
            self.send(200, "image/png", PNG.getvalue())
        elif self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send(404, "text/plain", b"no")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(urls, "URL_TIMEOUT", 2.0)
    REQUESTS.clear()
    with serve(Redirecting) as url:
        yield url


SERVICE = InputPolicy.public_urls()
OWN_STORE = InputPolicy(
    frozenset({"http", "https"}), public_only=True, trusted_networks=("127.0.0.1/32",)
)
"""A service's policy that may also reach its own image server (127.0.0.1 here)."""


def test_a_service_policy_connects_to_no_private_address(server: str) -> None:
    service = MetaCLIP(None, "demo", inputs=SERVICE)
    port = server.rsplit(":", 1)[1]
    for url, kind in [
        (f"{server}/ok.png", r"127\.0\.0\.1 is not a public address \(loopback\)"),
        (f"http://localhost:{port}/ok.png", r"is not a public address \(loopback\)"),
        (f"http://2130706433:{port}/ok.png", r"127\.0\.0\.1 is not a public address"),  # a number
        (f"http://[::ffff:127.0.0.1]:{port}/ok.png", r"::ffff:127\.0\.0\.1 is not a public"),
        ("http://169.254.169.254/latest/meta-data/", r"169\.254\.169\.254 is a cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata"),
        ("http://10.0.0.1/a.png", r"10\.0\.0\.1 is not a public address \(private\)"),
        ("http://0.0.0.0/a.png", r"0\.0\.0\.0 is not a public address \(unspecified\)"),
        ("http://[ff02::1]/a.png", r"ff02::1 is not a public address \(multicast\)"),
    ]:
        assert _timed(lambda u=url: service.embed_image(u), rf"{kind}.*; refused under") < 0.5
    for location in (str(Path(__file__)), "memory://round3/ok.png", "s3://bucket/a.png"):
        with pytest.raises(ImageLoadError, match="are not allowed by the input policy"):
            service.embed_image(location)
    assert REQUESTS == []  # nothing reached the server


def test_every_redirect_is_checked(server: str) -> None:
    own_store = MetaCLIP(None, "demo", inputs=OWN_STORE)
    assert own_store.embed_image(f"{server}/to-ok").shape == (64,)
    for path, error in [
        ("/to-metadata", r"'http://169\.254\.169\.254/latest/meta-data/iam/': 169\.254\.169\.254 "
         r"is a cloud metadata address"),
        ("/to-other-loopback", r"'http://127\.0\.0\.2:\d+/ok\.png': 127\.0\.0\.2 is not a public"),
        ("/to-file", r"'file:///etc/passwd': local files are not allowed"),
    ]:  # fmt: skip
        assert _timed(lambda p=path: own_store.embed_image(server + p), error) < 0.5
    assert REQUESTS == ["/to-ok", "/ok.png", "/to-metadata", "/to-other-loopback", "/to-file"]


def test_the_address_checked_is_the_address_connected_to(server: str) -> None:
    """localhost resolves to ::1 and 127.0.0.1: only the trusted 127.0.0.1 is connected to."""
    own_store = MetaCLIP(None, "demo", inputs=OWN_STORE)
    port = server.rsplit(":", 1)[1]
    assert own_store.embed_image(f"http://localhost:{port}/ok.png").shape == (64,)
    assert REQUESTS == ["/ok.png"]


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The redirecting server behind TLS, with a certificate for 127.0.0.1 that this trusts."""
    key, cert = trusted_certificate(tmp_path, monkeypatch)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    REQUESTS.clear()
    with serve(Redirecting, tls=context) as url:
        yield url


def test_https_keeps_verifying_the_host_name(tls_server: str) -> None:
    own_store = MetaCLIP(None, "demo", inputs=OWN_STORE)
    assert own_store.embed_image(f"{tls_server}/ok.png").shape == (64,)
    port = tls_server.rsplit(":", 1)[1]
    with pytest.raises(ImageLoadError, match=r"SSLCertVerificationError.*localhost"):
        own_store.embed_image(f"https://localhost:{port}/ok.png")  # connected to 127.0.0.1


def test_the_cli_flags(server: str, tmp_path: Path, in_memory: str) -> None:
    classes = ["-c", "red circle", "-c", "blue square"]
    code, out, _ = run_cli(
        "predict", "-m", "demo", f"{server}/ok.png", *classes, "--public-urls-only"
    )
    assert code == 3 and "127.0.0.1 is not a public address (loopback); refused under" in out
    code, out, _ = run_cli("predict", "-m", "demo", in_memory, *classes)
    assert code == 3 and "memory:// inputs are not allowed" in out
    code, out, _ = run_cli(
        "predict", "-m", "demo", in_memory, *classes, "--allow-scheme", "memory", "--json"
    )
    assert code == 0 and [r["image"] for r in json.loads(out)] == [f"{in_memory}ok.png"]
    code, _, err = run_cli(
        "label", str(tmp_path), str(tmp_path / "out"), "-m", "demo", *classes,
        "--public-urls-only",
    )  # fmt: skip
    assert code != 0 and "local files are not allowed by the input policy" in err
    assert REQUESTS == []


# --- 3. bounded CPU for untrusted content ---------------------------------------------------


def _scans_of(data: bytes) -> tuple[bytes, list[bytes]]:
    """A JPEG cut into its header (up to the first scan) and its scans (each SOS segment, its
    entropy-coded data and any tables before the next scan), written out by hand."""
    position, starts = 2, []
    while data[position + 1] != 0xD9:
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        following = position + 2 + length
        if data[position + 1] == 0xDA:
            starts.append(position)
            following = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, following).start()
        position = following
    bounds = [*starts, position]
    return data[: starts[0]], [data[a:b] for a, b in itertools.pairwise(bounds)]


def _repeated_scans(total: int, size: tuple[int, int] = (1000, 1000)) -> bytes:
    """A progressive JPEG whose last scan repeats until it has ``total`` scans: each repeat is
    12 bytes, and one more pass over every block of the image."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(buffer, "JPEG", progressive=True)
    header, scans = _scans_of(buffer.getvalue())
    return header + b"".join(scans) + scans[-1] * (total - len(scans)) + b"\xff\xd9"


def test_a_jpeg_of_twenty_thousand_scans_is_refused_before_decoding(model: MetaCLIP) -> None:
    """246 kB; it decodes for ~14 s (the issue's 2 MB one for 146 s)."""
    bomb = _repeated_scans(20_000)
    error = r"refused: a JPEG of more than 200 scans, the most decoded for 1000x1000 pixels"
    assert _timed(lambda: model.embed_image(bomb), error) < 0.5


def test_label_fails_the_scan_bomb_alone(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 4, suffix=".jpg")
    (tmp_path / "in" / "scans.jpg").write_bytes(_repeated_scans(20_000))
    took = _elapsed(
        lambda: demo_model.label(tmp_path / "in", ".jpg", tmp_path / "out", progress=False)
    )
    rows = manifest(tmp_path / "out")
    assert (
        rows["scans.jpg"]["status"] == "failed"
        and "more than 200 scans" in rows["scans.jpg"]["error"]
    )
    assert sum(r["status"] != "failed" for r in rows.values()) == 4 and took < 10


def test_scans_are_limited_by_count_and_by_work(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_image(_repeated_scans(200)).size == (1000, 1000)  # at the limit
    with pytest.raises(ImageLoadError, match="more than 200 scans"):
        load_image(_repeated_scans(201))
    monkeypatch.setattr(images, "MAX_JPEG_SCAN_PIXELS", 20_000_000)  # 20 scans of 1000x1000
    assert load_image(_repeated_scans(32)).size == (1000, 1000)  # 32 always decode
    with pytest.raises(ImageLoadError, match="more than 32 scans"):
        load_image(_repeated_scans(33))


@pytest.mark.parametrize(
    "filler",
    [b"\xff" * 20_000_000, b"\xff\xfe\x00\x02" * 5_000_000],
    ids=["fill-bytes", "empty-comments"],
)
def test_markers_are_counted_in_bounded_time(filler: bytes) -> None:
    """20 MB of markers after the first scan, that counting scans steps through one by one."""
    header, scans = _scans_of(_jpeg("RGB", progressive=True))
    data = header + scans[0] + filler + b"".join(scans[1:]) + b"\xff\xd9"
    assert _timed(lambda: load_image(data), "refused: more than 65536 JPEG markers") < 0.5


def _jpeg(mode: str, **options: object) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


EXIF = Image.Exif()
EXIF[0x010F] = "camera"
NORMAL_JPEGS = {
    "baseline": _jpeg("RGB"),
    "progressive": _jpeg("RGB", progressive=True),
    "progressive-optimized": _jpeg("RGB", progressive=True, optimize=True, quality=95),
    "grey-progressive": _jpeg("L", progressive=True),
    "cmyk-progressive": _jpeg("CMYK", progressive=True),  # 18 scans
    "444-restart-markers": _jpeg("RGB", subsampling=0, restart_marker_blocks=1),
    "exif-icc-comment": _jpeg("RGB", exif=EXIF, icc_profile=b"\x00" * 300, comment=b"hi"),
}


@pytest.mark.parametrize("data", NORMAL_JPEGS.values(), ids=NORMAL_JPEGS.keys())
def test_normal_jpegs_decode_exactly_as_pillow_does(data: bytes) -> None:
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(load_image(data)), expected)
    assert images.jpeg_scans(data, 1000) <= 18


def test_prompts_and_ontology_files_of_any_size(demo_model: MetaCLIP, tmp_path: Path) -> None:
    letters = "".join(random.Random(0).choices(string.ascii_lowercase, k=1_000_000))
    assert _elapsed(lambda: demo_model.embed_text(letters)) < 1.0  # 1 MB of one word
    ontology = tmp_path / "ontology.json"
    ontology.write_text(json.dumps({letters[:10_001]: "one", "a photo": "other"}))
    code, _, err = run_cli("predict", "-m", "demo", "x.png", "--ontology", ontology)
    assert code == 2
    assert re.search(r"--ontology '.*\.json': caption '[a-z]{40}\.\.\.' has 10001 characters", err)
    ontology.write_text(json.dumps({f"a photo of thing {i}": f"{i}" for i in range(10_001)}))
    code, _, err = run_cli("predict", "-m", "demo", "x.png", "--ontology", ontology)
    assert code == 2 and "10001 captions; at most 10000 are allowed" in err


def _elapsed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started
