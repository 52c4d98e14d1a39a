"""Pictures are valid PNGs of the size asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, plots, synthetic


def _png(figure, path: Path, dpi: int = 100) -> Image.Image:
    plots.save(figure, path, dpi=dpi)
    image = Image.open(path)
    image.verify()
    image = Image.open(path)
    assert image.format == "PNG"
    return image


def test_probability_chart(demo_model: MetaCLIP, tmp_path: Path) -> None:
    picture = synthetic.make_image("blue", "circle", seed=2)
    figure = plots.probability_chart(
        picture, demo_model.predict(picture, confidence=0.0), demo_model.ontology.classes(), top=5
    )
    assert len(figure.axes[1].patches) == 5
    assert [t.get_text() for t in figure.axes[1].get_yticklabels()][-1] == "blue circle"
    assert _png(figure, tmp_path / "bars.png").size == (800, 350)
    assert _png(figure, tmp_path / "bars2x.png", dpi=200).size == (1600, 700)


def test_grids_and_sheet(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 14, seed=4)
    (tmp_path / "in" / "broken.png").write_bytes(b"")
    dataset = demo_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    grid = _png(plots.labelled_grid(dataset, limit=8, columns=4), tmp_path / "grid.png")
    assert grid.size == (800, 440)
    index = EmbeddingIndex.build(demo_model, tmp_path / "in", progress=False)
    hits = index.search(demo_model, "a photo of a red circle", k=3)
    assert _png(plots.search_grid(hits, query="red circle"), tmp_path / "s.png").size == (600, 240)
    sheet = _png(plots.cluster_sheet(index.clusters(3), per_cluster=4), tmp_path / "c.png")
    assert sheet.size == (800, 480)
    first_two = plots.cluster_sheet(index.clusters(3), per_cluster=4, limit=2)
    assert _png(first_two, tmp_path / "c2.png").size == (800, 320)
    tiles = [(tmp_path / "in" / "broken.png", "broken"), (np.zeros((8, 8, 3), np.uint8), "black")]
    assert _png(plots.image_grid(tiles, columns=2), tmp_path / "t.png").size == (400, 200)
