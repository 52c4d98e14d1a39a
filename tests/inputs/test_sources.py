"""Listing and reading images from local folders and filesystem URIs (``memory://`` is fsspec's
in-process filesystem: the same code path as ``s3://`` without a server; not allowed by default,
so these tests allow it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.inputs.policy import InputPolicy, using
from autodistill_metaclip.inputs.sources import is_uri, join, list_images, read_bytes
from tests.helpers import manifest

MEMORY = InputPolicy().allowing("memory")


def keys(files: list) -> list[str]:
    return [f.key for f in files]


def test_local_listing_extensions_case_and_recursion(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.JPG", "c.png", "d.txt", "sub/e.jpeg", "sub/f.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert keys(list_images(tmp_path, ".jpg")) == ["a.jpg", "b.JPG"]
    assert keys(list_images(tmp_path, ["jpg", ".PNG"])) == ["a.jpg", "b.JPG", "c.png"]
    assert keys(list_images(tmp_path, ".jpg", recursive=True)) == ["a.jpg", "b.JPG", "sub/f.jpg"]
    everything = ["a.jpg", "b.JPG", "c.png", "sub/e.jpeg", "sub/f.jpg"]
    assert keys(list_images(tmp_path, None, recursive=True)) == everything
    assert keys(list_images(tmp_path, None, recursive=True, exclude=tmp_path / "sub")) == [
        "a.jpg",
        "b.JPG",
        "c.png",
    ]
    first = list_images(tmp_path, ".jpg")[0]
    assert first.location == str(tmp_path / "a.jpg") and first.stamp.startswith("1:")


def test_local_listing_keeps_odd_entries_and_skips_linked_folders(tmp_path: Path) -> None:
    (tmp_path / "folder.jpg").mkdir()  # listed, so that reading it reports the problem
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.jpg").write_bytes(b"x")
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    assert keys(list_images(tmp_path, ".jpg", recursive=True)) == [
        "broken.jpg",
        "folder.jpg",
        "real/x.jpg",
    ]


def test_missing_folder_is_an_input_folder_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"input_folder: .*nothing.* does not exist"):
        list_images(tmp_path / "nothing", None)
    with pytest.raises(ValueError, match=r"input_folder: 'memory://absent/photos' is not a folder"):
        list_images("memory://absent/photos", None, policy=MEMORY)
    with pytest.raises(ValueError, match=r"'memory://absent/photos': memory:// inputs are not"):
        list_images("memory://absent/photos", None)


def test_uri_recognition() -> None:
    assert is_uri("s3://bucket/x.jpg") and is_uri("memory://a") and is_uri("file:///tmp/a")
    assert not is_uri("https://example.com/a.jpg") and not is_uri("photos/a.jpg")
    assert join("s3://bucket/photos/", "a/b.jpg") == "s3://bucket/photos/a/b.jpg"


@pytest.fixture
def bucket() -> Iterator[tuple[str, dict[str, str]]]:
    """Twelve shape PNGs and one text file in fsspec's in-memory filesystem."""
    fs = fsspec.filesystem("memory")
    root = "memory://bucket/photos"
    truth = {}
    for i, sample in enumerate(synthetic.samples(12, seed=4)):
        key = f"{'nested/' if i % 3 == 0 else ''}{i:03d}.png"
        with fs.open(f"{root}/{key}", "wb") as f:
            sample.image.save(f, format="PNG")
        truth[key] = sample.label
    with fs.open(f"{root}/notes.png", "wb") as f:
        f.write(b"just text")
    yield root, truth
    fs.rm("/bucket", recursive=True)


@using(MEMORY)
def test_remote_listing_and_reading(bucket: tuple[str, dict[str, str]]) -> None:
    root, truth = bucket
    listed = list_images(root, ".png", recursive=True)
    assert keys(listed) == sorted([*truth, "notes.png"])
    assert listed[0].location == f"{root}/{listed[0].key}" and listed[0].stamp
    assert keys(list_images(root, ".png")) == sorted(
        [k for k in truth if "/" not in k] + ["notes.png"]
    )
    assert read_bytes(f"{root}/notes.png") == b"just text"
    with pytest.raises(ImageLoadError, match="larger than 4 bytes"):
        read_bytes(f"{root}/notes.png", limit=4)
    with pytest.raises(ImageLoadError, match=r"memory://bucket/photos/absent.png.*cannot read"):
        read_bytes(f"{root}/absent.png")


def test_label_and_index_a_uri_on_one_machine(
    bucket: tuple[str, dict[str, str]], demo_ontology, tmp_path: Path
) -> None:
    root, truth = bucket
    demo_model = MetaCLIP(demo_ontology, "demo", inputs=MEMORY)
    dataset = demo_model.label(root, ".png", tmp_path / "out", recursive=True, progress=False)
    rows = manifest(tmp_path / "out")
    assert rows["notes.png"]["status"] == "failed" and "notes.png" in rows["notes.png"]["error"]
    right = sum(rows[k]["class"] == label for k, label in truth.items())
    assert right >= 11 and len(dataset) == sum(r["status"] == "labeled" for r in rows.values())
    copied = next(iter(dataset.image_paths))
    assert Path(copied).is_file()  # the original bytes, copied from the URI

    with using(demo_model.spec.inputs):  # the index lists under the policy in force
        index = EmbeddingIndex.build(demo_model, root, progress=False)
    assert len(index) == 12 and list(index.failed) == ["notes.png"]
    assert index.paths[0] == f"{root}/{index.keys[0]}"
    direct = demo_model.embed_image(index.paths[0])
    np.testing.assert_allclose(index.embeddings[0], direct, atol=1e-6)
    with using(demo_model.spec.inputs):
        counts = index.update(demo_model, progress=False)
    assert counts == {
        "added": 0,
        "changed": 0,
        "removed": 0,
        "failed": 1,
    }
