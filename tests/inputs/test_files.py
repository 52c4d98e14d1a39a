"""Files read and written safely: a write appears whole or not at all, a read is of a regular
file under a size cap (never a FIFO, a device or a folder, never a link out of ``within``), an
append never goes through a link and never merges into a torn row."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from autodistill_metaclip import synthetic
from autodistill_metaclip.inputs.files import (
    UnreadableFile,
    append_csv,
    atomic_write,
    make_folders,
    open_capped,
    read_capped,
    read_file,
    refuse_link,
)
from tests.helpers import copies, manifest


def _left_over(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".partial-"))


# --- atomic_write --------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old")
    with atomic_write(path, "w") as f:
        f.write("a,b\n")
        assert path.read_text() == "old"  # nothing visible until the block ends
        assert len(_left_over(tmp_path)) == 1
    assert path.read_text() == "a,b\n" and _left_over(tmp_path) == []
    with atomic_write(tmp_path / "bytes.bin") as f:
        f.write(b"\x00\xff")
    assert (tmp_path / "bytes.bin").read_bytes() == b"\x00\xff"


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_atomic_write_leaves_the_old_file_on_error(tmp_path: Path, error) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(type(error)):
        with atomic_write(path, "w") as f:
            f.write("half of the new")
            raise error
    assert path.read_text() == "old" and _left_over(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "new.csv", "w"):
            raise RuntimeError
    assert not (tmp_path / "new.csv").exists() and _left_over(tmp_path) == []


def test_atomic_write_replaces_a_link_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    link = tmp_path / "out.txt"
    link.symlink_to(target)
    with atomic_write(link, "w") as f:
        f.write("new")
    assert not link.is_symlink() and link.read_text() == "new"
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_write_gives_the_usual_permissions(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "f", "w") as f:
            f.write("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "f").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize(
    "name",
    [
        "a" * 251 + ".png",  # 255 bytes: the longest legal name
        "é" * 125 + ".png",  # 254 bytes of two-byte characters: cut inside one
        os.fsdecode(b"caf\xe9" * 60 + b".png"),  # bytes that are not UTF-8
    ],
)
def test_atomic_write_takes_the_longest_names(tmp_path: Path, name: str) -> None:
    """The temporary name (``.partial-<16 hex>-<name>``) is cut to the 255-byte limit, so a
    legal name never fails with "File name too long" after the work is done."""
    target = tmp_path / name
    with atomic_write(target) as f:
        (temporary,) = _left_over(tmp_path)
        assert len(os.fsencode(temporary)) <= 255
        assert re.match(r"^\.partial-[0-9a-f]{16}-", temporary)  # what the cleanups look for
        f.write(b"data")
    assert target.read_bytes() == b"data" and _left_over(tmp_path) == []
    assert os.listdir(os.fsencode(tmp_path)) == [os.fsencode(name)]


def test_label_takes_an_input_with_a_250_byte_name(shapes_model, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    name = "x" * 246 + ".png"
    synthetic.make_image("red", "circle", seed=1).save(source / name)
    synthetic.make_image("blue", "square", seed=2).save(source / "short.png")
    shapes_model.label(source, ".png", tmp_path / "out", confidence=0.0, progress=False)
    rows = manifest(tmp_path / "out")
    assert rows[name]["status"] == "labeled", rows[name]
    (copy,) = [p for p in copies(tmp_path / "out") if p.name.startswith("xxx")]
    assert len(os.fsencode(copy.name)) <= 200 and copy.suffix == ".png"
    assert copy.read_bytes() == (source / name).read_bytes()


# --- the capped reader -----------------------------------------------------------------------


def test_read_capped_reads_a_regular_file_under_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"12345")
    assert read_capped(path, 5) == b"12345"
    with pytest.raises(UnreadableFile, match="is larger than 4 bytes") as raised:
        read_capped(path, 4)
    assert raised.value.problem == "is larger than 4 bytes"
    file, size = open_capped(path, 5)
    with file:
        assert size == 5 and file.read() == b"12345"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.mkdir(), "is a directory, not a regular file"),
        (lambda p: os.mkfifo(p), "is not a regular file"),
        (lambda p: p.symlink_to(p.with_name("nowhere")), "broken symlink"),
        (lambda p: (p.symlink_to(p.with_name("b")), p.with_name("b").symlink_to(p)),
         "symlink loop"),
        (lambda p: p.symlink_to("/dev/zero"), "is not a regular file"),
    ],
    ids=["missing", "folder", "fifo", "broken link", "link loop", "device"],
)  # fmt: skip
def test_read_capped_refuses_what_is_not_a_regular_file(tmp_path: Path, make, problem) -> None:
    """Refused at once: a FIFO with no writer, or /dev/zero, is never waited on or read."""
    path = tmp_path / "x"
    make(path)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_capped(path, 1 << 20)
        except BaseException as e:
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "the reader is waiting on the file"
    (error,) = outcome
    assert isinstance(error, UnreadableFile) and error.problem == problem


def test_within_refuses_links_out_of_the_folder(tmp_path: Path) -> None:
    inside, outside = tmp_path / "in", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (inside / "real.png").write_bytes(b"inside")
    (outside / "secret.png").write_bytes(b"outside")
    (inside / "in-link.png").symlink_to(inside / "real.png")
    (inside / "out-link.png").symlink_to(outside / "secret.png")
    (inside / "up.png").symlink_to(Path("..") / "outside" / "secret.png")
    within = os.path.realpath(inside)
    assert read_capped(inside / "real.png", 100, within=within) == b"inside"
    assert read_capped(inside / "in-link.png", 100, within=within) == b"inside"
    for name in ("out-link.png", "up.png"):
        with pytest.raises(UnreadableFile, match="a symbolic link to a file outside the input"):
            read_capped(inside / name, 100, within=within)
    assert read_capped(inside / "out-link.png", 100) == b"outside"  # without within: followed


def test_read_file_names_the_argument(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b"x" * 10)
    with pytest.raises(ValueError, match=r"^ontology: '.*big\.json' is larger than 4 bytes$"):
        read_file(tmp_path / "big.json", 4, "ontology")
    with pytest.raises(ValueError, match=r"^ontology: '.*absent' cannot be read \(file not found"):
        read_file(tmp_path / "absent", 4, "ontology")
    assert read_file(tmp_path / "big.json", 10, "ontology") == b"x" * 10


# --- append_csv -----------------------------------------------------------------------------


def test_append_csv_writes_the_header_once(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    append_csv(path, ["a", "b"], [["1", "2"]])
    append_csv(path, ["a", "b"], [["3", "x,y"], ["5", "6"]])
    assert path.read_bytes() == b'a,b\r\n1,2\r\n3,"x,y"\r\n5,6\r\n'
    empty = tmp_path / "empty.csv"
    append_csv(empty, ["a"], [])
    assert empty.read_bytes() == b"a\r\n"


def test_append_csv_ends_a_torn_row_instead_of_merging(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"a,b\r\n1,2\r\n3,")  # a crash in the middle of a row
    append_csv(path, ["a", "b"], [["5", "6"]])
    assert path.read_bytes() == b"a,b\r\n1,2\r\n3,\r\n5,6\r\n"


def test_append_csv_refuses_to_write_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.csv"
    target.write_bytes(b"theirs\n")
    link = tmp_path / "log.csv"
    link.symlink_to(target)
    with pytest.raises(OSError):
        append_csv(link, ["a"], [["1"]])
    assert target.read_bytes() == b"theirs\n"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "would-be-created.csv")
    with pytest.raises(OSError):
        append_csv(dangling, ["a"], [["1"]])
    assert not (tmp_path / "would-be-created.csv").exists()


# --- folders --------------------------------------------------------------------------------


def test_make_folders_refuses_links_and_files_on_the_way(tmp_path: Path) -> None:
    assert make_folders(tmp_path, "train/cat") == tmp_path / "train" / "cat"
    assert make_folders(tmp_path, "train/cat").is_dir()  # again: fine
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "valid").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match=r"'.*valid' is a symbolic link"):
        make_folders(tmp_path, "valid/cat")
    assert list(elsewhere.iterdir()) == []
    (tmp_path / "test").write_text("a file")
    with pytest.raises(FileExistsError, match=r"'.*test' is not a folder"):
        make_folders(tmp_path, "test/cat")


def test_refuse_link(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    refuse_link(tmp_path / "file")
    refuse_link(tmp_path / "absent")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(FileExistsError, match="is a symbolic link; this tool never writes"):
        refuse_link(tmp_path / "link")
