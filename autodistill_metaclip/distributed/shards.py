"""A Ray run's parquet shards: read back, put into an embedding store, assembled as a dataset."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.index.store import EmbeddingStore
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.labeling.derive import apply_decisions
from autodistill_metaclip.labeling.folder import DatasetFolder, LabelRun
from autodistill_metaclip.labeling.manifest import new_row
from autodistill_metaclip.results import Status

if TYPE_CHECKING:
    import pyarrow.fs

_STORE_CHUNK = 4096


def read_results(output: str, columns: Sequence[str] | None = None) -> Any:
    """The parquet shards of a run as one ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    filesystem, path = arrow_filesystem(output)
    return pq.read_table(path, filesystem=filesystem, columns=list(columns) if columns else None)


def arrow_filesystem(location: str) -> tuple[pyarrow.fs.FileSystem | None, str]:
    """``(None, path)`` for a local path; a pyarrow view of fsspec's filesystem for a URI."""
    if not sources.is_uri(location):
        return None, location
    import pyarrow.fs
    from fsspec.core import url_to_fs

    filesystem, path = url_to_fs(location)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(filesystem)), path


def store_from_results(
    output: str,
    folder: str | os.PathLike[str],
    *,
    extensions: Sequence[str] | None = None,
    recursive: bool = True,
) -> EmbeddingStore:
    """The embeddings of a Ray run (``embeddings=True``, or any ``embed_with_ray``) as an
    :class:`~autodistill_metaclip.index.store.EmbeddingStore` in ``folder``, in key order, under
    each file's key and stamp: ``EmbeddingIndex.open(folder)`` opens it as an index of the
    run's input folder (listed with ``extensions`` and ``recursive``, as the run listed it), and
    its ``update`` embeds only what changed since."""
    wanted = ["key", "path", "stamp", "status", "sha256", "embedding", "identity"]
    columns = [c for c in wanted if c in _schema_names(output)]  # shards of 0.2 have no stamp
    rows = sorted(read_results(output, columns).to_pylist(), key=lambda r: r["key"])
    embedded = [r for r in rows if r["status"] != Status.FAILED]
    if not embedded:
        raise ValueError(f"output: {output!r} holds no embeddings")
    source = {
        "input_folder": _listed_folder(embedded[0]["path"], embedded[0]["key"]),
        "extensions": list(extensions) if extensions else None,
        "recursive": recursive,
    }
    store = EmbeddingStore.open(folder, json.loads(embedded[0]["identity"]), source)
    _append_rows(store, embedded, {r["key"]: r.get("stamp") or "" for r in embedded})
    return store


def _schema_names(output: str) -> list[str]:
    import pyarrow.dataset as ds

    filesystem, path = arrow_filesystem(output)
    return list(ds.dataset(path, filesystem=filesystem, format="parquet").schema.names)


def _listed_folder(location: str, key: str) -> str:
    """The folder (or URI) a file at ``location`` was listed from as ``key`` (local folders
    absolute, as ``label()`` records them)."""
    name = sources.unescape_key(key)
    if sources.is_uri(location):
        if not location.endswith("/" + name):
            raise ValueError(f"output: the shards' path {location!r} does not end with its key")
        root = location[: -len(name)]  # s3://bucket/photos/, or memory:// at the top
        return root if root.endswith("://") else root[:-1]
    path, parts = Path(location), PurePosixPath(name).parts
    if path.parts[-len(parts) :] != parts:
        raise ValueError(f"output: the shards' path {location!r} does not end with its key")
    return os.path.abspath(path.parents[len(parts) - 1])


def _append_rows(store: EmbeddingStore, rows: list[dict[str, Any]], stamps: dict[str, str]) -> None:
    """Add shard rows (embedded ones) to a store, in chunks; stamps by key ("" if unknown)."""
    for start in range(0, len(rows), _STORE_CHUNK):
        chunk = [r for r in rows[start : start + _STORE_CHUNK]
                 if store.find(r["key"], stamps.get(r["key"], "")) < 0]  # fmt: skip
        if chunk:
            store.append(
                [r["key"] for r in chunk],
                [stamps.get(r["key"], "") for r in chunk],
                [bytes.fromhex(r["sha256"]) for r in chunk],
                np.array([r["embedding"] for r in chunk], np.float32),
            )


def assemble(
    files: list[sources.SourceFile],
    output: str,
    folder: Path,
    settings: dict[str, Any],
    classes: list[str],
    overwrite: bool,
) -> LabelRun:
    """Write ``label()``'s folder dataset from a run's shards (on the driver): the embeddings
    go into the dataset's store, so it re-derives like any other (another ontology, more
    images), and each labelled image's copy must be the bytes a worker classified."""
    columns = ["key", "status", "class", "confidence", "error", "embedding", "sha256", "top",
               "identity"]  # fmt: skip
    by_key = {r["key"]: r for r in read_results(output, columns).to_pylist()}
    stamps = {f.key: f.stamp for f in files}
    shards = [by_key[f.key] for f in files]
    embedded = [r for r in shards if r["status"] != Status.FAILED]
    with DatasetFolder(folder, settings, classes, overwrite=overwrite) as dataset:
        store = None
        if embedded:
            store = dataset.store(json.loads(embedded[0]["identity"]))
            _append_rows(store, embedded, stamps)
        rows = {}
        for file, shard in zip(files, shards, strict=True):
            cells = {name: shard[name] or "" for name in ("status", "class", "error", "top")}
            confidence = shard["confidence"]
            cells["confidence"] = (
                "" if confidence is None or math.isnan(confidence) else f"{confidence:.6f}"
            )
            if cells["status"] == Status.LABELED:
                data, error = _classified_bytes(file, shard["sha256"])
                if data is None:
                    cells = {"status": str(Status.FAILED), "error": error}
                else:
                    dataset.stage(file.key, file.stamp, data)
            rows[file.key] = new_row(file.key, file.stamp, **cells)
        apply_decisions(rows, dataset.decisions, classes)
        leaders = dataset.leaders(files, store) if store is not None else {}
        return dataset.write(files, rows, leaders, review=True)


def _classified_bytes(file: sources.SourceFile, digest: str) -> tuple[bytes | None, str]:
    """The file's bytes if they are the ones a worker classified, else ``(None, why)``."""
    try:
        data = sources.read(file)
    except ImageLoadError as e:
        return None, str(e)
    if hashlib.sha256(data).hexdigest() != digest:
        return None, f"{file.key!r}: changed since it was classified; not copied"
    return data, ""
