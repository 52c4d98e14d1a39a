"""Label and embed very large image collections with Ray Data.

``pip install "autodistill-metaclip[ray]"``. The pipeline:

1. list the images of a local folder, or of any filesystem pyarrow knows (``s3://``, ``gs://``);
2. decode and preprocess them in Ray tasks (the same preprocessing as ``predict``);
3. ``map_batches`` into a pool of actors that each load the model once (one GPU per actor when
   the cluster has GPUs, else CPU) and score or embed the batch;
4. write parquet shards: ``key, path, status, class, confidence, error`` (and ``embedding``);
5. optionally, assemble the same folder dataset and ``manifest.csv`` as ``label()``.

Bad images become ``failed`` rows, never a failed job. Ray retries the work of an actor that
dies; the shards are then checked to hold every image exactly once.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from autodistill_metaclip.checkpoints import resolve
from autodistill_metaclip.encoder import ImagePreprocessor, make_preprocessor
from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.images import find_images, normalise_extensions
from autodistill_metaclip.labeling import DatasetWriter, Split, check_split, plan, verdict
from autodistill_metaclip.model import MetaCLIP, ModelSpec
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
    overwrite: bool = False,
) -> RayRun:
    """Classify every image under ``source`` on a Ray cluster.

    Args:
        model: A ``MetaCLIP`` with an ontology, or its ``spec``; each actor builds its own.
        source: A local folder, or a URI such as ``s3://bucket/photos``.
        output: Folder or URI for the parquet shards.
        extensions: Suffixes to take (``None``: every suffix Pillow opens).
        recursive: Include subfolders.
        confidence: Threshold between "labeled" and "unlabeled", as in ``label()``.
        embeddings: Also store each image's embedding.
        actors: Model replicas; each takes one GPU when the cluster has GPUs.
        cpus_per_actor: CPUs each actor reserves (and its torch threads); the rest decode.
        batch_size: Images per actor call (default: the model's).
        address: Ray cluster address; ``None`` joins or starts a local Ray. Used only when this
            process has not called ``ray.init`` already.
        dataset_folder: If given, also write ``label()``'s dataset and manifest there.
        seed, split: The train/valid/test split of ``dataset_folder``, as in ``label()``.
        overwrite: Replace earlier results in ``output`` and ``dataset_folder``.
    """
    spec = model.spec if isinstance(model, MetaCLIP) else model
    if spec.ontology is None:
        raise ValueError("ontology: labelling needs one, but the model has ontology=None")
    spec = replace(spec, ontology=as_ontology(spec.ontology))
    threshold = check_confidence(confidence)
    fractions = check_split(split)
    exclude = None if dataset_folder is None else os.fspath(dataset_folder)
    listing = list_images(source, extensions, recursive, exclude=exclude)
    run = _run(
        spec,
        listing,
        output,
        confidence=threshold,
        embeddings=embeddings,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        batch_size=batch_size or spec.batch_size,
        address=address,
        overwrite=overwrite,
    )
    if dataset_folder is None:
        return run
    dataset = _assemble(spec, listing, output, Path(dataset_folder), fractions, seed, overwrite)
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
) -> RayRun:
    """Embed every image under ``source`` on a Ray cluster into parquet shards
    (``key, path, status, error, embedding``). Arguments as in :func:`label_with_ray`."""
    spec = model.spec if isinstance(model, MetaCLIP) else model
    return _run(
        spec,
        list_images(source, extensions, recursive),
        output,
        confidence=None,
        embeddings=True,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        batch_size=batch_size or spec.batch_size,
        address=address,
        overwrite=overwrite,
    )


def read_results(output: str, columns: Sequence[str] | None = None) -> Any:
    """The parquet shards of a run as one ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    filesystem, path = _filesystem(output)
    return pq.read_table(path, filesystem=filesystem, columns=list(columns) if columns else None)


Listing = tuple["pyarrow.fs.FileSystem | None", list[str], list[str]]


def _run(
    spec: ModelSpec,
    listing: Listing,
    output: str,
    *,
    confidence: float | None,
    embeddings: bool,
    actors: int,
    cpus_per_actor: float,
    batch_size: int,
    address: str | None,
    overwrite: bool,
) -> RayRun:
    import ray

    if actors < 1 or cpus_per_actor <= 0:
        raise ValueError(
            f"actors, cpus_per_actor: expected >= 1 and > 0, but got {actors} and {cpus_per_actor}"
        )
    _refuse_existing(output, overwrite)
    filesystem, files, keys = listing
    resolved = resolve(spec.checkpoint, spec.weights)
    preprocessor = make_preprocessor(resolved.architecture, _tag_settings(resolved))
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    cluster = ray.cluster_resources()
    gpus = 1 if cluster.get("GPU", 0) >= 1 else 0
    cpus = cluster.get("CPU", 0)
    if not gpus and actors * cpus_per_actor > cpus - 1:
        # Actors would hold every CPU and the decoding tasks could never run.
        raise ValueError(
            f"actors: {actors} x {cpus_per_actor:g} CPUs leave no CPU for decoding on a cluster "
            f"of {cpus:g} CPUs; use fewer actors or a smaller cpus_per_actor"
        )
    dataset = ray.data.from_items([{"key": k, "path": f} for k, f in zip(keys, files, strict=True)])
    decoded = dataset.map_batches(
        functools.partial(_decode, preprocessor=preprocessor, filesystem=filesystem),
        batch_size=batch_size,
        batch_format="numpy",
    )
    scored = decoded.map_batches(
        _Scorer,
        batch_size=batch_size,
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
    out_filesystem, out_path = _filesystem(output)
    scored.write_parquet(out_path, filesystem=out_filesystem, mode=ray.data.SaveMode.OVERWRITE)
    statuses = read_results(output, ["key", "status"]).to_pydict()
    written = Counter(statuses["key"])
    if sorted(written) != sorted(keys) or any(n != 1 for n in written.values()):
        raise RuntimeError(f"output: {output!r} does not hold every image exactly once")
    counts = dict(Counter(statuses["status"]))
    logger.info("ray run over %d images -> %s: %s", len(keys), output, counts)
    return RayRun(output, counts)


def list_images(
    source: str, extensions: Sequence[str] | None, recursive: bool, *, exclude: str | None = None
) -> Listing:
    """``(filesystem, paths, keys)``, in ``label()``'s order: ``filesystem`` is ``None`` for a
    local folder, and keys are paths relative to ``source`` (POSIX), as in its manifest."""
    filesystem, base = _filesystem(source)
    if filesystem is None:
        found = find_images(base, extensions, recursive=recursive, exclude=exclude)
        return None, [str(p) for p in found], [p.relative_to(base).as_posix() for p in found]
    import pyarrow.fs

    wanted = normalise_extensions(extensions)
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(base, recursive=recursive))
    paths = sorted(
        i.path
        for i in infos
        if i.type == pyarrow.fs.FileType.File and PurePosixPath(i.path).suffix.lower() in wanted
    )
    prefix = base.rstrip("/") + "/"
    return filesystem, paths, [p.removeprefix(prefix) for p in paths]


def _filesystem(location: str) -> tuple[pyarrow.fs.FileSystem | None, str]:
    """``(None, path)`` for a local path; ``(filesystem, path)`` for a URI."""
    if "://" not in location:
        return None, location
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location)


def _refuse_existing(output: str, overwrite: bool) -> None:
    filesystem, path = _filesystem(output)
    if filesystem is None:
        exists = Path(path).is_dir() and any(Path(path).iterdir())
    else:
        import pyarrow.fs

        exists = filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound
    if exists and not overwrite:
        raise FileExistsError(f"output: {output!r} is not empty; pass overwrite=True to replace it")


def _tag_settings(resolved: Any) -> dict[str, Any]:
    import open_clip

    return open_clip.get_pretrained_cfg(resolved.architecture, resolved.tag) if resolved.tag else {}


def _read(filesystem: pyarrow.fs.FileSystem | None, path: str) -> Any:
    """What the preprocessor reads: a local path as is, remote files as their bytes."""
    if filesystem is None:
        return path
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except OSError as e:
        raise ImageLoadError(f"{path!r}: cannot read ({e})") from None


def _decode(
    batch: dict[str, np.ndarray],
    preprocessor: ImagePreprocessor,
    filesystem: pyarrow.fs.FileSystem | None,
) -> dict[str, np.ndarray]:
    """Ray task: images to pixel arrays; unreadable ones get zeros, ``ok=False`` and a reason."""
    pixels: list[np.ndarray | None] = []
    errors: list[str] = []
    for path in batch["path"]:
        try:
            pixels.append(preprocessor(_read(filesystem, str(path))).numpy())
            errors.append("")
        except ImageLoadError as e:
            pixels.append(None)
            errors.append(str(e) if filesystem is None else _renamed(e, str(path)))
    shape = next((p.shape for p in pixels if p is not None), (3, 1, 1))
    stacked = np.stack([np.zeros(shape, np.float32) if p is None else p for p in pixels])
    return {
        "key": batch["key"],
        "path": batch["path"],
        "pixels": stacked,
        "ok": np.array([e == "" for e in errors]),
        "error": np.array(errors, dtype=object),
    }


def _renamed(error: ImageLoadError, path: str) -> str:
    """Name a remote file in an error raised about its bytes (``<N bytes>: reason``)."""
    _, _, reason = str(error).partition(": ")
    return f"{path!r}: {reason or error}"


class _Scorer:
    """Ray actor: loads the model once, then scores or embeds batches of pixels."""

    def __init__(
        self, spec: ModelSpec, confidence: float | None, embeddings: bool, threads: int
    ) -> None:
        torch.set_num_threads(threads)
        self.model = spec.build()
        self.confidence = confidence
        self.embeddings = embeddings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["ok"].astype(bool)
        vectors = np.zeros((len(ok), self.model.encoder.dim), np.float32)
        if ok.any():
            vectors[ok] = self.model.encoder.encode_pixels(torch.from_numpy(batch["pixels"][ok]))
        out: dict[str, Any] = {"key": batch["key"], "path": batch["path"], "error": batch["error"]}
        head = self.model.head
        if self.confidence is None or head is None:
            out["status"] = np.where(ok, "embedded", "failed").astype(object)
        else:
            probabilities = head.probabilities(vectors)
            verdicts = [
                verdict(p, head.classes, self.confidence) if good else ("failed", "", np.nan)
                for p, good in zip(probabilities, ok, strict=True)
            ]
            out["status"] = np.array([v[0] for v in verdicts], dtype=object)
            out["class"] = np.array([v[1] for v in verdicts], dtype=object)
            out["confidence"] = np.array([v[2] for v in verdicts], dtype=np.float64)
        if self.embeddings:
            out["embedding"] = vectors
        return out


def _copier(filesystem: pyarrow.fs.FileSystem | None) -> Callable[[str, str], Any]:
    """Copies a source file's bytes to a local path."""
    if filesystem is None:
        return shutil.copyfile

    def copy(remote: str, local: str) -> None:
        with filesystem.open_input_stream(remote) as stream, open(local, "wb") as f:
            f.write(stream.read())

    return copy


def _assemble(
    spec: ModelSpec,
    listing: Listing,
    output: str,
    folder: Path,
    fractions: Split,
    seed: int,
    overwrite: bool,
) -> sv.ClassificationDataset:
    """Write ``label()``'s folder dataset and manifest from a run's shards (on the driver)."""
    filesystem, files, keys = listing
    rows = read_results(output, ["key", "status", "class", "confidence", "error"]).to_pylist()
    planned = plan(files, keys, fractions, seed)  # the same order, so the same split

    classes = list(spec.ontology.classes())
    writer = DatasetWriter(folder, planned, classes, overwrite=overwrite, copy=_copier(filesystem))
    by_row = {r["key"]: r for r in rows}
    with writer:
        for item in writer.todo:
            row = by_row[item.key]
            probability = None if row["status"] == "failed" else float(row["confidence"])
            writer.write(item, row["status"], row["class"] or "", probability, row["error"] or "")
    return writer.dataset()
