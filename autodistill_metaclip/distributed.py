"""Label and embed very large image collections with Ray Data.

``pip install "autodistill-metaclip[ray]"``. The pipeline:

1. list the images of a local folder or filesystem URI (:mod:`autodistill_metaclip.sources`,
   the same listing as ``label()``);
2. ``map_batches`` into a pool of actors that each build the model once from its
   :class:`~autodistill_metaclip.model.ModelSpec` and run its public streaming API
   (``iter_predictions`` / ``iter_embeddings``: threads decode while the model encodes);
3. write parquet shards: ``key, path, status, class, confidence, error`` (and ``embedding``);
4. optionally, assemble the same folder dataset and ``manifest.csv`` as ``label()``.

Bad images become ``failed`` rows, never a failed job. Ray retries the work of an actor that
dies, or of a node that is lost; the shards are then checked to hold every image exactly once.
A run that makes no progress for ``stall_timeout`` seconds (its work has nowhere left to run)
fails with an error instead of waiting forever (Ray Data's no-progress guard).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from autodistill_metaclip import sources
from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.labeling import TOP, DatasetFolder, refuse_existing, run_settings
from autodistill_metaclip.model import MetaCLIP, ModelSpec
from autodistill_metaclip.splits import Split, check_split, check_threshold
from autodistill_metaclip.zeroshot import as_ontology, check_confidence

if TYPE_CHECKING:
    import pyarrow.fs
    import supervision as sv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayRun:
    """What a Ray run wrote."""

    output: str
    counts: dict[str, int]
    dataset: sv.ClassificationDataset | None = None


def label_with_ray(
    model: MetaCLIP | ModelSpec,
    source: str,
    output: str,
    *,
    extensions: Sequence[str] | None = None,
    recursive: bool = True,
    confidence: float = 0.5,
    embeddings: bool = False,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    batch_size: int | None = None,
    address: str | None = None,
    dataset_folder: str | os.PathLike[str] | None = None,
    seed: int = 0,
    split: Split = (0.7, 0.15, 0.15),
    layout: str = "valid",
    near_duplicates: float | None = 0.98,
    follow_links: bool = False,
    overwrite: bool = False,
    stall_timeout: float | None = None,
) -> RayRun:
    """Classify every image under ``source`` on a Ray cluster.

    Args:
        model: A ``MetaCLIP`` with an ontology, or its ``spec``; each actor builds its own.
        source: A local folder, or a URI such as ``s3://bucket/photos``.
        output: Folder or URI for the parquet shards.
        extensions: Suffixes to take (``None``: those of ``sources.IMAGE_FORMATS``).
        recursive: Include subfolders.
        confidence: Threshold between "labeled" and "unlabeled", as in ``label()``.
        embeddings: Also store each image's embedding.
        actors: Model replicas; each takes one GPU when the cluster has GPUs.
        cpus_per_actor: CPUs each actor reserves (its torch and decoding threads).
        batch_size: Images per actor call (default: the model's).
        address: Ray cluster address; ``None`` joins or starts a local Ray. Used only when this
            process has not called ``ray.init`` already.
        dataset_folder: If given, also write ``label()``'s dataset and manifest there.
        seed, split, layout, near_duplicates: The split and layout of ``dataset_folder``, as in
            ``label()`` (the run then keeps embeddings in the shards too).
        follow_links: As in ``label()``: by default a link is read only if it leads to a file
            inside ``source``. The workers read and classify each file; the driver's copy in
            ``dataset_folder`` must have the SHA-256 of the bytes a worker classified, or the
            file is reported failed ("changed since it was classified").
        overwrite: Replace earlier results in ``output`` and ``dataset_folder``.
        stall_timeout: Seconds the run may go without finishing a batch before it fails
            (e.g. every node that could run a model actor was lost); actors starting (and
            downloading weights) count as no progress. ``None``: Ray Data's setting (30 minutes,
            or ``RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S``; -1 there turns the guard off).
    """
    spec = _spec(model, batch_size)
    if spec.ontology is None:
        raise ValueError("ontology: labelling needs one, but the model has ontology=None")
    spec = replace(spec, ontology=as_ontology(spec.ontology))
    threshold = check_confidence(confidence)
    settings = run_settings(
        spec,
        source,
        extensions,
        confidence=threshold,
        seed=seed,
        split=check_split(split),
        layout=layout,
        near_duplicates=check_threshold(near_duplicates),
        recursive=recursive,
        follow_links=bool(follow_links),
    )
    if dataset_folder is not None:
        refuse_existing(Path(dataset_folder), overwrite=overwrite)
    files = sources.list_images(
        source, extensions, recursive=recursive, exclude=dataset_folder, follow_links=follow_links
    )
    run = _run(
        spec,
        files,
        output,
        confidence=threshold,
        embeddings=embeddings or dataset_folder is not None,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        address=address,
        overwrite=overwrite,
        stall_timeout=stall_timeout,
    )
    if dataset_folder is None:
        return run
    classes = list(spec.ontology.classes())
    dataset = _assemble(files, output, Path(dataset_folder), settings, classes, overwrite)
    return RayRun(run.output, run.counts, dataset)


def embed_with_ray(
    model: MetaCLIP | ModelSpec,
    source: str,
    output: str,
    *,
    extensions: Sequence[str] | None = None,
    recursive: bool = True,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    batch_size: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    stall_timeout: float | None = None,
) -> RayRun:
    """Embed every image under ``source`` on a Ray cluster into parquet shards
    (``key, path, status, error, embedding``). Arguments as in :func:`label_with_ray`."""
    return _run(
        _spec(model, batch_size),
        sources.list_images(source, extensions, recursive=recursive),
        output,
        confidence=None,
        embeddings=True,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        address=address,
        overwrite=overwrite,
        stall_timeout=stall_timeout,
    )


def read_results(output: str, columns: Sequence[str] | None = None) -> Any:
    """The parquet shards of a run as one ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    filesystem, path = _arrow_filesystem(output)
    return pq.read_table(path, filesystem=filesystem, columns=list(columns) if columns else None)


def _spec(model: MetaCLIP | ModelSpec, batch_size: int | None) -> ModelSpec:
    spec = model.spec if isinstance(model, MetaCLIP) else model
    return spec if batch_size is None else replace(spec, batch_size=batch_size)


def _run(
    spec: ModelSpec,
    files: list[sources.SourceFile],
    output: str,
    *,
    confidence: float | None,
    embeddings: bool,
    actors: int,
    cpus_per_actor: float,
    address: str | None,
    overwrite: bool,
    stall_timeout: float | None,
) -> RayRun:
    import ray
    from ray.data.exceptions import ExecutionTimeoutError

    if actors < 1 or cpus_per_actor <= 0:
        raise ValueError(
            f"actors, cpus_per_actor: expected >= 1 and > 0, but got {actors} and {cpus_per_actor}"
        )
    if stall_timeout is not None and not 0 < stall_timeout < math.inf:
        raise ValueError(f"stall_timeout: expected seconds > 0, but got {stall_timeout!r}")
    _refuse_existing(output, overwrite)
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    cluster = ray.cluster_resources()
    gpus = 1 if cluster.get("GPU", 0) >= 1 else 0
    cpus = cluster.get("CPU", 0)
    if not gpus and actors * cpus_per_actor > cpus - 1:
        # Actors would hold every CPU and Ray Data's own tasks could never run.
        raise ValueError(
            f"actors: {actors} x {cpus_per_actor:g} CPUs leave no CPU for Ray's other tasks on a "
            f"cluster of {cpus:g} CPUs; use fewer actors or a smaller cpus_per_actor"
        )
    items = [{"key": f.key, "path": f.location, "within": f.within or ""} for f in files]
    scored = ray.data.from_items(items).map_batches(
        _Scorer,
        batch_size=spec.batch_size,
        batch_format="numpy",
        num_gpus=gpus,
        num_cpus=cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={
            "spec": spec,
            "confidence": confidence,
            "embeddings": embeddings,
            "threads": max(1, int(cpus_per_actor)),
        },
        max_restarts=-1,
        max_task_retries=-1,  # a dead actor is replaced and its work redone
    )
    if stall_timeout is not None:
        scored.context.execution_no_progress_timeout_s = stall_timeout
    out_filesystem, out_path = _arrow_filesystem(output)
    try:
        scored.write_parquet(out_path, filesystem=out_filesystem, mode=ray.data.SaveMode.OVERWRITE)
    except ExecutionTimeoutError as e:
        raise RuntimeError(
            "stall_timeout: the Ray run finished no batch for "
            f"{scored.context.execution_no_progress_timeout_s:g} s and was stopped;"
            " its work has nowhere to run (a lost node? fewer CPUs than an actor needs?). "
            f"{output!r} may hold part of the results: run again with overwrite=True"
        ) from e
    statuses = read_results(output, ["key", "status"]).to_pydict()
    written = Counter(statuses["key"])
    if sorted(written) != [f.key for f in files] or any(n != 1 for n in written.values()):
        raise RuntimeError(f"output: {output!r} does not hold every image exactly once")
    counts = dict(Counter(statuses["status"]))
    logger.info("ray run over %d images -> %s: %s", len(items), output, counts)
    return RayRun(output, counts)


def _arrow_filesystem(location: str) -> tuple[pyarrow.fs.FileSystem | None, str]:
    """``(None, path)`` for a local path; a pyarrow view of fsspec's filesystem for a URI."""
    if not sources.is_uri(location):
        return None, location
    import pyarrow.fs
    from fsspec.core import url_to_fs

    filesystem, path = url_to_fs(location)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(filesystem)), path


def _refuse_existing(output: str, overwrite: bool) -> None:
    if sources.is_uri(output):
        from fsspec.core import url_to_fs

        filesystem, path = url_to_fs(output)
        exists = filesystem.exists(path)
    else:
        exists = Path(output).is_dir() and any(Path(output).iterdir())
    if exists and not overwrite:
        raise FileExistsError(f"output: {output!r} is not empty; pass overwrite=True to replace it")


class _Scorer:
    """Ray actor: builds the model once, then scores or embeds batches of image locations."""

    def __init__(
        self, spec: ModelSpec, confidence: float | None, embeddings: bool, threads: int
    ) -> None:
        torch.set_num_threads(threads)
        self.model = spec.build()
        self.confidence = confidence
        self.embeddings = embeddings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [
            sources.SourceFile(str(k), str(p), "", str(w) or None)
            for k, p, w in zip(batch["key"], batch["path"], batch["within"], strict=True)
        ]
        if self.confidence is None:
            results: list[Any] = list(self.model.iter_embeddings(files))
            vectors = [r.vector for r in results]
            status = ["failed" if r.error else "embedded" for r in results]
        else:
            results = list(self.model.iter_predictions(files, self.confidence, keep_data=True))
            vectors = [r.embedding for r in results]
            status = [r.status for r in results]
        out: dict[str, Any] = {
            "key": batch["key"],
            "path": batch["path"],
            "status": np.array(status, dtype=object),
            "error": np.array(["" if r.error is None else str(r.error) for r in results], object),
        }
        if self.confidence is not None:
            best = [r.best if r.error is None else ("", np.nan) for r in results]
            out["class"] = np.array([b[0] for b in best], dtype=object)
            out["confidence"] = np.array([b[1] for b in best], dtype=np.float64)
            digests = [hashlib.sha256(r.data).hexdigest() if r.data else "" for r in results]
            out["sha256"] = np.array(digests, dtype=object)
            out["top"] = np.array([json.dumps(r.top(TOP)) for r in results], dtype=object)
        if self.embeddings:
            empty = np.zeros(self.model.dim, np.float32)
            out["embedding"] = np.stack([empty if v is None else v for v in vectors])
        return out


def _assemble(
    files: list[sources.SourceFile],
    output: str,
    folder: Path,
    settings: dict[str, Any],
    classes: list[str],
    overwrite: bool,
) -> sv.ClassificationDataset:
    """Write ``label()``'s folder dataset from a run's shards (on the driver)."""
    columns = ["key", "status", "class", "confidence", "error", "embedding", "sha256", "top"]
    by_key = {r["key"]: r for r in read_results(output, columns).to_pylist()}
    with DatasetFolder(folder, settings, classes, overwrite=overwrite) as dataset:
        for file in dataset.todo(files):
            row = by_key[file.key]
            status, error, data = row["status"], row["error"] or "", None
            if status == "labeled":
                data, error = _classified_bytes(file, row["sha256"])
                status = "failed" if data is None else status
            failed = status == "failed"
            dataset.add(
                file,
                status,
                "" if failed else row["class"] or "",
                None if failed else float(row["confidence"]),
                error,
                None if failed else np.asarray(row["embedding"], np.float32),
                data,
                [] if failed else json.loads(row["top"]),
            )
        return dataset.write(files, review=True)


def _classified_bytes(file: sources.SourceFile, digest: str) -> tuple[bytes | None, str]:
    """The file's bytes if they are the ones a worker classified, else ``(None, why)``."""
    try:
        data = sources.read(file)
    except ImageLoadError as e:
        return None, str(e)
    if hashlib.sha256(data).hexdigest() != digest:
        return None, f"{file.key!r}: changed since it was classified; not copied"
    return data, ""
