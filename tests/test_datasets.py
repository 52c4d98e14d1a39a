"""``label()``'s dataset, read back by the tools people train with, and its resume, overwrite
and ownership rules. Inputs are real PNGs; a small class is missing from a split by design."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import supervision as sv
from PIL import Image
from torchvision.datasets import ImageFolder

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.state import STATE

ONTOLOGY = {
    "a photo of a red circle": "red circle",
    "a photo of a blue square": "blue square",
    "a photo of a green triangle": "green triangle",
    "a photo of a yellow circle": "yellow circle",
}
COUNTS = {"red circle": 12, "blue square": 12, "green triangle": 12, "yellow circle": 3}
TIGHT = 0.995  # the tiny demo model packs a class closely (same-class cosine up to 0.99)


def write_inputs(folder: Path, counts: dict[str, int] = COUNTS, seed: int = 0) -> dict[str, str]:
    """PNG files named by index, so nothing but the pixels says their class."""
    folder.mkdir(parents=True, exist_ok=True)
    truth, n = {}, 0
    for label, count in counts.items():
        colour, shape = label.split()
        for _ in range(count):
            name = f"{n:04d}.png"
            synthetic.make_image(colour, shape, seed=seed * 10000 + n).save(folder / name)
            truth[name] = label
            n += 1
    return truth


def manifest(output: Path) -> dict[str, dict[str, str]]:
    with open(output / "manifest.csv", encoding="utf-8", newline="") as f:
        return {r["image"]: r for r in csv.DictReader(f)}


def classes_txt(output: Path) -> list[str]:
    return (output / "classes.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def model() -> MetaCLIP:
    return MetaCLIP(ONTOLOGY, checkpoint="demo")


@pytest.fixture(scope="module")
def dataset(model: MetaCLIP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_inputs(root / "in")
    model.label(root / "in", ".png", root / "out", near_duplicates=TIGHT, progress=False)
    return root / "out"


def test_the_small_class_is_missing_from_a_split_but_keeps_its_folder(dataset: Path) -> None:
    rows = manifest(dataset)
    yellow = [r["split"] for r in rows.values() if r["class"] == "yellow circle"]
    assert len(yellow) == 3 and len(set(yellow)) < 3  # the case that broke 0.2.0's readers
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


def test_returned_dataset_has_each_class_once_in_reader_order(
    model: MetaCLIP, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", {"red circle": 4, "blue square": 4})
    doubled = MetaCLIP({**ONTOLOGY, "a red round thing": "red circle"}, checkpoint="demo")
    result = doubled.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    assert result.classes == classes_txt(tmp_path / "out") == sorted(COUNTS)
    rows = manifest(tmp_path / "out")
    for path, annotation in result.annotations.items():
        assert result.classes[annotation.class_id[0]] == rows[Path(path).name]["class"]
        assert Path(path).is_file()


def test_ultralytics_trains_on_the_val_layout(model: MetaCLIP, tmp_path: Path) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    write_inputs(tmp_path / "in")
    output = tmp_path / "out"
    model.label(
        tmp_path / "in", ".png", output, layout="val", near_duplicates=TIGHT, progress=False
    )
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == [
        "classes.txt", "manifest.csv", "review.html", "test", "train", "val",
    ]  # fmt: skip
    yolo = YOLO("yolov8n-cls.yaml")  # built from its yaml: no download
    yolo.train(
        data=str(output), epochs=1, imgsz=32, batch=8, workers=0, device="cpu", plots=False,
        amp=False, project=str(tmp_path / "runs"), name="cls", verbose=False,
    )  # fmt: skip
    assert list(yolo.names.values()) == classes_txt(output)


def test_every_class_reaches_every_split_and_near_duplicates_stay_together(
    model: MetaCLIP, tmp_path: Path
) -> None:
    counts = {"red circle": 10, "blue square": 25, "green triangle": 10, "yellow circle": 40}
    write_inputs(tmp_path / "in", counts, seed=4)
    twins = {}
    for i, path in enumerate(sorted((tmp_path / "in").glob("*.png"))[::6]):
        # a near-copy: 2 levels brighter, re-encoded as BMP (the demo model is too sensitive
        # to JPEG artefacts for JPEG twins to be near-duplicates in its embedding)
        twin = tmp_path / "in" / f"twin-{i:02d}.bmp"
        with Image.open(path) as image:
            image.point(lambda v: min(255, v + 2)).save(twin)
        twins[path.name] = twin.name
    model.label(
        tmp_path / "in", [".png", ".bmp"], tmp_path / "out", near_duplicates=TIGHT, progress=False
    )
    rows = manifest(tmp_path / "out")
    for label in counts:
        splits = [r["split"] for r in rows.values() if r["class"] == label]
        if len(splits) >= 10:
            assert {"train", "valid", "test"} <= set(splits), label
    both = [(a, b) for a, b in twins.items() if rows[a]["split"] and rows[b]["split"]]
    assert len(twins) == 15 and len(both) >= 12  # an unlabelled image is in no split at all
    assert [rows[a]["split"] == rows[b]["split"] for a, b in both] == [True] * len(both)


@pytest.fixture
def finished(model: MetaCLIP, tmp_path: Path) -> Path:
    write_inputs(tmp_path / "in")
    model.label(tmp_path / "in", ".png", tmp_path / "out", near_duplicates=TIGHT, progress=False)
    return tmp_path


def resume_run(model: MetaCLIP, root: Path) -> None:
    model.label(
        root / "in", ".png", root / "out", resume=True, near_duplicates=TIGHT, progress=False
    )


def fresh_run(model: MetaCLIP, root: Path) -> dict[str, dict[str, str]]:
    model.label(root / "in", ".png", root / "fresh", near_duplicates=TIGHT, progress=False)
    return {
        k: {c: r[c] for c in ("status", "class", "split")}
        for k, r in manifest(root / "fresh").items()
    }


def same_as_fresh(model: MetaCLIP, root: Path) -> None:
    rows = manifest(root / "out")
    assert {
        k: {c: r[c] for c in ("status", "class", "split")} for k, r in rows.items()
    } == fresh_run(model, root)
    copies = {
        p.relative_to(root / "out").as_posix()
        for split in ("train", "valid", "test")
        for p in (root / "out" / split).rglob("*.png")
    }
    assert copies == {
        f"{r['split']}/{r['class']}/{k}" for k, r in rows.items() if r["status"] == "labeled"
    }


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"confidence": 0.9}, "confidence"),
        ({"seed": 1}, "seed"),
        ({"split": (0.5, 0.25, 0.25)}, "split"),
        ({"layout": "val"}, "layout"),
        ({"near_duplicates": 0.98}, "near_duplicates"),
        ({"extension": [".png", ".jpg"]}, "extensions"),
        ({"recursive": True}, "recursive"),
        (
            {"ontology": {"a photo of a red circle": "red circle", "a blue square": "blue square"}},
            "ontology",
        ),
        ({"prompt_templates": "a photo of a {}"}, "prompt_templates"),
    ],
)
def test_resume_with_other_settings_is_refused(
    finished: Path, model: MetaCLIP, change: dict, named: str
) -> None:
    before = (finished / "out" / "manifest.csv").read_bytes()
    options = {"near_duplicates": TIGHT, "extension": ".png", **change}
    other = model
    if "ontology" in options or "prompt_templates" in options:
        other = MetaCLIP(
            options.pop("ontology", ONTOLOGY),
            "demo",
            prompt_templates=options.pop("prompt_templates", None),
        )
    extension = options.pop("extension")
    with pytest.raises(ValueError, match=rf"resume: .*{named} .*overwrite=True"):
        other.label(
            finished / "in", extension, finished / "out", resume=True, progress=False, **options
        )
    assert (finished / "out" / "manifest.csv").read_bytes() == before


def test_torn_and_invalid_rows_are_redone(finished: Path, model: MetaCLIP) -> None:
    path = finished / "out" / "manifest.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].split(",")[0] + ",labeled,yel"  # torn by a full disk
    lines[5] = lines[5].replace(",labeled,", ",labeled,").rsplit(",", 3)[0] + ",nan,train,,x"
    path.write_text("\n".join(lines) + "\n0099.png,unlabeled,yel", encoding="utf-8")
    resume_run(model, finished)
    same_as_fresh(model, finished)


def test_input_changes_are_followed_exactly(finished: Path, model: MetaCLIP) -> None:
    (finished / "in" / "0000.png").unlink()  # removed
    synthetic.make_image("green", "triangle", seed=77).save(finished / "in" / "0001.png")  # changed
    os.utime(finished / "in" / "0001.png", ns=(1, 1))
    synthetic.make_image("blue", "square", seed=78).save(finished / "in" / "new.png")  # added
    resume_run(model, finished)
    rows = manifest(finished / "out")
    assert "0000.png" not in rows and rows["0001.png"]["class"] == "green triangle"
    assert rows["new.png"]["class"] == "blue square"
    same_as_fresh(model, finished)


def test_an_input_named_like_a_temporary_file_is_labelled(model: MetaCLIP, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in", {"red circle": 3})
    (tmp_path / "in" / "0000.png").rename(tmp_path / "in" / ".partial-x.png")
    for resume in (False, True):
        model.label(tmp_path / "in", ".png", tmp_path / "out", resume=resume, progress=False)
        assert manifest(tmp_path / "out")[".partial-x.png"]["status"] == "labeled"
        assert list(
            (tmp_path / "out").glob("*/red circle/partial-x.png")
        )  # not hidden: readers skip those


def test_overwrite_removes_only_what_the_tool_wrote(finished: Path, model: MetaCLIP) -> None:
    out = finished / "out"
    (out / "notes.txt").write_text("mine")  # beside the split folders: not the tool's concern
    planted = out / "train" / "red circle" / "holiday.jpg"
    planted.write_bytes(b"my own photo")
    with pytest.raises(FileExistsError, match=r"did not write .*train/red circle/holiday\.jpg"):
        model.label(finished / "in", ".png", out, overwrite=True, progress=False)
    assert planted.read_bytes() == b"my own photo" and (out / "manifest.csv").is_file()
    planted.unlink()
    model.label(finished / "in", ".png", out, overwrite=True, near_duplicates=TIGHT, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    same_as_fresh(model, finished)
    theirs = finished / "theirs"
    theirs.mkdir()
    (theirs / "manifest.csv").write_text("their own manifest")
    with pytest.raises(FileExistsError, match=r"did not write .*manifest\.csv"):
        model.label(finished / "in", ".png", theirs, overwrite=True, progress=False)
    assert (theirs / "manifest.csv").read_text() == "their own manifest"


def test_a_folder_in_use_is_refused(finished: Path, model: MetaCLIP) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (finished / "out" / STATE / "lock").write_text(str(holder.pid))
        with pytest.raises(RuntimeError, match=rf"being written by process {holder.pid}"):
            model.label(finished / "in", ".png", finished / "out", resume=True, progress=False)
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is taken over
    resume_run(model, finished)
    assert not (finished / "out" / STATE / "lock").exists()


KILLED = """
import sys
from autodistill_metaclip import MetaCLIP
ontology = dict(arg.split("=") for arg in sys.argv[3:])
model = MetaCLIP(ontology, checkpoint="demo", batch_size=8)
model.label(sys.argv[1], ".png", sys.argv[2], near_duplicates=0.995, progress=False)
"""


def test_a_run_killed_with_sigkill_resumes_to_the_same_dataset(model: MetaCLIP, tmp_path: Path):
    write_inputs(tmp_path / "in", {label: 180 for label in COUNTS})
    args = [f"{prompt}={name}" for prompt, name in ONTOLOGY.items()]
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path / "in"), str(tmp_path / "out"), *args]
    )
    manifest_file = tmp_path / "out" / "manifest.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if manifest_file.is_file() and manifest_file.read_text().count("\n") > 260:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(manifest(tmp_path / "out"))
    assert 256 <= done < 720, "the run was not killed midway"
    resume_run(model, tmp_path)
    same_as_fresh(model, tmp_path)
    assert not [p for p in (tmp_path / "out").rglob(".partial-*")]


def test_a_copy_is_kept_only_if_it_holds_the_same_file(model: MetaCLIP, tmp_path: Path) -> None:
    """x.png and b/x.png: the second is written as b__x.png; once x.png is gone it becomes
    x.png, and the earlier copy under that name (other bytes) must not be kept."""
    (tmp_path / "in" / "b").mkdir(parents=True)
    synthetic.make_image("red", "circle", seed=1).save(tmp_path / "in" / "x.png")
    synthetic.make_image("red", "circle", seed=2).save(tmp_path / "in" / "b" / "x.png")
    options = {"recursive": True, "split": (1.0, 0.0, 0.0), "progress": False}
    model.label(tmp_path / "in", ".png", tmp_path / "out", **options)
    (tmp_path / "in" / "x.png").unlink()
    model.label(tmp_path / "in", ".png", tmp_path / "out", resume=True, **options)
    (copy,) = (tmp_path / "out" / "train").rglob("*.png")
    assert copy.name == "x.png"
    assert copy.read_bytes() == (tmp_path / "in" / "b" / "x.png").read_bytes()


def test_a_linked_folder_in_a_split_is_foreign(finished: Path, model: MetaCLIP) -> None:
    elsewhere = finished / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.jpg").write_bytes(b"keep me")
    (finished / "out" / "train" / "red circle" / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match="link"):
        model.label(finished / "in", ".png", finished / "out", overwrite=True, progress=False)
    assert (elsewhere / "precious.jpg").read_bytes() == b"keep me"


def test_a_lock_of_an_earlier_life_of_this_pid_is_taken_over(finished: Path, model: MetaCLIP):
    """A container restarts its job as the same pid (often 1): that old lock is stale."""
    (finished / "out" / STATE / "lock").write_text(str(os.getpid()))
    resume_run(model, finished)
    assert not (finished / "out" / STATE / "lock").exists()


@pytest.mark.parametrize("seed", [-1, 0.5, None, True])
def test_a_bad_seed_is_refused_before_any_work(model: MetaCLIP, tmp_path: Path, seed) -> None:
    write_inputs(tmp_path / "in", {"red circle": 2})
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        model.label(tmp_path / "in", ".png", tmp_path / "out", seed=seed, progress=False)
    assert not (tmp_path / "out").exists()
