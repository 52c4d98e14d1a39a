"""Untrusted input, round two: each case is a real attack on real files, processes and mounts.

A second process (as an unprivileged user where the tests run as root) swapping links during a
run; links planted in an output folder; a tmpfs filled up during a save; FIFOs and /dev/zero
given as files; names that are not UTF-8; spreadsheet formulas; huge 16-bit images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autodistill_metaclip import EmbeddingIndex, ImageLoadError, MetaCLIP, synthetic
from autodistill_metaclip.inputs.sources import unescape_key
from autodistill_metaclip.labeling import label_folder
from autodistill_metaclip.labeling.manifest import read_manifest
from tests.helpers import QuietHandler, copies, manifest, run_cli, serve

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
NOBODY = 65534


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
    rows = manifest(tmp_path / "out")
    assert rows["inside.png"]["status"] == "labeled"
    assert rows["outside.png"]["status"] == "failed"
    assert "outside the input folder" in rows["outside.png"]["error"]
    assert "follow_links=True" in rows["outside.png"]["error"]

    demo_model.label(source, ".png", tmp_path / "all", follow_links=True, progress=False)
    assert manifest(tmp_path / "all")["outside.png"]["status"] == "labeled"
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
            if n >= 2 * len(targets) * 30 and not (folder / "swapping").exists():
                (folder / "swapping").touch()  # every link swapped both ways at least once
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
        while not (source / "swapping").exists():  # swapping at full speed before the run
            assert os.waitpid(swapper, os.WNOHANG) == (0, 0), "the swapper stopped"
            time.sleep(0.01)
        output = shared_folder / "out"
        demo_model.batch_size = 4
        demo_model.label(source, ".png", output, progress=False)
    finally:
        demo_model.batch_size = 32
        (source / "stop").touch()
        _, status = os.waitpid(swapper, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rows = manifest(output)
    secret_bytes, good_bytes = secret.read_bytes(), good.read_bytes()
    assert all(copy.read_bytes() != secret_bytes for copy in copies(output, "*.png"))
    swapped = {k: r for k, r in rows.items() if k.startswith("swap-")}
    assert len(swapped) == 30
    refused = [r for r in swapped.values() if r["status"] == "failed"]
    assert refused, "the swapper never won a race: the test did not test anything"
    for row in refused:
        assert "outside the input folder" in row["error"] or "replaced while" in row["error"]
    good_class = demo_model.ontology.classes()[demo_model.predict(good, 0.0).class_id[0]]
    for copy in copies(output, "*.png"):
        if copy.name.startswith("swap-"):
            assert copy.read_bytes() == good_bytes
            assert rows[copy.name]["class"] == good_class


class RewritesAfterClassifying:
    """A model for label() (the ``Classifier`` protocol): the demo model, except that it
    rewrites one input file right after classifying it, before any copy is made."""

    def __init__(self, model: MetaCLIP, path: Path) -> None:
        self.model, self.path = model, path

    def __getattr__(self, name: str) -> Any:  # the rest of the protocol: the demo model's own
        return getattr(self.model, name)

    def iter_predictions(self, inputs, confidence=0.5, *, keep_data=False):
        for prediction in self.model.iter_predictions(inputs, confidence, keep_data=keep_data):
            yield prediction
            if Path(prediction.source.location) == self.path:
                synthetic.make_image("green", "triangle", seed=99, size=90).save(self.path)


def test_the_copy_is_the_bytes_that_were_classified(demo_model: MetaCLIP, tmp_path) -> None:
    """An input rewritten after it was classified (before the copies are made) does not change
    the dataset: the copy is what was predicted, never a second read of the path."""
    source = tmp_path / "in"
    synthetic.write_folder(source, 12, suffix=".png", seed=4)
    first = sorted(source.glob("*.png"))[0]
    before = first.read_bytes()
    model = RewritesAfterClassifying(demo_model, first)
    label_folder(model, source, ".png", tmp_path / "out", confidence=0.0, progress=False)
    assert first.read_bytes() != before  # it was rewritten during the run
    (copy,) = [p for p in copies(tmp_path / "out", "*.png") if p.name == first.name]
    assert copy.read_bytes() == before
    assert (
        manifest(tmp_path / "out")[first.name]["class"]
        == demo_model.classes[int(demo_model.predict(copy, 0.0).class_id[0])]
    )
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
    rows = manifest(output)
    assert len(rows) == 30 and len(dataset) == sum(r["status"] == "labeled" for r in rows.values())
    originals = {p.name: p.read_bytes() for p in source.glob("*.png")}
    assert all(copy.read_bytes() == originals[copy.name] for copy in copies(output, "*.png"))


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
    code, _, err = run_cli("predict", "-m", "demo", "--ontology", link, image)
    assert code == 2 and "--ontology" in err
    assert "is not a regular file" in err
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
    assert "not a regular file" in manifest(tmp_path / "out")["special.png"]["error"]
    assert time.monotonic() - started < 30  # nothing waited on the FIFO or read /dev/zero


# --- names and cells -----------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_labelled_and_kept_losslessly(demo_model, tmp_path) -> None:
    source = tmp_path / "in"
    synthetic.write_folder(source, 3, suffix=".png")
    raw = os.fsencode(source) + b"/caf\xe9 \\x41.png"  # Latin-1 é, and a literal backslash
    with open(raw, "wb") as f:
        f.write((source / sorted(os.listdir(source))[0]).read_bytes())
    output = tmp_path / "out"
    demo_model.label(source, ".png", output, confidence=0.0, progress=False)
    text = (output / "manifest.csv").read_bytes().decode("utf-8")  # valid UTF-8
    key = "caf\\xe9 \\\\x41.png"
    assert key in text
    assert os.fsencode(source / unescape_key(key)) == raw
    assert manifest(output)[key]["status"] == "labeled"
    (copy,) = [p for p in copies(output, "*.png") if "caf" in p.name]
    assert copy.read_bytes() == Path(os.fsdecode(raw)).read_bytes()
    demo_model.label(source, ".png", output, confidence=0.0, resume=True, progress=False)
    assert len(manifest(output)) == 4


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
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM counts from here (ru_maxrss would count a big parent's RSS at fork)
failed = [e.error for e in model.iter_embeddings(sys.argv[3:]) if e.error]
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
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


def test_ghostscript_is_never_started_by_label_or_a_url(demo_model, tmp_path, fake_ghostscript):
    """Pillow picks the decoder from the content: EPS bytes named .jpg, in a folder or served
    over HTTP, never reach Ghostscript (a fake ``gs`` on PATH would leave a canary)."""
    canary, eps = fake_ghostscript
    synthetic.write_folder(tmp_path / "in", 2)
    (tmp_path / "in" / "holiday.jpg").write_bytes(eps.getvalue())
    demo_model.label(tmp_path / "in", None, tmp_path / "out", progress=False)
    assert "not an image file" in manifest(tmp_path / "out")["holiday.jpg"]["error"]

    class Serve(QuietHandler):
        def do_GET(self) -> None:
            self.send(200, "image/jpeg", eps.getvalue())

    with serve(Serve) as url:
        with pytest.raises(ImageLoadError, match="not an image file"):
            demo_model.predict(f"{url}/holiday.jpg")
    assert not canary.exists()
