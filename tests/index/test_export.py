"""Exports of an index for other tools: Parquet, and a LanceDB table that searches alike."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic


@pytest.fixture(scope="module")
def index(demo_model: MetaCLIP, tmp_path_factory: pytest.TempPathFactory) -> EmbeddingIndex:
    root = tmp_path_factory.mktemp("export")
    synthetic.write_folder(root / "photos", 120, seed=3)
    return EmbeddingIndex.build(demo_model, root / "photos", progress=False)


def test_parquet_export(index, tmp_path) -> None:
    path = index.to_parquet(tmp_path / "vectors.parquet")
    assert path == tmp_path / "vectors.parquet"
    table = pq.read_table(path)
    assert table.num_rows == len(index) and table.column_names == ["path", "embedding"]
    assert table.column("path").to_pylist() == [str(p) for p in index.paths]
    vectors = np.array(table.column("embedding").to_pylist(), np.float32)
    np.testing.assert_allclose(vectors, index.embeddings, atol=1e-7)


def test_lancedb_export_is_searchable(demo_model, index, tmp_path) -> None:
    pytest.importorskip("lancedb")
    table = index.to_lancedb(tmp_path / "db")
    assert table.count_rows() == len(index)
    query = demo_model.embed_text("a photo of a yellow triangle")
    theirs = table.search(query).metric("dot").limit(5).to_list()
    ours = index.search(demo_model, "a photo of a yellow triangle", k=5)
    assert [r["path"] for r in theirs] == [str(h.path) for h in ours]
    np.testing.assert_allclose(
        [1 - r["_distance"] for r in theirs], [h.score for h in ours], atol=1e-4
    )
