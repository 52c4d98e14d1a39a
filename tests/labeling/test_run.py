"""label(): real folders of good and broken files, written and loaded back with supervision."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import supervision as sv

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling import label_folder
from autodistill_metaclip.labeling.options import LabelOptions
from tests.helpers import SPLITS, manifest, tree

GOOD = {
    "red_circle.jpg": ("red", "circle", "JPEG"),
    "blue_square.PNG": ("blue", "square", "PNG"),
    "green_triangle.JPG": ("green", "triangle", "JPEG"),
    "jaune ☀ yellow_circle.jpeg": ("yellow", "circle", "JPEG"),
    "shape.webp": ("red", "triangle", "WEBP"),
    "shape.bmp": ("blue", "circle", "BMP"),
    "nested/deeper/green_square.jpg": ("green", "square", "JPEG"),
    "nested/red_circle.jpg": ("red", "square", "JPEG"),  # same name as a top-level file
}


def _truncated_jpeg(path: Path) -> None:
    synthetic.make_image("red", "circle", size=128).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BROKEN = {
    "empty.jpg": lambda p: p.write_bytes(b""),
    "truncated.jpg": _truncated_jpeg,
    "notes.jpg": lambda p: p.write_text("definitely not a picture"),
    "folder.jpg": lambda p: p.mkdir(),
}
EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".bmp"]


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for name, (colour, shape, fmt) in GOOD.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.make_image(colour, shape, size=96, seed=len(name)).save(path, format=fmt)
    for name, make in BROKEN.items():
        make(root / name)
    return root


def test_label_mixed_folder(demo_model: MetaCLIP, mixed_folder: Path, tmp_path: Path) -> None:
    before = tree(tmp_path)
    output = tmp_path / "out"
    dataset = demo_model.label(mixed_folder, EXTENSIONS, output, recursive=True, progress=False)

    # Nothing outside the output folder was created, changed or removed.
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before

    header = (output / "manifest.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "image,status,class,confidence,split,error,stamp,top,decided"
    rows = manifest(output)
    assert set(rows) == set(GOOD) | set(BROKEN)
    for name in GOOD:
        assert rows[name]["status"] in ("labeled", "unlabeled"), rows[name]
    for name in BROKEN:
        assert rows[name]["status"] == "failed" and rows[name]["error"], rows[name]
    assert "empty" in rows["empty.jpg"]["error"]
    assert "truncated" in rows["truncated.jpg"]["error"]
    assert "not an image" in rows["notes.jpg"]["error"]
    assert "directory" in rows["folder.jpg"]["error"]

    # Every labelled file is the original bytes, in its split and class folder. The demo's
    # class names are letters and spaces, so each class folder is named as the class itself.
    assert all(re.fullmatch(r"[a-z]+ [a-z]+", c) for c in demo_model.classes)
    labelled = [r for r in rows.values() if r["status"] == "labeled"]
    assert len(labelled) == len(dataset) >= 6
    written = {k: v for k, v in after.items() if k.split("/")[:2][-1] in SPLITS}
    assert len(written) == len(labelled)  # colliding names did not overwrite each other
    originals = {h: k for k, h in before.items()}
    for key, digest in written.items():
        _, split, folder, _ = key.split("/")
        source = originals[digest].removeprefix("photos/")
        assert (rows[source]["split"], rows[source]["class"]) == (split, folder)

    # supervision reads the dataset back, with the classes we assigned.
    for split in SPLITS:
        if (output / split).is_dir():
            loaded = sv.ClassificationDataset.from_folder_structure(str(output / split))
            for path, _, annotation in loaded:
                assert loaded.classes[annotation.class_id[0]] == Path(path).parent.name


def test_label_predictions_are_right(demo_model: MetaCLIP, tmp_path: Path) -> None:
    truth = synthetic.write_folder(tmp_path / "in", 48, suffix=".jpg", seed=11)
    dataset = demo_model.label(tmp_path / "in", ".jpg", tmp_path / "out", progress=False)
    rows = manifest(tmp_path / "out")
    correct = sum(rows[p.name]["class"] == label for p, label in truth.items())
    assert correct >= 0.95 * len(truth)
    for path in dataset.image_paths:
        assert (
            dataset.classes[dataset.annotations[path].class_id[0]] == rows[Path(path).name]["class"]
        )


def test_existing_output_needs_overwrite(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 6, suffix=".jpg")
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        demo_model.label(tmp_path / "in", ".jpg", output, progress=False)
    demo_model.label(tmp_path / "in", ".jpg", output, progress=False, overwrite=True)
    demo_model.label(tmp_path / "in", ".jpg", output, progress=False, overwrite=True)
    assert (output / "keep.txt").read_text() == "mine"  # only our own folders are replaced
    assert len(manifest(output)) == 6


def test_output_inside_input_is_not_relabelled(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 6, suffix=".jpg")
    demo_model.label(
        tmp_path / "in", ".jpg", tmp_path / "in" / "labels", recursive=True, progress=False
    )
    demo_model.label(
        tmp_path / "in",
        ".jpg",
        tmp_path / "in" / "labels",
        recursive=True,
        progress=False,
        overwrite=True,
    )
    assert set(manifest(tmp_path / "in" / "labels")) == {
        p.name for p in (tmp_path / "in").glob("*.jpg")
    }
    with pytest.raises(ValueError, match="must not be"):
        demo_model.label(tmp_path / "in", ".jpg", tmp_path, progress=False)


def test_unlabeled_and_summary(demo_model: MetaCLIP, tmp_path: Path, caplog) -> None:
    synthetic.write_folder(tmp_path / "in", 5, suffix=".jpg")
    (tmp_path / "in" / "bad.jpg").write_bytes(b"\xff\xd8")
    with caplog.at_level(logging.INFO, logger="autodistill_metaclip"):
        dataset = demo_model.label(
            tmp_path / "in", ".jpg", tmp_path / "out", confidence=1.0, progress=False
        )
    rows = manifest(tmp_path / "out")
    assert len(dataset) == 0
    assert sorted(r["status"] for r in rows.values()) == ["failed"] + ["unlabeled"] * 5
    assert all(
        r["class"] and float(r["confidence"]) < 1.0
        for r in rows.values()
        if r["status"] == "unlabeled"
    )
    assert "labeled 0, unlabeled 5, failed 1" in caplog.text
    assert "no image was labeled" in caplog.text


def test_default_output_folder_and_no_extension_filter(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    folder = tmp_path / "pics"
    synthetic.write_folder(folder, 3, suffix=".png")
    synthetic.write_folder(folder, 3, suffix=".gif", seed=9)
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    demo_model.label(str(folder), None, progress=False)
    rows = manifest(tmp_path / "pics_labeled")
    assert len(rows) == 6 and all(r["status"] != "failed" for r in rows.values())


def test_options_or_keywords_but_not_both(demo_model: MetaCLIP, tmp_path: Path) -> None:
    """label_folder takes a LabelOptions or its fields as keywords; both is refused before any
    work, and a URI input needs a local output folder."""
    synthetic.write_folder(tmp_path / "in", 3, suffix=".png")
    with pytest.raises(TypeError, match=r"give options or keywords, not both \(seed\)"):
        label_folder(demo_model, tmp_path / "in", ".png", tmp_path / "out", LabelOptions(), seed=1)
    with pytest.raises(ValueError, match=r"output_folder: needed .* when input_folder is a URI"):
        label_folder(demo_model, "memory://nowhere/photos", ".png")
    with pytest.raises(ValueError, match="output_folder: expected a local folder"):
        label_folder(demo_model, tmp_path / "in", ".png", "s3://bucket/out")
    assert not (tmp_path / "out").exists()
    options = LabelOptions(confidence=0.0, split=(1.0, 0.0, 0.0), progress=False)
    dataset = label_folder(demo_model, tmp_path / "in", ".png", tmp_path / "out", options)
    assert len(dataset) == 3 and {r["split"] for r in manifest(tmp_path / "out").values()} == {
        "train"
    }


def test_an_ontology_is_needed(tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 2, suffix=".png")
    with pytest.raises(ValueError, match="ontology: label\\(\\) needs one"):
        MetaCLIP(None, "demo").label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
