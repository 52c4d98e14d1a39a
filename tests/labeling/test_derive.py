"""Everything label() writes is derived from the embeddings kept in the store: another
ontology, confidence, seed, split, layout or threshold re-derives the dataset without running
the model, exactly as a fresh run writes it; another model never reuses the embeddings."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.corrections import FORMAT, apply_corrections
from autodistill_metaclip.labeling.derive import apply_decisions, derive_rows
from autodistill_metaclip.labeling.manifest import new_row
from autodistill_metaclip.labeling.state import Decided
from tests.helpers import embedded, manifest, tree, write_inputs

COLOURS = CaptionOntology(
    {f"a photo of a {c} thing": c for c in ("red", "green", "blue", "yellow")}
)


class Counting:
    """A model for label() (the ``Classifier`` protocol): a real model that records every
    input it is asked to run on."""

    def __init__(self, model: MetaCLIP) -> None:
        self.model, self.inputs = model, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def iter_predictions(self, inputs: Iterable[Any], confidence: float = 0.5, **kw: Any):
        inputs = list(inputs)
        self.inputs += inputs
        return self.model.iter_predictions(inputs, confidence, **kw)


def _dataset(folder: Path) -> dict[str, str]:
    """What a run wrote for trainers (not this tool's state, nor the review page, which names
    its folder)."""
    return {
        k: v for k, v in tree(folder).items()
        if not k.startswith(".autodistill-metaclip") and k != "review.html"
    }  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [{"confidence": 0.8}, {"seed": 7}, {"split": (0.5, 0.25, 0.25)}, {"layout": "val"},
     {"near_duplicates": 0.999}, {"near_duplicates": None}],
)  # fmt: skip
def test_another_setting_re_derives_without_the_model_as_a_fresh_run(
    demo_model: MetaCLIP, tmp_path: Path, change: dict[str, Any]
) -> None:
    synthetic.write_folder(tmp_path / "in", 60, suffix=".png", seed=2)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    counting = Counting(demo_model)
    from autodistill_metaclip.labeling import label_folder

    label_folder(counting, tmp_path / "in", ".png", tmp_path / "out", overwrite=True,
                 progress=False, **change)  # fmt: skip
    assert counting.inputs == []  # the model ran on nothing
    demo_model.label(tmp_path / "in", ".png", tmp_path / "fresh", progress=False, **change)
    assert _dataset(tmp_path / "out") == _dataset(tmp_path / "fresh")


def test_another_ontology_re_derives_without_the_model_as_a_fresh_run(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    synthetic.write_folder(tmp_path / "in", 60, suffix=".png", seed=2)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    colours = Counting(MetaCLIP(COLOURS, checkpoint="demo"))
    from autodistill_metaclip.labeling import label_folder

    label_folder(colours, tmp_path / "in", ".png", tmp_path / "out", overwrite=True, progress=False)
    assert colours.inputs == []
    colours.model.label(tmp_path / "in", ".png", tmp_path / "fresh", progress=False)
    assert _dataset(tmp_path / "out") == _dataset(tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == sorted(
        COLOURS.classes()
    )


@pytest.mark.parametrize(
    "other",
    [{"checkpoint": "metaclip-tiny"}, {"precision": "bf16"}, {"draft_decoding": True}],
)
def test_another_model_never_reuses_the_embeddings(
    demo_model: MetaCLIP, tiny_config: Path, tiny_weights: Path, tmp_path: Path, other: dict
) -> None:
    synthetic.write_folder(tmp_path / "in", 12, suffix=".png", seed=2)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    options: dict[str, Any] = {"checkpoint": "demo", **other}
    if other.get("checkpoint") == "metaclip-tiny":
        options = {"checkpoint": tiny_config, "weights": tiny_weights}
    model = Counting(MetaCLIP(demo_model.ontology, **options))
    from autodistill_metaclip.labeling import label_folder

    label_folder(model, tmp_path / "in", ".png", tmp_path / "out", overwrite=True, progress=False)
    assert len(model.inputs) == 12  # every image embedded again, by this model
    stores = list((tmp_path / "out" / ".autodistill-metaclip" / "embeddings").iterdir())
    assert len(stores) == 2  # each model's embeddings in a store of its own


def test_an_added_image_is_the_only_one_embedded_and_moves_few(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", {"red circle": 40, "blue square": 40})
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    before = {k: r["split"] for k, r in manifest(tmp_path / "out").items()}
    shutil.copy(tmp_path / "in" / "0000.png", tmp_path / "in" / "zz-new.png")
    counting = Counting(shapes_model)
    from autodistill_metaclip.labeling import label_folder

    label_folder(counting, tmp_path / "in", ".png", tmp_path / "out", resume=True, progress=False)
    assert [f.key for f in counting.inputs] == ["zz-new.png"]
    after = {k: r["split"] for k, r in manifest(tmp_path / "out").items()}
    assert sum(before[k] != after[k] for k in before) <= 2
    assert after["zz-new.png"] == after["0000.png"]  # a copy joins its original's group


def test_a_resume_with_nothing_new_writes_nothing(shapes_model: MetaCLIP, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    counting = Counting(shapes_model)
    from autodistill_metaclip.labeling import label_folder

    dataset = label_folder(counting, tmp_path / "in", ".png", tmp_path / "out", resume=True,
                           progress=False)  # fmt: skip
    assert counting.inputs == [] and len(dataset) == sum(
        r["status"] == "labeled" for r in manifest(tmp_path / "out").values()
    )
    changed = [
        p for p in (tmp_path / "out").rglob("*")
        if p.is_file() and p.name not in ("run.json", "lock")
        and p.stat().st_mtime_ns != stamps.get(p)
    ]  # fmt: skip
    assert changed == []  # no page, no manifest, no copy, no split work


def test_human_decisions_survive_a_re_derivation_where_their_class_exists(
    shapes_model: MetaCLIP, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_inputs(tmp_path / "in")
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    rows = manifest(tmp_path / "out")
    reds = [k for k, r in rows.items() if r["class"] == "red circle" and r["status"] == "labeled"]
    blues = [k for k, r in rows.items() if r["class"] == "blue square" and r["status"] == "labeled"]
    apply_corrections(tmp_path / "out", {"format": FORMAT, "corrections": [
        {"image": reds[0], "from": "red circle", "to": "green triangle"},
        {"image": blues[0], "from": "blue square", "to": "red circle"},
    ]})  # fmt: skip
    fewer = MetaCLIP({"a photo of a red circle": "red circle",
                      "a photo of a blue square": "blue square"}, checkpoint="demo")  # fmt: skip
    fewer.label(tmp_path / "in", ".png", tmp_path / "out", overwrite=True, progress=False)
    again = manifest(tmp_path / "out")
    assert (again[blues[0]]["class"], again[blues[0]]["decided"]) == ("red circle", "human")
    assert again[reds[0]]["decided"] == ""  # green triangle is gone: not applied ...
    assert "no longer apply" in caplog.text and reds[0] in caplog.text  # ... and reported
    kept = json.loads((tmp_path / "out" / ".autodistill-metaclip" / "decisions.json").read_text())
    assert set(kept["decisions"]) == {reds[0], blues[0]}  # kept, in case the class comes back


def test_rows_come_from_the_same_numbers_as_predict(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 24, suffix=".png", seed=8)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.9, progress=False)
    for key, row in manifest(tmp_path / "out").items():
        result = demo_model.predict(str(tmp_path / "in" / key), confidence=0.0)
        best = demo_model.classes[int(result.class_id[0])]
        assert row["class"] == best and abs(float(row["confidence"]) - result.confidence[0]) < 1e-5
        assert row["status"] == ("labeled" if result.confidence[0] >= 0.9 else "unlabeled")
    assert embedded(tmp_path / "out") == set(manifest(tmp_path / "out"))


def test_derive_rows_marks_failures_and_ranks_every_class_once() -> None:
    from autodistill_metaclip.inputs.sources import SourceFile

    files = [SourceFile("a.png", "", "1:1"), SourceFile("b.png", "", "1:1")]
    vectors = np.eye(3, dtype=np.float32)

    def probabilities(v: np.ndarray) -> np.ndarray:
        return np.array([[0.7, 0.0, 0.3]] * len(v), np.float32)  # class "x" listed twice

    rows, dropped = derive_rows(files, np.array([0, -1]), vectors, probabilities,
                                ["x", "x", "y"], 0.5, {"b.png": "broken"}, {})  # fmt: skip
    assert (rows["a.png"]["status"], rows["a.png"]["class"]) == ("labeled", "x")
    assert json.loads(rows["a.png"]["top"]) == [["x", 0.7], ["y", 0.3]]
    assert (rows["b.png"]["status"], rows["b.png"]["error"]) == ("failed", "broken")
    assert dropped == []


def test_decisions_apply_only_to_the_file_and_classes_they_were_made_for() -> None:
    rows = {k: new_row(k, "1:1", status="labeled", **{"class": "cat"}) for k in "abcd"}
    rows["d"]["status"] = "unlabeled"
    decisions = {
        "a": Decided("1:1", "dog"), "b": Decided("1:1", None), "c": Decided("9:9", "dog"),
        "d": Decided("1:1", "dog"), "e": Decided("1:1", "dog"),
    }  # fmt: skip
    dropped = apply_decisions(rows, decisions, ["cat", "dog"])
    assert (rows["a"]["class"], rows["a"]["decided"]) == ("dog", "human")
    assert rows["b"]["decided"] == "excluded"
    assert rows["c"]["decided"] == "" and dropped == ["c"]  # its file changed since
    # an unlabeled image given a class joins the dataset with it
    assert (rows["d"]["status"], rows["d"]["class"], rows["d"]["decided"]) == (
        "labeled", "dog", "human",
    )  # fmt: skip
    assert apply_decisions(rows, {"a": Decided("1:1", "horse")}, ["cat"]) == ["a"]


def test_a_threshold_per_class_labels_each_class_at_its_own(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", {"red circle": 10, "blue square": 10})
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "one", confidence=0.0, progress=False)
    rows = manifest(tmp_path / "one")
    reds = sorted(float(r["confidence"]) for r in rows.values() if r["class"] == "red circle")
    cut = reds[len(reds) // 2]  # half the red circles reach it
    per_class = {"red circle": cut, "*": 0.0}
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "two", confidence=per_class,
                       progress=False)  # fmt: skip
    for key, row in manifest(tmp_path / "two").items():
        p, best = float(rows[key]["confidence"]), rows[key]["class"]
        expected = "labeled" if p >= (cut if best == "red circle" else 0.0) else "unlabeled"
        assert row["status"] == expected, key
    with pytest.raises(ValueError, match="confidence: thresholds for 'dog', which are not"):
        shapes_model.label(tmp_path / "in", ".png", tmp_path / "x", confidence={"dog": 0.5})
