"""Untrusted input, round two: each case is a real attack on real files, processes and mounts.

A second process (as an unprivileged user where the tests run as root) swapping links during a
run; links planted in an output folder; a tmpfs filled up during a save; FIFOs and /dev/zero
given as files; names that are not UTF-8; spreadsheet formulas; huge 16-bit images.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autodistill_metaclip import EmbeddingIndex, ImageLoadError, MetaCLIP, synthetic
from autodistill_metaclip.cli import main
from autodistill_metaclip.inputs.sources import unescape_key
from autodistill_metaclip.labeling.manifest import read_manifest

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
NOBODY = 65534


def _manifest_rows(output: Path) -> dict[str, dict[str, str]]:
    return read_manifest(output / "manifest.csv")


def _copies(output: Path) -> list[Path]:
    return [p for split in ("train", "valid", "test") for p in (output / split).rglob("*.png")]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another (unprivileged) user can reach and write, unlike pytest's tmp_path."""
    folder = Path(tempfile.mkdtemp(prefix="metaclip-attack-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- input links -------------------------------------------------------------------------


def test_links_are_followed_only_inside_the_input_folder(demo_model: MetaCLIP, tmp_path) -> None:
    source, outside = tmp_path / "in", tmp_path / "outside"
    synthetic.write_folder(source, 4, suffix=".png")
    synthetic.write_folder(outside, 1, suffix=".png", seed=9)
    (source / "sub").mkdir()
    synthetic.make_image("red", "circle", seed=3).save(source / "sub" / "real.png")
    (source / "inside.png").symlink_to(source / "sub" / "real.png")
    (source / "outside.png").symlink_to(next(outside.glob("*.png")))

    demo_model.label(source, ".png", tmp_path / "out", progress=False)
    rows = _manifest_rows(tmp_path / "out")
    assert rows["inside.png"]["status"] == "labeled"
    assert rows["outside.png"]["status"] == "failed"
    assert "outside the input folder" in rows["outside.png"]["error"]
    assert "follow_links=True" in rows["outside.png"]["error"]

    demo_model.label(source, ".png", tmp_path / "all", follow_links=True, progress=False)
    assert _manifest_rows(tmp_path / "all")["outside.png"]["status"] == "labeled"
    with pytest.raises(ValueError, match="follow_links False -> True"):  # another run
        demo_model.label(source, ".png", tmp_path / "out", resume=True, follow_links=True)


def _swap_links_as_another_user(folder: Path, targets: list[Path]) -> int:
    """Fork a process that (as ``nobody`` when we are root) swaps every ``swap-*`` link in
    ``folder`` between ``targets`` until ``folder/stop`` appears; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: no exec, just system calls
        if ROOT:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        deadline, n = time.monotonic() + 120, 0
        while time.monotonic() < deadline and not (folder / "stop").exists():
            for link in folder.glob("swap-*.png"):
                os.symlink(targets[n % len(targets)], f"{link}.new")
                os.replace(f"{link}.new", link)
                n += 1
        os._exit(0)
    except BaseException:
        os._exit(1)


def test_a_link_swapped_during_a_run_never_brings_in_another_file(
    demo_model: MetaCLIP, shared_folder: Path
) -> None:
    """Another user who can write the input folder swaps links between an image inside it and
    a root-only image outside it, as fast as it can, while label() runs: the root-only image
    is never read into the dataset, and every copy is the bytes its label was predicted from."""
    source, secret_dir = shared_folder / "in", shared_folder / "secret"
    synthetic.write_folder(source, 40, suffix=".png", seed=2)
    source.chmod(0o777)
    secret_dir.mkdir(mode=0o700)
    secret = secret_dir / "secret.png"
    synthetic.make_image("green", "triangle", seed=77, size=96).save(secret)
    secret.chmod(0o600)
    good = source / "good.png"
    synthetic.make_image("blue", "square", seed=5, size=80).save(good)
    for n in range(30):
        (source / f"swap-{n:02d}.png").symlink_to(good)
    swapper = _swap_links_as_another_user(source, [good, secret])
    try:
        time.sleep(0.5)  # swapping at full speed before the run starts
        output = shared_folder / "out"
        demo_model.batch_size = 4
        demo_model.label(source, ".png", output, progress=False)
    finally:
        demo_model.batch_size = 32
        (source / "stop").touch()
        _, status = os.waitpid(swapper, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rows = _manifest_rows(output)
    secret_bytes, good_bytes = secret.read_bytes(), good.read_bytes()
    assert all(copy.read_bytes() != secret_bytes for copy in _copies(output))
    swapped = {k: r for k, r in rows.items() if k.startswith("swap-")}
    assert len(swapped) == 30
    refused = [r for r in swapped.values() if r["status"] == "failed"]
    assert refused, "the swapper never won a race: the test did not test anything"
    for row in refused:
        assert "outside the input folder" in row["error"] or "replaced while" in row["error"]
    good_class = demo_model.ontology.classes()[demo_model.predict(good, 0.0).class_id[0]]
    for copy in _copies(output):
        if copy.name.startswith("swap-"):
            assert copy.read_bytes() == good_bytes
            assert rows[copy.name]["class"] == good_class


def test_the_copy_is_the_bytes_that_were_classified(demo_model: MetaCLIP, tmp_path) -> None:
    """An input rewritten after it was classified (before the copies are made) does not change
    the dataset: the copy is what was predicted, never a second read of the path."""
    source = tmp_path / "in"
    synthetic.write_folder(source, 12, suffix=".png", seed=4)
    first = sorted(source.glob("*.png"))[0]
    before = first.read_bytes()
    stream = demo_model.iter_predictions

    def rewrite_after_classifying(inputs, confidence=0.5, **kwargs):
        for prediction in stream(inputs, confidence, **kwargs):
            yield prediction
            if Path(prediction.source.location) == first:
                synthetic.make_image("green", "triangle", seed=99, size=90).save(first)

    demo_model.iter_predictions = rewrite_after_classifying  # type: ignore[method-assign]
    try:
        demo_model.label(source, ".png", tmp_path / "out", confidence=0.0, progress=False)
    finally:
        del demo_model.iter_predictions
    (copy,) = [p for p in _copies(tmp_path / "out") if p.name == first.name]
    assert copy.read_bytes() == before != first.read_bytes()
    assert not any((tmp_path / "out" / ".autodistill-metaclip" / "staged").iterdir())


# --- output links ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    ["train/{cls}", "manifest.csv", "classes.txt", ".autodistill-metaclip", "valid"],
)
def test_links_planted_in_the_output_are_refused(demo_model, tmp_path, planted) -> None:
    source, output, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    synthetic.write_folder(source, 8, suffix=".png")
    demo_model.label(source, ".png", output, progress=False)
    cls = next(p.name for p in (output / "train").iterdir() if any(p.iterdir()))
    target = output / planted.format(cls=cls)
    shutil.move(target, elsewhere)
    target.symlink_to(elsewhere)
    if elsewhere.is_dir():  # a killed run's leftover, out of reach of the cleanup
        (elsewhere / ".partial-0123456789abcdef-x.png").write_bytes(b"keep me")
    before = {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
    if elsewhere.is_file():
        before = {elsewhere: elsewhere.read_bytes()}
    (source / "new.png").write_bytes((source / sorted(os.listdir(source))[0]).read_bytes())
    for options in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(FileExistsError, match=r"is a symbolic link.*never"):
            demo_model.label(source, ".png", output, progress=False, **options)
    after = {p: p.read_bytes() for p in before}
    assert after == before
    assert sorted(before) == sorted(p for p in before if p.exists())


# --- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    if not ROOT or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="metaclip-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)
    mount.rmdir()


def test_a_save_that_fills_the_disk_keeps_the_previous_index(demo_model, tmp_path, small_tmpfs):
    synthetic.write_folder(tmp_path / "photos", 20, suffix=".png")
    index = EmbeddingIndex.build(demo_model, tmp_path / "photos", progress=False)
    path = index.save(small_tmpfs / "photos.npz")
    kept = path.read_bytes()
    (small_tmpfs / "ballast").write_bytes(bytes(2 * 1024 * 1024 - len(kept) - 8192))
    big = EmbeddingIndex(
        index.root, index.keys * 200, np.repeat(index.embeddings, 200, 0), index.stamps * 200,
        index.model_info,
    )  # fmt: skip
    with pytest.raises(OSError, match="No space left"):
        big.save(path)
    assert path.read_bytes() == kept
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["ballast", "photos.npz"]
    assert len(EmbeddingIndex.load(path)) == 20


def test_labelling_onto_a_full_disk_fails_cleanly_and_resumes(demo_model, tmp_path, small_tmpfs):
    source = tmp_path / "in"
    synthetic.write_folder(source, 30, suffix=".png", size=160, seed=6)
    total = sum(p.stat().st_size for p in source.glob("*.png"))
    (small_tmpfs / "ballast").write_bytes(bytes(2 * 1024 * 1024 - total // 2))
    output = small_tmpfs / "out"
    with pytest.raises(OSError, match="No space left"):
        demo_model.label(source, ".png", output, progress=False)
    assert not list(output.rglob(".partial-*"))
    (small_tmpfs / "ballast").unlink()
    dataset = demo_model.label(source, ".png", output, resume=True, progress=False)
    rows = _manifest_rows(output)
    assert len(rows) == 30 and len(dataset) == sum(r["status"] == "labeled" for r in rows.values())
    originals = {p.name: p.read_bytes() for p in source.glob("*.png")}
    assert all(copy.read_bytes() == originals[copy.name] for copy in _copies(output))


# --- files that are not files --------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_special_files_are_refused_at_once(demo_model, tmp_path, fifo, special) -> None:
    path = Path("/dev/zero") if special == "/dev/zero" else fifo
    link = tmp_path / "ontology.json"
    link.symlink_to(path)
    image = tmp_path / "x.png"
    synthetic.make_image("red", "circle").save(image)
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["predict", "-m", "demo", "--ontology", str(link), str(image)]
    )
    assert result.exit_code == 2 and "--ontology" in result.output
    assert "is not a regular file" in result.output
    config = tmp_path / "config.json"
    config.symlink_to(path)
    with pytest.raises(Exception, match=r"config.json.*not a regular file"):
        MetaCLIP(None, checkpoint=config, weights=tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"index: .*not a regular file"):
        EmbeddingIndex.load(link)
    with pytest.raises(ValueError, match=r"manifest: .*not a regular file"):
        read_manifest(link)
    synthetic.write_folder(tmp_path / "in", 2, suffix=".png")
    (tmp_path / "in" / "special.png").symlink_to(path)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", follow_links=True, progress=False)
    assert "not a regular file" in _manifest_rows(tmp_path / "out")["special.png"]["error"]
    assert time.monotonic() - started < 30  # nothing waited on the FIFO or read /dev/zero


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable embedding index"),
        (lambda p: p.write_bytes(b""), "not a readable embedding index"),
        (lambda p: _rewrite(p, meta=np.array(json.dumps([1, 2]))), "not a JSON object"),
        (lambda p: _rewrite(p, meta=np.array('{"format": 2, "root": 3}')), "lacks a root"),
        (lambda p: _rewrite(p, paths=np.array(["a.png"])), "1 paths, 6 embeddings"),
        (lambda p: _rewrite(p, embeddings=np.full((6, 64), np.nan, np.float32)), "not finite"),
        (lambda p: _rewrite(p, embeddings=np.array(["x"] * 6)), "type <U1"),
        (lambda p: _rewrite(p, meta=np.array('{"format": 7}')), "format 7"),
        (lambda p: _rewrite(p, ann=np.zeros(64, np.uint8)), "IVF index cannot be read"),
    ],
)
def test_every_malformed_index_is_a_value_error(demo_model, tmp_path, damage, match) -> None:
    synthetic.write_folder(tmp_path / "photos", 6, suffix=".png")
    path = EmbeddingIndex.build(demo_model, tmp_path / "photos", progress=False).save(
        tmp_path / "i.npz"
    )
    damage(path)
    with pytest.raises(ValueError, match=match):
        EmbeddingIndex.load(path)


def _rewrite(path: Path, **replaced: np.ndarray) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(path, **{**arrays, **replaced})


# --- names and cells -----------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_labelled_and_kept_losslessly(demo_model, tmp_path) -> None:
    source = tmp_path / "in"
    synthetic.write_folder(source, 3, suffix=".png")
    raw = os.fsencode(source) + b"/caf\xe9 \\x41.png"  # Latin-1 é, and a literal backslash
    with open(raw, "wb") as f:
        f.write((source / sorted(os.listdir(source))[0]).read_bytes())
    output = tmp_path / "out"
    demo_model.label(source, ".png", output, confidence=0.0, progress=False)
    manifest = (output / "manifest.csv").read_bytes().decode("utf-8")  # valid UTF-8
    key = "caf\\xe9 \\\\x41.png"
    assert key in manifest
    assert os.fsencode(source / unescape_key(key)) == raw
    assert _manifest_rows(output)[key]["status"] == "labeled"
    (copy,) = [p for p in _copies(output) if "caf" in p.name]
    assert copy.read_bytes() == Path(os.fsdecode(raw)).read_bytes()
    demo_model.label(source, ".png", output, confidence=0.0, resume=True, progress=False)
    assert len(_manifest_rows(output)) == 4


def test_spreadsheet_formulas_are_neutralised_reversibly(demo_model, tmp_path) -> None:
    from autodistill.detection import CaptionOntology

    source = tmp_path / "in"
    source.mkdir()
    for name in ("=HYPERLINK(evil).png", "+1.png", "-2.png", "@SUM.png", "'quoted.png"):
        synthetic.make_image("red", "circle", seed=len(name)).save(source / name)
    model = MetaCLIP(
        CaptionOntology({"a photo of a red circle": "=cmd|' /C calc'!A0", "a photo": "other"}),
        checkpoint="demo",
    )
    model.label(source, ".png", tmp_path / "out", confidence=0.0, progress=False)
    with open(tmp_path / "out" / "manifest.csv", encoding="utf-8", newline="") as f:
        raw = list(csv.DictReader(f))
    cells = [row[c] for row in raw for c in ("image", "class") if row[c]]
    assert all(not c.startswith(("=", "+", "-", "@")) for c in cells)
    assert "'=HYPERLINK(evil).png" in cells and "''quoted.png" in cells
    rows = _manifest_rows(tmp_path / "out")
    assert sorted(rows) == sorted(p.name for p in source.iterdir())
    assert {r["class"] for r in rows.values()} <= {"=cmd|' /C calc'!A0", "other"}


# --- decode memory -------------------------------------------------------------------------

MEASURE = """
import resource, sys
from autodistill_metaclip import MetaCLIP
model = MetaCLIP(None, checkpoint="demo", batch_size=8, decode_memory=int(sys.argv[1]))
model.embed_image(sys.argv[2])  # warm: the model, threads and allocator are set up
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
base = rss_mb()
failed = [e.error for e in model.iter_embeddings(sys.argv[3:]) if e.error]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(peak - base, failed)
"""


@pytest.mark.slow
def test_decode_memory_is_bounded_whatever_the_images(tmp_path: Path) -> None:
    """Eight 6000x6000 images, 16-bit greyscale and RGBA, each estimated at more than the
    256 MiB budget: decoded one at a time, the rise in peak RSS stays within the largest
    image's estimate plus 128 MiB (the model's batch); with no budget to speak of (64 GiB)
    the loading threads decode several at once and it does not."""
    paths = []
    for n in range(8):
        path = tmp_path / f"big-{n}.png"
        if n % 2:
            Image.new("I;16", (6000, 6000), 20000 + n).save(path)
        else:
            Image.new("RGBA", (6000, 6000), (200, 10 * n, 0, 128)).save(path)
        paths.append(str(path))
    small = tmp_path / "small.png"
    synthetic.make_image("red", "circle").save(small)

    def rise(budget: int) -> float:
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, str(budget), str(small), *paths],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        mb, failed = out.stdout.split(" ", 1)
        assert failed.strip() == "[]"
        return float(mb)

    bounded, unbounded = rise(256), rise(64 * 1024)
    one_image = 6000 * 6000 * (4 + 8) / 2**20  # the largest estimate: RGBA, 412 MiB
    print(f"peak RSS rise: {bounded:.0f} MiB with 256 MiB, {unbounded:.0f} MiB with 64 GiB")
    assert bounded < one_image + 128 < unbounded


# --- smaller ones --------------------------------------------------------------------------


def test_split_values_must_be_finite(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 2, suffix=".png")
    nan = float("nan")
    with pytest.raises(ValueError, match="split"):
        demo_model.label(tmp_path / "in", ".png", tmp_path / "out", split=(nan, nan, nan))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_copies_get_the_usual_permissions(demo_model, tmp_path, umask, mode) -> None:
    synthetic.write_folder(tmp_path / "in", 4, suffix=".png")
    previous = os.umask(umask)
    try:
        demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0, progress=False)
    finally:
        os.umask(previous)
    files = [*_copies(tmp_path / "out"), tmp_path / "out" / "manifest.csv"]
    assert len(files) == 5 and {p.stat().st_mode & 0o777 for p in files} == {mode}


def test_a_result_names_the_classes_its_ids_refer_to(demo_model, demo_ontology) -> None:
    """One thread changes the ontology's order back and forth while others predict: each
    result's ids, read through its own ``classes``, give the same names as without the race."""
    import threading

    from autodistill.detection import CaptionOntology

    images = [s.image for s in synthetic.samples(32, seed=12)]
    expected = [p.best[0] for p in demo_model.iter_predictions(images, 0.0)]
    model = MetaCLIP(demo_ontology, checkpoint="demo", batch_size=4)
    classes = dict(zip(demo_ontology.prompts(), demo_ontology.classes(), strict=True))
    reordered = CaptionOntology(dict(reversed(classes.items())))
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            model.set_ontology(reordered)
            model.set_ontology(demo_ontology)

    flipper = threading.Thread(target=flip)
    flipper.start()
    got = []
    try:  # each call races the flips; its result keeps the classes it was scored against
        for image in images:
            (prediction,) = model.iter_predictions([image], 0.0)
            got.append(prediction)
    finally:
        stop.set()
        flipper.join()
    assert [p.best[0] for p in got] == expected
    orders = {tuple(p.classes) for p in got}
    assert orders <= {tuple(demo_ontology.classes()), tuple(reordered.classes())}


def test_nan_never_reaches_json_output(tmp_path: Path) -> None:
    """Weights whose projection is NaN (a corrupt or hostile file) give NaN scores: the JSON
    printed is still strict JSON, with null where a number cannot be written."""
    from safetensors.torch import load_file, save_file

    from autodistill_metaclip.engine.checkpoints import resolve

    state = load_file(str(resolve("demo").weights_file))
    state["visual.proj"] = state["visual.proj"] * float("nan")
    weights = tmp_path / "nan.safetensors"
    save_file(state, str(weights))
    image = tmp_path / "x.png"
    synthetic.make_image("red", "circle").save(image)
    arguments = ["predict", "-m", "demo", "--weights", str(weights), "-c", "a", "-c", "b"]
    result = CliRunner().invoke(main, [*arguments, "--json", str(image)])

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    data = json.loads(result.output, parse_constant=refuse)
    assert "null" in result.output and data


def test_ghostscript_is_never_started_by_label_or_a_url(demo_model, tmp_path, fake_ghostscript):
    """Pillow picks the decoder from the content: EPS bytes named .jpg, in a folder or served
    over HTTP, never reach Ghostscript (a fake ``gs`` on PATH would leave a canary)."""
    import http.server
    import threading

    canary, eps = fake_ghostscript
    synthetic.write_folder(tmp_path / "in", 2)
    (tmp_path / "in" / "holiday.jpg").write_bytes(eps.getvalue())
    demo_model.label(tmp_path / "in", None, tmp_path / "out", progress=False)
    assert "not an image file" in _manifest_rows(tmp_path / "out")["holiday.jpg"]["error"]

    class Serve(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(eps.getvalue())))
            self.end_headers()
            self.wfile.write(eps.getvalue())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/holiday.jpg"
        with pytest.raises(ImageLoadError, match="not an image file"):
            demo_model.predict(url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not canary.exists()
