"""``label()``'s dataset, read back by the real readers people train with: supervision,
torchvision's ImageFolder, Hugging Face ``datasets`` and ultralytics. Inputs are real PNGs; a
small class is missing from a split by design."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import supervision as sv
from torchvision.datasets import ImageFolder

from autodistill_metaclip import MetaCLIP
from tests.helpers import COUNTS, ONTOLOGY, TIGHT, manifest, write_inputs


def classes_txt(output: Path) -> list[str]:
    return (output / "classes.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def dataset(shapes_model: MetaCLIP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_inputs(root / "in")
    shapes_model.label(root / "in", ".png", root / "out", near_duplicates=TIGHT, progress=False)
    return root / "out"


def test_the_small_class_is_missing_from_a_split_but_keeps_its_folder(dataset: Path) -> None:
    rows = manifest(dataset)
    yellow = [r["split"] for r in rows.values() if r["class"] == "yellow circle"]
    assert len(yellow) == 2 and len(set(yellow)) < 3  # the case that broke 0.2.0's readers
    for split in ("train", "valid", "test"):
        assert sorted(p.name for p in (dataset / split).iterdir()) == sorted(COUNTS)


def test_supervision_and_torchvision_number_every_split_alike(dataset: Path) -> None:
    rows, classes = manifest(dataset), classes_txt(dataset)
    assert classes == sorted(COUNTS)
    for split in ("train", "valid", "test"):
        assert (
            sv.ClassificationDataset.from_folder_structure(str(dataset / split)).classes == classes
        )
        folder = ImageFolder(str(dataset / split), allow_empty=True)
        assert folder.classes == classes
        for path, class_id in folder.samples:
            assert rows[Path(path).name]["class"] == classes[class_id]
            assert rows[Path(path).name]["split"] == split


def test_hugging_face_imagefolder_reads_the_same_labels(dataset: Path) -> None:
    import datasets

    loaded = datasets.load_dataset("imagefolder", data_dir=str(dataset))
    rows, classes = manifest(dataset), classes_txt(dataset)
    assert set(loaded) == {"train", "validation", "test"}
    for part in loaded.values():
        assert part.features["label"].names == classes
        part = part.cast_column("image", datasets.Image(decode=False))
        for example in part:
            assert rows[Path(example["image"]["path"]).name]["class"] == classes[example["label"]]


def test_returned_dataset_has_each_class_once_in_reader_order(tmp_path: Path) -> None:
    write_inputs(tmp_path / "in", {"red circle": 4, "blue square": 4})
    doubled = MetaCLIP({**ONTOLOGY, "a red round thing": "red circle"}, checkpoint="demo")
    result = doubled.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    assert result.classes == classes_txt(tmp_path / "out") == sorted(COUNTS)
    rows = manifest(tmp_path / "out")
    for path, annotation in result.annotations.items():
        assert result.classes[annotation.class_id[0]] == rows[Path(path).name]["class"]
        assert Path(path).is_file()


def test_ultralytics_trains_on_the_val_layout(shapes_model: MetaCLIP, tmp_path: Path) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    write_inputs(tmp_path / "in")
    output = tmp_path / "out"
    shapes_model.label(
        tmp_path / "in", ".png", output, layout="val", near_duplicates=TIGHT, progress=False
    )
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == [
        "classes.txt", "manifest.csv", "review.html", "test", "train", "val",
    ]  # fmt: skip
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ultralytics").addHandler(handler)  # it does not propagate
    yolo = YOLO("yolov8n-cls.yaml")  # built from its yaml: no download
    train = sum(r["split"] == "train" for r in manifest(output).values())
    batch = 8 if train % 8 != 1 else 7  # ultralytics refuses a last batch of one image
    yolo.train(
        data=str(output), epochs=1, imgsz=32, batch=batch, workers=0, device="cpu", plots=False,
        amp=False, project=str(tmp_path / "runs"), name="cls", verbose=False,
    )  # fmt: skip
    logging.getLogger("ultralytics").removeHandler(handler)
    assert list(yolo.names.values()) == classes_txt(output)
    # The error the docs explain: logged for a split with an empty class folder, and harmless.
    complaints = {
        split for split in ("val", "test") for m in logged
        if "requires 4 classes" in m and f"{os.sep}{split}..." in m
    }  # fmt: skip
    empty = {
        split for split in ("val", "test")
        if any(not any(c.iterdir()) for c in (output / split).iterdir())
    }  # fmt: skip
    assert empty and complaints == empty
