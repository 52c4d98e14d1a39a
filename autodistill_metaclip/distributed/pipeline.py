"""The Ray pipeline: list, score or embed in a pool of actors, write parquet shards."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autodistill_metaclip.distributed.shards import arrow_filesystem, assemble, read_results
from autodistill_metaclip.engine.ontology import as_ontology
from autodistill_metaclip.engine.spec import ModelSpec
from autodistill_metaclip.errors import ArgumentError, OutputFolderError
from autodistill_metaclip.index.store import model_identity
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.labeling.folder import refuse_existing
from autodistill_metaclip.labeling.manifest import prediction_cells
from autodistill_metaclip.labeling.options import LabelOptions, threshold_of
from autodistill_metaclip.labeling.state import run_settings
from autodistill_metaclip.results import Status

if TYPE_CHECKING:
    import supervision as sv

    from autodistill_metaclip.model import MetaCLIP

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """Where a Ray run goes and how wide.

    Attributes:
        address: Ray cluster address; ``None`` joins or starts a local Ray. Used only when this
            process has not called ``ray.init`` already.
        actors: Model replicas; each takes one GPU when the cluster has GPUs.
        cpus_per_actor: CPUs each actor reserves (its torch and decoding threads).
        stall_timeout: Seconds the run may go without finishing a batch before it fails
            (e.g. every node that could run a model actor was lost); actors starting (and
            downloading weights) count as no progress. ``None``: Ray Data's setting (30 minutes,
            or ``RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S``; -1 there turns the guard off).
        actor_resources: Custom resources each actor needs, so actors run only on the nodes
            that have them (``{"big_gpu": 1}`` for nodes started with
            ``ray start --resources='{"big_gpu": 1}'``).
    """

    address: str | None = None
    actors: int = 1
    cpus_per_actor: float = 1.0
    stall_timeout: float | None = None
    actor_resources: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.actors, bool) or not isinstance(self.actors, int) or self.actors < 1:
            raise ArgumentError("actors", f"expected a whole number >= 1, but got {self.actors!r}")
        if not self.cpus_per_actor > 0:
            raise ArgumentError(
                "cpus_per_actor", f"expected a number > 0, but got {self.cpus_per_actor!r}"
            )
        if self.stall_timeout is not None and not 0 < self.stall_timeout < math.inf:
            raise ArgumentError(
                "stall_timeout", f"expected seconds > 0, but got {self.stall_timeout!r}"
            )
        for name, amount in (self.actor_resources or {}).items():
            if not isinstance(name, str) or not name or not 0 < float(amount) < math.inf:
                raise ArgumentError(
                    "actor_resources",
                    f"expected {{name: amount > 0}}, but got {name!r}: {amount!r}",
                )


@dataclass(frozen=True)
class RayRun:
    """What a Ray run wrote: its shards' counts by status, and with ``dataset_folder`` the
    dataset (as ``label()`` returns it) and its summary."""

    output: str
    counts: dict[str, int]
    dataset: sv.ClassificationDataset | None = None
    summary: dict[str, Any] | None = None


def label_with_ray(
    model: MetaCLIP | ModelSpec,
    source: str,
    output: str,
    *,
    extensions: Sequence[str] | None = None,
    dataset_folder: str | os.PathLike[str] | None = None,
    embeddings: bool = False,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    batch_size: int | None = None,
    address: str | None = None,
    stall_timeout: float | None = None,
    actor_resources: Mapping[str, float] | None = None,
    options: LabelOptions | None = None,
    **keywords: Any,
) -> RayRun:
    """Classify every image under ``source`` on a Ray cluster.

    Args:
        model: A ``MetaCLIP`` with an ontology, or its ``spec``; each actor builds its own.
        source: A local folder, or a URI such as ``s3://bucket/photos``.
        output: Folder or URI for the parquet shards.
        extensions: Suffixes to take (``None``: those of ``sources.IMAGE_FORMATS``).
        dataset_folder: If given, also write ``label()``'s dataset and manifest there (the
            run then keeps embeddings in the shards too).
        embeddings: Also store each image's embedding.
        actors: Model replicas; each takes one GPU when the cluster has GPUs.
        cpus_per_actor: CPUs each actor reserves (its torch and decoding threads).
        batch_size: Images per actor call (default: the model's).
        address: Ray cluster address; ``None`` joins or starts a local Ray. Used only when this
            process has not called ``ray.init`` already.
        stall_timeout: Seconds the run may go without finishing a batch before it fails
            (e.g. every node that could run a model actor was lost); actors starting (and
            downloading weights) count as no progress. ``None``: Ray Data's setting (30 minutes,
            or ``RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S``; -1 there turns the guard off).
        actor_resources: Custom resources each actor needs (:class:`RayOptions`).
        options: ``label()``'s :class:`~autodistill_metaclip.LabelOptions` (or its fields as
            keywords): ``confidence`` and ``recursive``, and for ``dataset_folder`` ``seed``,
            ``split``, ``layout``, ``near_duplicates``; ``follow_links`` as in ``label()`` (the
            workers read and classify each file; the driver's copy in ``dataset_folder`` must
            have the SHA-256 of the bytes a worker classified, or the file is reported failed:
            "changed since it was classified"); ``overwrite`` replaces earlier results in
            ``output`` and ``dataset_folder``. ``resume`` is not available on Ray.
    """
    if options is not None and keywords:
        raise TypeError(
            f"label_with_ray(): give options or keywords, not both ({', '.join(keywords)})"
        )
    chosen = (
        options if options is not None else LabelOptions.of(keywords, caller="label_with_ray()")
    )
    ray_options = RayOptions(address, actors, cpus_per_actor, stall_timeout, actor_resources)
    if chosen.resume:
        raise ArgumentError(
            "resume", "not available on Ray; run again with {overwrite}", overwrite=True
        )
    spec = _spec(model, batch_size)
    if spec.ontology is None:
        raise ArgumentError("ontology", "labelling needs one, but the model has ontology=None")
    spec = replace(spec, ontology=as_ontology(spec.ontology))
    chosen.thresholds(list(spec.ontology.classes()))  # every class named is one
    threshold = chosen.near_duplicate_threshold(spec.checkpoint)
    settings = run_settings(spec, source, extensions, chosen, threshold)
    if dataset_folder is not None and not chosen.overwrite:
        refuse_existing(Path(dataset_folder))
    files = chosen.list_inputs(source, extensions, exclude=dataset_folder, policy=spec.inputs)
    run = _run(
        spec,
        files,
        output,
        confidence=chosen.confidence,
        embeddings=embeddings or dataset_folder is not None,
        ray_options=ray_options,
        overwrite=chosen.overwrite,
    )
    if dataset_folder is None:
        return run
    classes = list(spec.ontology.classes())
    written = assemble(files, output, Path(dataset_folder), settings, classes, chosen.overwrite)
    return RayRun(run.output, run.counts, written.dataset, written.summary)


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
    actor_resources: Mapping[str, float] | None = None,
) -> RayRun:
    """Embed every image under ``source`` on a Ray cluster into parquet shards
    (``key, path, stamp, status, error, embedding``). Arguments as in :func:`label_with_ray`."""
    ray_options = RayOptions(address, actors, cpus_per_actor, stall_timeout, actor_resources)
    spec = _spec(model, batch_size)
    return _run(
        spec,
        sources.list_images(source, extensions, recursive=recursive, policy=spec.inputs),
        output,
        confidence=None,
        embeddings=True,
        ray_options=ray_options,
        overwrite=overwrite,
    )


@contextlib.contextmanager
def ray_session() -> Iterator[None]:
    """Disconnect from Ray afterwards if the work inside connected (a caller that called
    ``ray.init`` itself stays connected)."""
    import ray

    connected = ray.is_initialized()
    try:
        yield
    finally:
        if not connected:
            ray.shutdown()


def _spec(model: MetaCLIP | ModelSpec, batch_size: int | None) -> ModelSpec:
    spec = model if isinstance(model, ModelSpec) else model.spec
    return spec if batch_size is None else replace(spec, batch_size=batch_size)


def _run(
    spec: ModelSpec,
    files: list[sources.SourceFile],
    output: str,
    *,
    confidence: float | Mapping[str, float] | None,
    embeddings: bool,
    ray_options: RayOptions,
    overwrite: bool,
) -> RayRun:
    import ray
    from ray.data.exceptions import ExecutionTimeoutError

    actors, cpus_per_actor = ray_options.actors, ray_options.cpus_per_actor
    _refuse_existing(output, overwrite)
    if not ray.is_initialized():
        ray.init(address=ray_options.address, ignore_reinit_error=True, log_to_driver=False)
    cluster = ray.cluster_resources()
    gpus = 1 if cluster.get("GPU", 0) >= 1 else 0
    cpus = cluster.get("CPU", 0)
    if not gpus and actors * cpus_per_actor > cpus - 1:
        # Actors would hold every CPU and Ray Data's own tasks could never run.
        raise ArgumentError(
            "actors",
            f"{actors} x {cpus_per_actor:g} CPUs leave no CPU for Ray's other tasks on a "
            f"cluster of {cpus:g} CPUs; use fewer actors or a smaller cpus_per_actor",
        )
    items = [{"key": f.key, "path": f.location, "stamp": f.stamp, "within": f.within or ""}
             for f in files]  # fmt: skip
    scored = ray.data.from_items(items).map_batches(
        _Scorer,
        batch_size=spec.batch_size,
        batch_format="numpy",
        num_gpus=gpus,
        num_cpus=cpus_per_actor,
        resources=dict(ray_options.actor_resources or {}) or None,
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
    if ray_options.stall_timeout is not None:
        scored.context.execution_no_progress_timeout_s = ray_options.stall_timeout
    out_filesystem, out_path = arrow_filesystem(output)
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


def _refuse_existing(output: str, overwrite: bool) -> None:
    if sources.is_uri(output):
        from fsspec.core import url_to_fs

        filesystem, path = url_to_fs(output)
        exists = filesystem.exists(path)
    else:
        exists = Path(output).is_dir() and any(Path(output).iterdir())
    if exists and not overwrite:
        raise OutputFolderError(
            "output", f"{output!r} is not empty; pass {{overwrite}} to replace it", overwrite=True
        )


class _Scorer:
    """Ray actor: builds the model once, then scores or embeds batches of image locations."""

    def __init__(
        self,
        spec: ModelSpec,
        confidence: float | Mapping[str, float] | None,
        embeddings: bool,
        threads: int,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = spec.build()
        self.confidence = confidence
        self.embeddings = embeddings
        self.identity = json.dumps(model_identity(self.model)) if embeddings else ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [
            sources.SourceFile(str(k), str(p), str(s), str(w) or None)
            for k, p, s, w in zip(
                batch["key"], batch["path"], batch["stamp"], batch["within"], strict=True
            )
        ]
        results: list[Any]
        if self.confidence is None:
            results = list(self.model.iter_embeddings(files, keep_data=True))
            vectors = [r.vector for r in results]
            cells = [
                {"status": str(Status.FAILED if r.error else Status.EMBEDDED),
                 "error": "" if r.error is None else str(r.error)}
                for r in results
            ]  # fmt: skip
        else:
            lowest = min(threshold_of(self.confidence, c) for c in self.model.classes)
            results = list(self.model.iter_predictions(files, lowest, keep_data=True))
            vectors = [r.embedding for r in results]
            cells = [prediction_cells(r) for r in results]
            for cell in cells:  # a threshold per class: the best class's own
                if cell["status"] != Status.FAILED:
                    labeled = float(cell["confidence"]) >= threshold_of(
                        self.confidence, cell["class"]
                    )
                    cell["status"] = str(Status.LABELED if labeled else Status.UNLABELED)
        out: dict[str, Any] = {"key": batch["key"], "path": batch["path"], "stamp": batch["stamp"]}
        for column in cells[0] if cells else ("status", "error"):
            if column != "confidence":
                out[column] = np.array([c[column] for c in cells], dtype=object)
        if self.confidence is not None:
            out["confidence"] = np.array(
                [float(c["confidence"] or "nan") for c in cells], dtype=np.float64
            )
        digests = [hashlib.sha256(r.data).hexdigest() if r.data else "" for r in results]
        out["sha256"] = np.array(digests, dtype=object)
        if self.embeddings:
            empty = np.zeros(self.model.dim, np.float32)
            filled = [empty if v is None else v for v in vectors]
            out["embedding"] = np.stack(filled) if filled else np.zeros((0, self.model.dim))
            out["identity"] = np.array([self.identity] * len(results), dtype=object)
        return out
