"""Exports of an index for other tools: Parquet rows, a LanceDB table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from autodistill_metaclip.index.core import EmbeddingIndex


def to_parquet(index: EmbeddingIndex, path: str | os.PathLike[str]) -> Path:
    """Write ``path``/``embedding`` rows for vector databases (needs ``pyarrow``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("parquet export needs pyarrow: pip install pyarrow") from e
    pq.write_table(_arrow(index, "embedding"), Path(path))
    return Path(path)


def to_lancedb(index: EmbeddingIndex, uri: str | os.PathLike[str], table: str = "images") -> Any:
    """Write the index as a LanceDB table (``path``, ``vector``) and return it.

    LanceDB is an embedded vector database: ``uri`` is a local folder or an object-store
    URI (``s3://bucket/db``); ``overwrite`` semantics: the table is replaced. Search it with
    ``table.search(vector).metric("dot").limit(k)``, the cosine of these unit vectors
    (needs ``pip install "autodistill-metaclip[lancedb]"``).
    """
    try:
        import lancedb
    except ImportError as e:
        raise ImportError(
            'LanceDB export needs lancedb: pip install "autodistill-metaclip[lancedb]"'
        ) from e
    database = lancedb.connect(os.fspath(uri))
    return database.create_table(table, _arrow(index, "vector"), mode="overwrite")


def _arrow(index: EmbeddingIndex, vector_column: str) -> Any:
    """``path`` and the embeddings as an Arrow table, with which model made them."""
    import pyarrow as pa

    # aligned (a memory map of an .npz member may not be), as Arrow's readers need it
    aligned = np.require(index.embeddings, np.float32, requirements=["A", "C"])
    vectors = pa.FixedSizeListArray.from_arrays(
        pa.array(aligned.reshape(-1), pa.float32()),
        index.embeddings.shape[1],
    )
    table = pa.table({"path": [str(p) for p in index.paths], vector_column: vectors})
    return table.replace_schema_metadata({"model": json.dumps(index.model_info)})
