"""The embedding index: search, near-duplicates, incremental updates, persistence, opening
a labelled dataset's embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageEnhance

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from tests.helpers import names_in, opened_files


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 shapes, plus three near-duplicates of one extra image (``query.png``, kept aside)."""
    root = tmp_path_factory.mktemp("index")
    synthetic.write_folder(root / "photos", 120, seed=3)
    original = synthetic.make_image("red", "circle", size=128, seed=999)
    original.save(root / "query.png")
    original.save(root / "photos" / "planted_original.png")
    original.resize((100, 100)).save(root / "photos" / "planted_small.png")
    original.save(root / "photos" / "planted_q60.jpg", quality=60)
    ImageEnhance.Brightness(original).enhance(1.1).save(root / "photos" / "planted_bright.png")
    return root


@pytest.fixture(scope="module")
def index(demo_model: MetaCLIP, folder: Path) -> EmbeddingIndex:
    return EmbeddingIndex.build(demo_model, folder / "photos", progress=False)


PLANTED = {"planted_original.png", "planted_small.png", "planted_q60.jpg", "planted_bright.png"}


def test_image_search_finds_planted_near_duplicates_first(demo_model, index, folder) -> None:
    hits = index.search(demo_model, folder / "query.png", k=6)
    assert {h.path.name for h in hits[:4]} == PLANTED
    assert hits[4].path.name not in PLANTED and hits[3].score > hits[4].score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_text_search(demo_model, index) -> None:
    hits = index.search(demo_model, "a photo of a blue triangle", k=5)
    assert all("blue_triangle" in h.path.name for h in hits)


def test_duplicates_group_the_planted_images(index) -> None:
    groups = index.duplicates(0.998)
    assert {p.name for p in groups[0]} == PLANTED or any(
        {p.name for p in g} == PLANTED for g in groups
    )
    assert not any(PLANTED & {p.name for p in g} and {p.name for p in g} != PLANTED for g in groups)


def test_duplicates_do_not_chain_through_a_drift(index) -> None:
    angles = np.linspace(0, 1.0, 400)  # each image 0.998 from the next, the ends 0.54 apart
    drift = np.zeros((400, 512), np.float32)
    drift[:, 0], drift[:, 1] = np.cos(angles), np.sin(angles)
    frames = EmbeddingIndex(
        "/frames", [f"{i:03d}.png" for i in range(400)], drift, ["0"] * 400, index.model_info
    )
    groups = frames.duplicate_keys(0.99)
    assert len(groups) > 5 and max(map(len, groups)) < 100  # chained, it would be one of 400
    rows = {key: i for i, key in enumerate(frames.keys)}
    for group in groups:
        leader = drift[rows[group[0]]]
        assert min(float(drift[rows[k]] @ leader) for k in group) >= 0.99 - 1e-6


def test_save_load_and_refuse_another_checkpoint(
    demo_model, index, tmp_path, tiny_config, tiny_weights
) -> None:
    saved = index.save(tmp_path / "index.npz")
    loaded = EmbeddingIndex.load(saved, demo_model)
    assert loaded.keys == index.keys and np.array_equal(loaded.embeddings, index.embeddings)
    with np.load(saved, allow_pickle=False) as plain:  # plain numpy for other tools
        assert plain["vectors"].shape == (len(index), 64) and len(plain["key_ends"]) == len(index)
    other = MetaCLIP(None, tiny_config, weights=tiny_weights)
    with pytest.raises(ValueError, match=r"made by checkpoint 'demo'.*Rebuild the index"):
        EmbeddingIndex.load(saved, other)
    with pytest.raises(ValueError, match="made by checkpoint 'demo'"):
        loaded.search(other, "a red circle")
    bf16 = MetaCLIP(None, "demo", precision="bf16")  # same weights, lower precision: compatible
    assert loaded.search(bf16, "a red circle", k=1)


def test_update_embeds_only_new_and_changed(demo_model, tmp_path) -> None:
    synthetic.write_folder(tmp_path / "p", 10, seed=1)
    built = EmbeddingIndex.build(demo_model, tmp_path / "p", progress=False)
    files = sorted((tmp_path / "p").glob("*.png"))
    files[0].unlink()
    synthetic.make_image("blue", "square", seed=50).save(files[1])
    os.utime(files[1], ns=(1, 1))
    synthetic.make_image("red", "triangle", seed=51).save(tmp_path / "p" / "new.png")
    (tmp_path / "p" / "broken.png").write_bytes(b"nope")
    with opened_files() as opened:
        counts = built.update(demo_model, progress=False)
    # broken.png is counted once, as failed: not also as "added" (0.2.0 counted it twice)
    assert counts == {"added": 1, "changed": 1, "removed": 1, "failed": 1}
    assert names_in(opened, tmp_path / "p") == {files[1].name, "new.png", "broken.png"}
    assert len(built) == 10 and "broken.png" in built.failed
    row = built.keys.index(files[1].name)
    np.testing.assert_allclose(built.embeddings[row], demo_model.embed_image(files[1]), atol=1e-5)


def test_an_index_opens_on_a_labelled_dataset_without_embedding_again(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    synthetic.write_folder(tmp_path / "in", 36, seed=4)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    with opened_files() as opened:
        index = EmbeddingIndex.open(tmp_path / "out")
        hits = index.search(demo_model, "a photo of a yellow triangle", k=3)
    assert not names_in(opened, tmp_path / "in")  # no image was read
    assert len(index) == 36 and index.root == str(tmp_path / "in")
    assert all("yellow_triangle" in Path(h.path).name for h in hits)
    built = EmbeddingIndex.build(demo_model, tmp_path / "in", progress=False)
    np.testing.assert_allclose(np.asarray(index.embeddings), built.embeddings, atol=1e-6)
    assert index.keys == built.keys
    with pytest.raises(ValueError, match="holds no embeddings"):
        EmbeddingIndex.open(tmp_path / "in")
    other = MetaCLIP(None, checkpoint="demo", draft_decoding=True)
    with pytest.raises(ValueError, match="no embeddings of this model"):
        EmbeddingIndex.open(tmp_path / "out", other)
