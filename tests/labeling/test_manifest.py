"""The manifest: rows written and read back exactly (spreadsheet formulas neutralised
reversibly), torn and invalid rows recognised and redone, a prediction's cells."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.manifest import (
    COLUMNS,
    Decision,
    append_rows,
    model_class,
    new_row,
    prediction_cells,
    read_manifest,
    top_classes,
    valid_row,
    write_rows,
)
from autodistill_metaclip.results import Prediction
from tests.helpers import manifest, resume_run, same_as_fresh

RISKY = ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tTAB", "\rCR", "'quoted", "''twice", "plain", ""]


def _row(key: str, **cells: str) -> dict[str, str]:
    return {**dict.fromkeys(COLUMNS, ""), "image": key, **cells}


def test_columns_and_decisions() -> None:
    assert COLUMNS == (
        "image", "status", "class", "confidence", "split", "error", "stamp", "top", "decided",
    )  # fmt: skip
    assert [d.value for d in Decision] == ["", "human", "excluded"]
    assert str(Decision.HUMAN) == "human" and Decision("excluded") is Decision.EXCLUDED


def test_formula_cells_round_trip_and_are_inert_on_disk(tmp_path: Path) -> None:
    rows = [
        _row(f"{n}{cell}.png" if n else cell or "x.png", **{"class": cell, "error": cell})
        for n, cell in enumerate(RISKY)
    ]
    path = tmp_path / "manifest.csv"
    write_rows(path, rows)
    assert read_manifest(path) == {r["image"]: r for r in rows}
    with open(path, encoding="utf-8", newline="") as f:
        raw = list(csv.DictReader(f))
    cells = [row[c] for row in raw for c in ("image", "class", "error") if row[c]]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert {row["class"] for row in raw} == {
        "'=1+1", "'+SUM(A1)", "'-2", "'@cmd", "'\tTAB", "'\rCR", "''quoted", "'''twice",
        "plain", "",
    }  # fmt: skip
    appended = tmp_path / "appended.csv"
    append_rows(appended, rows[:4])
    append_rows(appended, rows[4:])
    assert read_manifest(appended) == read_manifest(path)
    assert appended.read_bytes() == path.read_bytes()  # one header, the same rows


def test_spreadsheet_formulas_are_neutralised_reversibly(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("=HYPERLINK(evil).png", "+1.png", "-2.png", "@SUM.png", "'quoted.png"):
        synthetic.make_image("red", "circle", seed=len(name)).save(source / name)
    model = MetaCLIP(
        CaptionOntology({"a photo of a red circle": "=cmd|' /C calc'!A0", "a photo": "other"}),
        checkpoint="demo",
    )
    model.label(source, ".png", tmp_path / "out", confidence=0.0, progress=False)
    with open(tmp_path / "out" / "manifest.csv", encoding="utf-8", newline="") as f:
        raw = list(csv.DictReader(f))
    cells = [row[c] for row in raw for c in ("image", "class") if row[c]]
    assert all(not c.startswith(("=", "+", "-", "@")) for c in cells)
    assert "'=HYPERLINK(evil).png" in cells and "''quoted.png" in cells
    rows = manifest(tmp_path / "out")
    assert sorted(rows) == sorted(p.name for p in source.iterdir())
    assert {r["class"] for r in rows.values()} <= {"=cmd|' /C calc'!A0", "other"}


def test_a_torn_last_row_is_ended_not_merged(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    append_rows(path, [_row("a.png", status="labeled")])
    with open(path, "ab") as f:
        f.write(b"b.png,label")  # a crash in the middle of a row
    append_rows(path, [_row("c.png", status="unlabeled")])
    rows = read_manifest(path)
    assert rows["a.png"]["status"] == "labeled" and rows["c.png"]["status"] == "unlabeled"
    assert rows["b.png"]["status"] == "label" and rows["b.png"]["stamp"] == ""  # not whole
    assert not valid_row(rows["b.png"], {"cat"}, {""})


def test_torn_and_invalid_rows_are_redone(finished: Path, shapes_model: MetaCLIP) -> None:
    path = finished / "out" / "manifest.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].split(",")[0] + ",labeled,yel"  # torn by a full disk
    lines[5] = lines[5].replace(",labeled,", ",labeled,").rsplit(",", 3)[0] + ",nan,train,,x"
    path.write_text("\n".join(lines) + "\n0099.png,unlabeled,yel", encoding="utf-8")
    resume_run(shapes_model, finished)
    same_as_fresh(shapes_model, finished)


GOOD = {
    "image": "a.png",
    "status": "labeled",
    "class": "cat",
    "confidence": "0.700000",
    "split": "train",
    "error": "",
    "stamp": "10:20",
    "top": '[["cat", 0.7], ["dog", 0.3]]',
    "decided": "",
}


@pytest.mark.parametrize(
    "change",
    [
        {"status": "done"},
        {"status": ""},
        {"stamp": ""},
        {"split": "holdout"},
        {"decided": "robot"},
        {"class": "horse"},
        {"confidence": "high"},
        {"confidence": "nan"},
        {"confidence": "1.5"},
        {"confidence": "-0.1"},
        {"top": "[[cat"},
        {"top": '[["cat"]]'},
        {"top": '[["cat", "most"]]'},
        {"status": "failed", "error": ""},
        {"status": "unlabeled", "decided": "human"},
        {"status": "failed", "error": "broken", "decided": "excluded"},
    ],
    ids=lambda change: ",".join(f"{k}={v!r}" for k, v in change.items()),
)
def test_valid_row_rejects_a_bad_row(change: dict[str, str]) -> None:
    assert valid_row(GOOD, {"cat", "dog"}, {"train", "valid", "test", ""})
    assert not valid_row({**GOOD, **change}, {"cat", "dog"}, {"train", "valid", "test", ""})


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"decided": "human", "class": "dog"},
        {"decided": "excluded", "split": ""},
        {"status": "unlabeled", "split": ""},
        {"status": "failed", "class": "", "confidence": "", "top": "", "error": "empty file"},
        {"confidence": "1.0"},
        {"confidence": "0"},
    ],
    ids=str,
)
def test_valid_row_accepts_a_good_row(change: dict[str, str]) -> None:
    assert valid_row({**GOOD, **change}, {"cat", "dog"}, {"train", "valid", "test", ""})


def _prediction(error: Exception | None = None, threshold: float = 0.5) -> Prediction:
    if error is not None:
        empty = np.zeros(0, np.int64)
        return Prediction(
            4,
            "x.png",
            ["cat", "dog", "bird", "fish"],
            empty,
            empty.astype(np.float32),
            threshold,
            error=error,
        )
    return Prediction(
        4, "x.png", ["cat", "dog", "bird", "fish"], np.array([1, 0, 3, 2]),
        np.array([0.625, 0.25, 0.0625, 0.0625], np.float32), threshold,
    )  # fmt: skip


def test_prediction_cells_and_new_row() -> None:
    cells = prediction_cells(_prediction())
    assert cells == {
        "status": "labeled",
        "class": "dog",
        "confidence": "0.625000",
        "top": '[["dog", 0.625], ["cat", 0.25], ["fish", 0.0625]]',
        "error": "",
    }
    assert prediction_cells(_prediction(threshold=0.75))["status"] == "unlabeled"
    assert prediction_cells(_prediction(ValueError("'x.png': empty"))) == {
        "status": "failed",
        "class": "",
        "confidence": "",
        "top": "",
        "error": "'x.png': empty",
    }
    row = new_row("sub/x.png", "123:456", **cells)
    assert row == {
        "image": "sub/x.png",
        "status": "labeled",
        "class": "dog",
        "confidence": "0.625000",
        "split": "",
        "error": "",
        "stamp": "123:456",
        "top": '[["dog", 0.625], ["cat", 0.25], ["fish", 0.0625]]',
        "decided": "",
    }
    assert list(row) == list(COLUMNS)
    assert valid_row(row, {"cat", "dog", "bird", "fish"}, {""})
    assert top_classes(row) == [("dog", 0.625), ("cat", 0.25), ("fish", 0.0625)]
    assert model_class({**row, "class": "cat", "decided": "human"}) == "dog"
    assert model_class({**row, "top": ""}) == "dog"  # no top: the class column


def test_reading_a_manifest(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "absent.csv") == {}
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(COLUMNS).encode() + b"\r\ncaf\xe9.png,labeled\r\n")
    with pytest.raises(ValueError, match=r"manifest: .*latin\.csv.* is not UTF-8 CSV"):
        read_manifest(latin)
    short = tmp_path / "short.csv"
    short.write_text("image,status\r\na.png,failed\r\n,unlabeled\r\n", encoding="utf-8")
    assert read_manifest(short) == {"a.png": _row("a.png", status="failed")}  # no key: dropped
    with pytest.raises(ValueError, match=r"manifest: .* is a directory"):
        read_manifest(tmp_path)
