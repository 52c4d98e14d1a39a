"""Untrusted input, round three: each case a real attack on real files and processes, bounded in
time: a folder swapped for a link while ``dedup --apply`` moves files, an index that names
another folder, names made of terminal escapes, JSON nested 100,000 deep, 250-byte file names,
class folders two classes could claim. (Racing writers of one output folder, with processes
SIGKILLed while they hold it, are in ``tests/labeling/test_lock.py``.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from autodistill_metaclip import EmbeddingIndex, synthetic
from tests.helpers import manifest, run_cli

SWAP = r"""
import ctypes, os, sys, time
folder, outside, signals = sys.argv[1], sys.argv[2], sys.argv[3]
sub, link = os.path.join(folder, "sub"), os.path.join(folder, "sub-link")
os.symlink(outside, link)
exchange = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)

def swap():
    if exchange is not None:  # one atomic step: "sub" is always there, a folder or a link
        if exchange(-100, sub.encode(), -100, link.encode(), 2) != 0:  # RENAME_EXCHANGE
            raise OSError(ctypes.get_errno(), "renameat2")
    else:
        os.rename(sub, sub + ".tmp"); os.rename(link, sub); os.rename(sub + ".tmp", link)

deadline, n = time.monotonic() + 120, 0
while time.monotonic() < deadline and not os.path.exists(os.path.join(signals, "stop")):
    swap()
    n += 1
    if n == 2000:
        open(os.path.join(signals, "swapping"), "w").close()
if os.path.islink(sub):
    swap()  # the real folder back in its place
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under ``folder``: its bytes' digest, inode and link count."""
    return {
        p.relative_to(folder).as_posix(): (_digest(p), p.stat().st_ino, p.stat().st_nlink)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_dedup_never_acts_outside_its_folder_while_a_subfolder_is_swapped_for_a_link(
    tmp_path: Path,
) -> None:
    """Another process swaps ``photos/sub`` with a link to ``outside/`` (atomically, as fast
    as it can) while ``dedup --apply`` moves 300 duplicates out of ``photos/sub``. The files
    outside have the same names, sizes and times as those inside (the stamps match), so only
    the folder descriptors tell them apart. Nothing outside is moved, linked or removed; every
    row has an outcome; no file inside is lost; the destination holds only inside bytes."""
    folder, outside, aside, signals = (tmp_path / n for n in ("photos", "outside", "aside", "s"))
    for made in (folder / "sub", outside, signals):
        made.mkdir(parents=True)
    n = 300
    keys, stamps, vectors = [], [], []
    rng = np.random.default_rng(0)
    for i in range(n):
        direction = rng.standard_normal(64).astype(np.float32)
        for name, size in ((f"keep-{i:03d}.png", 240), (f"dup-{i:03d}.png", 120)):
            inside = folder / "sub" / name
            inside.write_bytes(f"{name} inside ".encode().ljust(size, b"."))
            (outside / name).write_bytes(f"{name} SECRET ".encode().ljust(size, b"!"))
            info = inside.stat()
            os.utime(outside / name, ns=(info.st_atime_ns, info.st_mtime_ns))
            keys.append(f"sub/{name}")
            stamps.append(f"{info.st_size}:{info.st_mtime_ns}")
            vectors.append(direction / np.linalg.norm(direction))
    index_file = tmp_path / "photos.npz"
    EmbeddingIndex(str(folder), keys, np.stack(vectors), stamps, {}).save(index_file)
    inside_before, outside_before = _snapshot(folder), _snapshot(outside)

    swapper = subprocess.Popen([sys.executable, "-c", SWAP, folder, outside, signals])
    try:
        deadline = time.monotonic() + 60
        while not (signals / "swapping").exists():  # swapping at full speed before the run
            assert swapper.poll() is None and time.monotonic() < deadline, "no swapper"
            time.sleep(0.01)
        started = time.monotonic()
        code, out, err = run_cli(
            "dedup", index_file, "--threshold", "0.99", "--move-to", aside, "--apply",
            "--folder", folder, "--json",
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        (signals / "stop").touch()
        swapper.wait(timeout=60)
    assert swapper.returncode == 0
    assert code in (0, 3), err
    assert took < 120

    assert _snapshot(outside) == outside_before  # nothing outside moved, linked or removed
    moves = json.loads(out)["moves"]
    assert len(moves) == n
    assert all(m["outcome"] == "moved" or m["outcome"].startswith("skipped: ") for m in moves)
    with open(aside / "moves.csv", encoding="utf-8") as log:
        assert len(log.read().splitlines()) == n + 1
    placed = _snapshot(aside)
    left = _snapshot(folder)
    for key, (digest, _, _) in inside_before.items():
        assert left.get(key, (None,))[0] == digest or placed.get(key, (None,))[0] == digest, key
    secret = {digest for digest, _, _ in outside_before.values()}
    assert not secret & {digest for digest, _, _ in placed.values()}
    refused = [m for m in moves if "symbolic link" in m["outcome"]]
    moved = [m for m in moves if m["outcome"] == "moved"]
    assert refused, "the swapper never won a race: the test did not test anything"
    assert moved, "nothing was moved at all"


def test_an_index_that_names_another_folder_moves_nothing_there(tmp_path: Path) -> None:
    """An index file whose recorded root is someone else's folder (``victim/``): ``dedup
    --apply`` with the folder the user means is refused (exit 2), and nothing moves."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.png").write_bytes(b"k" * 20)
    (victim / "dup.png").write_bytes(b"d" * 10)
    mine = tmp_path / "mine"
    mine.mkdir()
    stamps = [
        f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in (victim / "keep.png", victim / "dup.png")
    ]
    vectors = np.ones((2, 8), np.float32) / np.sqrt(8)
    EmbeddingIndex(str(victim), ["keep.png", "dup.png"], vectors, stamps, {}).save(
        tmp_path / "i.npz"
    )
    aside = tmp_path / "aside"
    base = ("dedup", tmp_path / "i.npz", "--threshold", "0.99", "--move-to", aside, "--apply")
    code, _, err = run_cli(*base, "--folder", mine)
    assert code == 2 and "--folder: expected the folder the index was built from" in err
    code, _, err = run_cli(*base)
    assert code == 2 and "--apply needs --folder" in err
    assert sorted(p.name for p in victim.iterdir()) == ["dup.png", "keep.png"]
    assert not aside.exists()


def test_terminal_escapes_in_file_names_are_shown_not_obeyed(tmp_path: Path) -> None:
    """Real files named with ESC sequences, BEL, C1 CSI and DEL: ``predict``, ``index``,
    ``search`` and ``dedup`` print them as ``\\xNN``, error lines too; ``--json`` keeps the
    names exactly (JSON escapes them)."""
    folder = tmp_path / "in"
    folder.mkdir()
    red = "\x1b[31mred\x07.png"
    synthetic.make_image("red", "circle", seed=1).save(folder / red)
    (folder / "copy\x9b2J.png").write_bytes((folder / red).read_bytes())
    synthetic.make_image("blue", "square", seed=2).save(folder / "del\x7f.png")
    (folder / "bad\x1b]0;owned\x07.png").write_bytes(b"not an image")
    raw = set("\x1b\x07\x9b\x7f")
    classes = ("-c", "red circle", "-c", "blue square")
    index_file = tmp_path / "i.npz"
    runs = {
        "predict": run_cli("predict", "-m", "demo", folder, *classes),
        "index": run_cli("index", "-m", "demo", folder, index_file),
        "search": run_cli("search", index_file, "a photo of a red circle", "-k", "3"),
        "dedup": run_cli("dedup", index_file, "--threshold", "0.99", "--move-to", tmp_path / "d"),
        "error": run_cli("search", index_file, str(folder / "gone\x1b[2J.png")),
    }
    for command, ran in runs.items():
        assert not raw & set(ran.out + ran.err), command
    assert "\\x1b[31mred\\x07.png: red circle" in runs["predict"].out
    assert "bad\\x1b]0;owned\\x07.png" in runs["predict"].out and runs["predict"].code == 3
    assert "failed: bad\\x1b]0;owned\\x07.png" in runs["index"].out
    assert "copy\\x9b2J.png" in runs["search"].out and "del\\x7f.png" in runs["search"].out
    assert "keep" in runs["dedup"].out and "\\x1b[31mred\\x07.png" in runs["dedup"].out
    assert runs["error"].code == 1 and "gone\\x1b[2J.png" in runs["error"].err
    code, out, _ = run_cli("predict", "-m", "demo", folder, *classes, "--json")
    assert code == 3
    assert "\x1b" not in out and {Path(r["image"]).name for r in json.loads(out)} >= {red}


def test_corrections_nested_100000_deep_are_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    started = time.monotonic()
    code, _, err = run_cli("fix", tmp_path, tmp_path / "deep.json")
    assert code == 2 and "deep.json' is nested too deeply" in err and "Recursion" not in err
    assert time.monotonic() - started < 30


def test_a_file_named_with_250_bytes_is_labelled(shapes_model, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    name = "é" * 123 + ".png"  # 250 bytes
    synthetic.make_image("red", "circle", seed=3).save(source / name)
    shapes_model.label(source, ".png", tmp_path / "out", confidence=0.0, progress=False)
    assert manifest(tmp_path / "out")[name]["status"] == "labeled"
    index = EmbeddingIndex.build(shapes_model, source, progress=False)
    saved = index.save(tmp_path / ("i" * 251 + ".npz"))  # a 255-byte name of our own
    assert len(EmbeddingIndex.load(saved)) == 1
