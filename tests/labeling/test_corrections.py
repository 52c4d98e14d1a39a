"""Human corrections: reassign or exclude labelled images, idempotently, keeping splits and
decisions through a resumed run; refused whole when any entry cannot apply."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.corrections import (
    FORMAT,
    SCHEMA,
    apply_corrections,
    correction_report,
    read_corrections,
)
from tests.helpers import manifest


def _corrections(*entries: tuple[str, str | None]) -> dict:
    return {"format": FORMAT, "corrections": [{"image": i, "to": t} for i, t in entries]}


def _labelled(dataset: Path) -> list[str]:
    return sorted(k for k, r in manifest(dataset).items() if r["status"] == "labeled")


def test_fix_moves_marks_keeps_splits_and_is_idempotent(
    demo_model: MetaCLIP, demo_dataset: Path, tmp_path: Path
) -> None:
    rows = manifest(demo_dataset)
    first, second, third = _labelled(demo_dataset)[:3]
    other = next(c for c in demo_model.classes if c != rows[first]["class"])
    corrections = tmp_path / "corrections.json"
    corrections.write_text(
        json.dumps(_corrections((first, other), (second, None), (third, rows[third]["class"])))
    )
    splits_before = {k: r["split"] for k, r in rows.items()}

    assert apply_corrections(demo_dataset, corrections) == {
        "reassigned": 2,
        "excluded": 1,
        "labelled": 0,
        "unchanged": 0,
    }
    after = manifest(demo_dataset)
    assert (after[first]["class"], after[first]["decided"]) == (other, "human")
    assert after[second]["decided"] == "excluded" and after[second]["split"] == ""
    assert after[third]["decided"] == "human"
    # the demo's class names are letters and spaces: each class folder is named as the class
    assert (demo_dataset / rows[first]["split"] / other / first).is_file()
    assert not list(demo_dataset.rglob(second))
    assert {k: r["split"] for k, r in after.items() if k != second} == {
        k: s for k, s in splits_before.items() if k != second
    }

    snapshot = {
        p: p.read_bytes() for p in demo_dataset.rglob("*") if p.is_file() and "review" not in p.name
    }
    assert apply_corrections(demo_dataset, corrections) == {
        "reassigned": 0,
        "excluded": 0,
        "labelled": 0,
        "unchanged": 3,
    }
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    # a resumed label() run keeps the human decisions
    demo_model.label(
        tmp_path / "in", ".png", demo_dataset, confidence=0.9, resume=True, progress=False
    )
    again = manifest(demo_dataset)
    assert again[first]["class"] == other and again[second]["decided"] == "excluded"


def test_the_report_counts_what_a_human_changed_per_model_class(demo_dataset: Path) -> None:
    rows = manifest(demo_dataset)
    labelled = _labelled(demo_dataset)
    first, second, third = labelled[:3]
    klass = rows[first]["class"]
    other = next(c for c in synthetic.class_names() if c != klass)
    apply_corrections(
        demo_dataset, _corrections((first, other), (second, None), (third, rows[third]["class"]))
    )
    report = correction_report(demo_dataset)
    # written out from the manifest as labelled: the model's classes, and what was changed
    per_class = Counter(rows[k]["class"] for k in labelled)
    reassigned = {klass: 1}
    excluded = {rows[second]["class"]: 1}
    assert set(report["classes"]) == set(per_class)
    for name, count in per_class.items():
        changed = reassigned.get(name, 0) + excluded.get(name, 0)
        assert report["classes"][name] == {
            "labeled": count,
            "reassigned": reassigned.get(name, 0),
            "excluded": excluded.get(name, 0),
            "kept": (count - changed) / count,
        }
    assert report["total"] == {
        "labeled": len(labelled),
        "reassigned": 1,
        "excluded": 1,
        "kept": (len(labelled) - 2) / len(labelled),
    }


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (("nope.png", "red circle"), "'nope.png' is not in the manifest"),
        (("broken.png", "red circle"), "'broken.png' is failed"),
        (("00001_red_square.png", "purple"), "expected one of"),
    ],
)
def test_fix_refuses_what_it_cannot_apply(demo_dataset: Path, entry, match) -> None:
    before = (demo_dataset / "manifest.csv").read_bytes()
    with pytest.raises(ValueError, match=match):
        apply_corrections(demo_dataset, _corrections((_labelled(demo_dataset)[0], None), entry))
    assert (demo_dataset / "manifest.csv").read_bytes() == before  # not even the first entry


def test_an_excluded_image_can_be_brought_back(demo_dataset: Path) -> None:
    rows = manifest(demo_dataset)
    key = _labelled(demo_dataset)[0]
    original = next(demo_dataset.rglob(key)).read_bytes()
    apply_corrections(demo_dataset, _corrections((key, None)))
    assert not list(demo_dataset.rglob(key))
    apply_corrections(demo_dataset, _corrections((key, rows[key]["class"])))
    (copy,) = demo_dataset.rglob(key)
    assert copy.read_bytes() == original and copy.parent.name == rows[key]["class"]
    assert manifest(demo_dataset)[key]["decided"] == "human"


def test_a_stale_correction_is_refused(demo_dataset: Path) -> None:
    rows = manifest(demo_dataset)
    key = _labelled(demo_dataset)[0]
    others = [c for c in synthetic.class_names() if c != rows[key]["class"]]
    stale = {"format": FORMAT, "corrections": [{"image": key, "from": others[0], "to": others[1]}]}
    with pytest.raises(ValueError, match="as when the page was written"):
        apply_corrections(demo_dataset, stale)


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset_folder: not a dataset written by label"):
        apply_corrections(tmp_path, _corrections())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], 'expected an object with "format"'),
        ({"corrections": []}, 'expected an object with "format"'),
        ({"format": "autodistill-metaclip corrections 2", "corrections": []}, '"format"'),
        ({"format": FORMAT}, 'expected a list under "corrections"'),
        ({"format": FORMAT, "corrections": {}}, 'expected a list under "corrections"'),
        ({"format": FORMAT, "corrections": ["a.png"]}, r"corrections\[0\]: expected"),
        ({"format": FORMAT, "corrections": [{"to": "cat"}]}, r"corrections\[0\]: expected"),
        ({"format": FORMAT, "corrections": [{"image": "a"}]}, r"corrections\[0\]: expected"),
        ({"format": FORMAT, "corrections": [{"image": "a", "to": 3}]}, r"\[0\]\.to: expected"),
        ({"format": FORMAT, "corrections": [{"image": "a", "to": "b", "from": 1}]}, r"\.from"),
    ],
)
def test_a_malformed_corrections_file_is_refused(data, match: str, tmp_path: Path) -> None:
    path = tmp_path / "corrections.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        read_corrections(path)
    if isinstance(data, dict):  # the same data given as parsed JSON
        with pytest.raises(ValueError, match=match):
            read_corrections(data)
    with pytest.raises(jsonschema.ValidationError):  # the published schema refuses it too
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))


def test_corrections_are_read_from_a_file_or_data(tmp_path: Path) -> None:
    data = {
        "format": FORMAT,
        "corrections": [
            {"image": "a.png", "from": "cat", "to": "dog"},
            {"image": "b.png", "to": None},
        ],
    }
    expected = {"a.png": ("cat", "dog"), "b.png": (None, None)}
    assert read_corrections(data) == expected
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))  # the published schema agrees
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    assert read_corrections(path) == expected
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"corrections: .*c\.json.* is not JSON"):
        read_corrections(path)
    with pytest.raises(ValueError, match=r"absent\.json' cannot be read \(file not found\)"):
        read_corrections(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"format": "x", "corrections": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001,
        '{"format": "x", "corrections": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    ],
)
def test_corrections_nested_too_deeply_are_refused_naming_the_file(tmp_path, nested) -> None:
    path = tmp_path / "deep.json"
    path.write_text(nested)
    with pytest.raises(ValueError, match=r"^corrections: .*deep\.json' is nested too deeply"):
        read_corrections(path)


def test_two_corrections_of_one_image_are_refused(tmp_path: Path) -> None:
    data = {
        "format": FORMAT,
        "corrections": [
            {"image": "a.png", "to": "dog"},
            {"image": "b.png", "to": "cat"},
            {"image": "a.png", "to": None},
        ],
    }
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(data))
    for given in (data, path):
        with pytest.raises(
            ValueError, match=r"corrections\[2\]: .*'a\.png' is also corrections\[0\]"
        ):
            read_corrections(given)


def test_corrections_of_another_type_are_refused() -> None:
    for wrong in ([{"image": "a.png", "to": None}], 3, None):
        with pytest.raises(TypeError, match="corrections: expected a file path or a parsed JSON"):
            read_corrections(wrong)  # type: ignore[arg-type]


def test_an_unlabeled_image_given_a_class_joins_the_dataset(
    demo_model: MetaCLIP, demo_dataset: Path, tmp_path: Path
) -> None:
    rows = manifest(demo_dataset)
    image = next(k for k, r in rows.items() if r["status"] == "unlabeled")
    given = {"image": image, "from": None, "to": "green square"}
    assert apply_corrections(demo_dataset, {"format": FORMAT, "corrections": [given]}) == {
        "reassigned": 0, "excluded": 0, "labelled": 1, "unchanged": 0,
    }  # fmt: skip
    row = manifest(demo_dataset)[image]
    assert (row["status"], row["class"], row["decided"]) == ("labeled", "green square", "human")
    copy = demo_dataset / row["split"] / "green square" / image
    assert copy.read_bytes() == (tmp_path / "in" / image).read_bytes()  # read again, checked
    demo_model.label(tmp_path / "in", ".png", demo_dataset, confidence=0.9, resume=True,
                     progress=False)  # fmt: skip
    assert manifest(demo_dataset)[image] == row  # the decision holds
    excluded = {"image": image, "from": None, "to": None}
    other = next(k for k, r in rows.items() if r["status"] == "unlabeled" and k != image)
    with pytest.raises(ValueError, match="is unlabeled, so not in the dataset: give it a class"):
        apply_corrections(demo_dataset, {"format": FORMAT, "corrections": [
            {**excluded, "image": other}]})  # fmt: skip
