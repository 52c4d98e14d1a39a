"""The review page's data, checked against the manifest it is made from: counts per split,
thumbnails, likely confusions and near-duplicate groups."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.review import review_data, write_review
from tests.helpers import SPLITS, manifest


def test_review_data_counts_explains_and_groups(demo_dataset: Path) -> None:
    data = review_data(demo_dataset)
    rows = manifest(demo_dataset)
    images = {image["key"]: image for image in data["images"]}
    assert set(images) == set(rows) and list(data["splits"]) == list(SPLITS)
    assert sorted(data["classes"]) == sorted(synthetic.class_names())
    expected_counts = Counter(
        (r["split"], r["class"]) for r in rows.values() if r["status"] == "labeled"
    )
    assert {
        (split, name): n for split, c in data["counts"].items() for name, n in c.items() if n
    } == dict(expected_counts)
    assert images["broken.png"]["status"] == "failed"
    assert "not an image file" in images["broken.png"]["error"]
    assert not images["broken.png"]["thumb"]
    for key, image in images.items():
        row = rows[key]
        assert (image["status"], image["class"], image["split"]) == (
            row["status"], row["class"], row["split"],
        )  # fmt: skip
        if image["status"] != "failed":  # a real, small JPEG of the image
            assert image["thumb"].startswith("data:image/jpeg;base64,")
            assert len(image["thumb"]) < 8000
            assert [[c, p] for c, p in image["top"]] == json.loads(row["top"])
    (pair,) = [
        g for g in data["duplicates"]
        if "00000_copy.png" in {data["images"][n]["key"] for n in g["images"]}
    ]  # fmt: skip
    members = {data["images"][n]["key"] for n in pair["images"]}
    assert members >= {"00000_red_circle.png", "00000_copy.png"}
    assert pair["cross"] == (len({rows[k]["split"] for k in members}) > 1)


def test_confusions_are_the_images_whose_top_two_are_close(
    tmp_path: Path,
) -> None:
    """Two prompts that say nearly the same thing split the red circles' probability between
    them: those images are listed under their class pair, the largest pair first, each group
    closest first; the manifest's top column says which they are."""
    model = MetaCLIP(
        {
            "a photo of a red circle": "red circle",
            "a photo of a red circle.": "round red thing",
            "a photo of a blue square": "blue square",
        },
        checkpoint="demo",
    )
    synthetic.write_folder(tmp_path / "in", 24, seed=5)
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    rows = manifest(tmp_path / "out")

    expected: dict[tuple[str, ...], list[tuple[float, str]]] = defaultdict(list)
    for key, row in rows.items():
        (first, p1), (second, p2), *_ = json.loads(row["top"])
        if p1 - p2 < 0.15:
            expected[tuple(sorted((first, second)))].append((p1 - p2, key))
    assert ("red circle", "round red thing") in expected  # the case this test is about

    data = review_data(tmp_path / "out")
    got = {
        tuple(g["pair"]): [data["images"][n]["key"] for n in g["images"]]
        for g in data["confusions"]
    }
    assert got == {pair: [k for _, k in sorted(members)] for pair, members in expected.items()}
    sizes = [len(g["images"]) for g in data["confusions"]]
    assert sizes == sorted(sizes, reverse=True)


def test_the_page_is_one_file_with_names_as_text(demo_dataset: Path, tmp_path: Path) -> None:
    page = write_review(demo_dataset, tmp_path / "page.html")
    html = page.read_text(encoding="utf-8")
    assert page == tmp_path / "page.html" and html.lower().startswith("<!doctype html>")
    assert "/*DATA*/null" not in html and "00000_copy.png" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched: opens offline
