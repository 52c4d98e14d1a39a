"""Seeing, fixing and measuring labels: the review page's data, corrections, evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from autodistill.detection import CaptionOntology
from click.testing import CliRunner
from PIL import Image

from autodistill_metaclip import ExampleOntology, MetaCLIP, synthetic
from autodistill_metaclip.cli import main
from autodistill_metaclip.evaluation import evaluate, report
from autodistill_metaclip.labeling.corrections import FORMAT, apply_corrections, correction_report
from autodistill_metaclip.labeling.manifest import read_manifest
from autodistill_metaclip.labeling.review import review_data

SPLITS = ("train", "valid", "test")


@pytest.fixture
def dataset(demo_model: MetaCLIP, tmp_path: Path) -> Path:
    """60 demo images, two of them the same picture (a near-duplicate pair), one unreadable."""
    synthetic.write_folder(tmp_path / "in", 60, suffix=".png", seed=3)
    shutil.copy(tmp_path / "in" / "00000_red_circle.png", tmp_path / "in" / "00000_copy.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.9, progress=False)
    return tmp_path / "out"


def _corrections(*entries: tuple[str, str | None]) -> dict:
    return {"format": FORMAT, "corrections": [{"image": i, "to": t} for i, t in entries]}


def test_review_data_orders_groups_and_explains(dataset: Path) -> None:
    data = review_data(dataset)
    rows = read_manifest(dataset / "manifest.csv")
    images = {image["key"]: image for image in data["images"]}
    assert set(images) == set(rows) and data["classes"] and list(data["splits"]) == list(SPLITS)
    labelled = [r for r in rows.values() if r["status"] == "labeled"]
    assert sum(sum(c.values()) for c in data["counts"].values()) == len(labelled)
    assert images["broken.png"]["status"] == "failed"
    assert (
        "not an image file" in images["broken.png"]["error"] and not images["broken.png"]["thumb"]
    )
    for key, image in images.items():
        if image["status"] != "failed":  # a real, small JPEG of the image
            assert image["thumb"].startswith("data:image/jpeg;base64,")
            assert len(image["thumb"]) < 8000
            assert image["top"][0][0] == json.loads(rows[key]["top"])[0][0]
    (pair,) = [
        g
        for g in data["duplicates"]
        if "00000_copy.png" in {data["images"][n]["key"] for n in g["images"]}
    ]
    assert {data["images"][n]["key"] for n in pair["images"]} >= {
        "00000_red_circle.png",
        "00000_copy.png",
    }
    assert pair["cross"] == (len({data["images"][n]["split"] for n in pair["images"]}) > 1)
    for group in data["confusions"]:
        for n in group["images"]:
            top = data["images"][n]["top"]
            assert sorted([top[0][0], top[1][0]]) == group["pair"] and top[0][1] - top[1][1] < 0.15


def test_fix_moves_marks_keeps_splits_and_is_idempotent(demo_model, dataset, tmp_path) -> None:
    rows = read_manifest(dataset / "manifest.csv")
    labelled = sorted(k for k, r in rows.items() if r["status"] == "labeled")
    first, second, third = labelled[:3]
    other = next(c for c in demo_model.classes if c != rows[first]["class"])
    corrections = tmp_path / "corrections.json"
    corrections.write_text(
        json.dumps(_corrections((first, other), (second, None), (third, rows[third]["class"])))
    )
    splits_before = {k: r["split"] for k, r in rows.items()}

    assert apply_corrections(dataset, corrections) == {
        "reassigned": 2,
        "excluded": 1,
        "unchanged": 0,
    }
    after = read_manifest(dataset / "manifest.csv")
    assert (after[first]["class"], after[first]["decided"]) == (other, "human")
    assert after[second]["decided"] == "excluded" and after[second]["split"] == ""
    assert after[third]["decided"] == "human"
    folders = {c: c for c in demo_model.classes}  # the demo's class names are safe folder names
    assert (dataset / rows[first]["split"] / folders[other] / first).is_file()
    assert not list(dataset.rglob(second))
    assert {k: r["split"] for k, r in after.items() if k != second} == {
        k: s for k, s in splits_before.items() if k != second
    }
    report_ = correction_report(dataset)
    assert report_["total"]["reassigned"] == 1 and report_["total"]["excluded"] == 1

    snapshot = {
        p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and "review" not in p.name
    }
    assert apply_corrections(dataset, corrections) == {
        "reassigned": 0,
        "excluded": 0,
        "unchanged": 3,
    }
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    # a resumed label() run keeps the human decisions
    demo_model.label(tmp_path / "in", ".png", dataset, confidence=0.9, resume=True, progress=False)
    again = read_manifest(dataset / "manifest.csv")
    assert again[first]["class"] == other and again[second]["decided"] == "excluded"


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (("nope.png", "red circle"), "'nope.png' is not in the manifest"),
        (("broken.png", "red circle"), "'broken.png' is failed"),
        (("00001_red_square.png", "purple"), "expected one of"),
    ],
)
def test_fix_refuses_what_it_cannot_apply(dataset: Path, entry, match) -> None:
    before = (dataset / "manifest.csv").read_bytes()
    with pytest.raises(ValueError, match=match):
        apply_corrections(dataset, _corrections(entry))
    assert (dataset / "manifest.csv").read_bytes() == before


def _hand_labelled(folder: Path, n: int, seed: int) -> None:
    for path, name in synthetic.write_folder(folder / "_", n, seed=seed).items():
        (folder / name).mkdir(exist_ok=True)
        path.rename(folder / name / path.name)
    (folder / "_").rmdir()


def test_evaluate_scores_and_compares_ontologies(demo_model, demo_ontology, tmp_path) -> None:
    _hand_labelled(tmp_path / "truth", 48, seed=31)
    prompts = dict(zip(demo_ontology.prompts(), demo_ontology.classes(), strict=True))
    names = list(prompts.values())
    # The same prompts with two classes' names swapped: a worse ontology, by construction.
    swapped = {p: {names[0]: names[1], names[1]: names[0]}.get(c, c) for p, c in prompts.items()}
    worse = MetaCLIP(CaptionOntology(swapped), checkpoint="demo")
    good, bad = evaluate(
        {"demo": demo_model, "swapped": worse}, tmp_path / "truth", target_accuracy=0.9
    )
    truth = {p.name: p.parent.name for p in (tmp_path / "truth").rglob("*.png")}
    predicted = demo_model.predict(sorted((tmp_path / "truth").rglob("*.png")), 0.0)
    expected = np.mean(
        [
            demo_model.classes[int(c.class_id[0])] == truth[p.name]
            for p, c in zip(sorted((tmp_path / "truth").rglob("*.png")), predicted, strict=True)
        ]
    )
    assert good.accuracy == pytest.approx(expected) and good.accuracy > 0.8
    assert bad.accuracy < good.accuracy
    assert bad.per_class[names[0]]["recall"] < good.per_class[names[0]]["recall"]
    assert good.confusion.sum() == 48 and np.trace(good.confusion) == round(good.accuracy * 48)
    assert (
        good.threshold is not None
        and good.kept_accuracy[good.thresholds >= good.threshold][-1] >= 0.9
    )
    assert good.coverage[-1] == 1.0 and good.kept_accuracy[-1] == pytest.approx(good.accuracy)
    text = report([good, bad])
    assert (
        f"demo: accuracy {good.accuracy:.3f}" in text
        and f"{names[0]}: demo" in text
        and "*" in text
    )


def test_evaluate_an_example_ontology(demo_model, tmp_path) -> None:
    _hand_labelled(tmp_path / "truth", 24, seed=5)
    examples = {}
    for sample in synthetic.samples(24, seed=77):
        examples.setdefault(sample.label, []).append(sample.image)
    model = MetaCLIP(ExampleOntology(examples), checkpoint="demo")
    (result,) = evaluate(model, tmp_path / "truth")
    assert result.accuracy > 0.5 and set(result.per_class) == set(examples)


def test_evaluate_refuses_a_folder_that_is_not_a_class(demo_model, tmp_path) -> None:
    (tmp_path / "truth" / "unicorn").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "truth" / "unicorn" / "u.png")
    with pytest.raises(ValueError, match="'unicorn' are not classes of 'model'"):
        evaluate(demo_model, tmp_path / "truth")


def test_cli_review_fix_evaluate(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    page = tmp_path / "page.html"
    result = runner.invoke(main, ["review", str(dataset), "-o", str(page)])
    assert result.exit_code == 0 and page.stat().st_size > 10_000
    rows = read_manifest(dataset / "manifest.csv")
    key = next(k for k, r in rows.items() if r["status"] == "labeled")
    corrections = tmp_path / "c.json"
    corrections.write_text(json.dumps(_corrections((key, None))))
    result = runner.invoke(main, ["fix", str(dataset), str(corrections), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["excluded"] == 1
    _hand_labelled(tmp_path / "truth", 24, seed=8)
    args = ["evaluate", str(tmp_path / "truth"), "-m", "demo", "--plot", str(tmp_path / "e.png")]
    classes = [a for c in synthetic.class_names() for a in ("-c", c)]
    result = runner.invoke(main, [*args, *classes])
    assert result.exit_code == 0, result.output
    assert "classes: accuracy" in result.output and Image.open(tmp_path / "e.png").size[0] > 400


def test_an_excluded_image_can_be_brought_back(dataset: Path) -> None:
    rows = read_manifest(dataset / "manifest.csv")
    key = next(k for k, r in rows.items() if r["status"] == "labeled")
    original = next(dataset.rglob(key)).read_bytes()
    apply_corrections(dataset, _corrections((key, None)))
    assert not list(dataset.rglob(key))
    apply_corrections(dataset, _corrections((key, rows[key]["class"])))
    (copy,) = dataset.rglob(key)
    assert copy.read_bytes() == original and copy.parent.name == rows[key]["class"]
    assert read_manifest(dataset / "manifest.csv")[key]["decided"] == "human"


def test_a_stale_correction_is_refused(dataset: Path) -> None:
    rows = read_manifest(dataset / "manifest.csv")
    key = next(k for k, r in rows.items() if r["status"] == "labeled")
    others = [c for c in synthetic.class_names() if c != rows[key]["class"]]
    stale = {"format": FORMAT, "corrections": [{"image": key, "from": others[0], "to": others[1]}]}
    with pytest.raises(ValueError, match="as when the page was written"):
        apply_corrections(dataset, stale)


@pytest.mark.parametrize("planted", ["/tmp/victim-{n}.txt", "../victim-{n}.txt", "train/x"])
def test_a_tampered_journal_touches_nothing_outside(dataset: Path, tmp_path, planted) -> None:
    victim = tmp_path / f"victim-{len(planted)}.txt"
    victim.write_text("keep me")
    relative = planted.format(n=len(planted))
    if relative.startswith("/"):
        relative = str(victim)
    journal_file = dataset / ".autodistill-metaclip" / "written.json"
    journal = json.loads(journal_file.read_text())
    journal[relative] = ["00001_red_square.png", "1:1"]
    journal_file.write_text(json.dumps(journal))
    with pytest.raises(ValueError, match=r"journal .* is malformed"):
        apply_corrections(dataset, _corrections())
    assert victim.read_text() == "keep me"
