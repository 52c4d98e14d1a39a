"""Whole jobs that choose how to run: label a folder here or on Ray, embed inputs into a file
or Ray's shards, evaluate labels against a hand-labelled folder or a reviewed dataset.

Each job checks its arguments when it is made (cheaply: no model is loaded, no file written),
so a caller such as the command line can refuse bad usage before any work, then :meth:`run`
does the work. The command line is these jobs plus rendering.

Examples:
    >>> options = LabelOptions(confidence=0.6)
    >>> job = LabelJob(spec, "photos/", "dataset/", options=options)  # doctest: +SKIP
    >>> job.run().summary["labeled"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autodistill_metaclip.distributed import RayOptions
from autodistill_metaclip.engine.spec import ModelSpec
from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import atomic_write
from autodistill_metaclip.labeling.folder import LabelRun
from autodistill_metaclip.labeling.options import LabelOptions
from autodistill_metaclip.labeling.state import RUN, STATE

EMBEDDING_SUFFIXES = (".npy", ".npz")


@dataclass(frozen=True)
class LabelJob:
    """``label()`` of ``input_folder`` into ``output_folder``, here or (with ``ray``) on Ray,
    its parquet shards in ``shards`` (default: ``<output_folder>-shards``)."""

    spec: ModelSpec
    input_folder: str
    output_folder: str
    extensions: Sequence[str] | None = None
    options: LabelOptions = field(default_factory=LabelOptions)
    ray: RayOptions | None = None
    shards: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.spec.ontology is None:
            raise ArgumentError("ontology", "label() needs one, but none was given")
        if not sources.is_uri(self.input_folder) and not Path(self.input_folder).is_dir():
            problem = "is not a folder" if Path(self.input_folder).exists() else "does not exist"
            raise ArgumentError("input_folder", f"{self.input_folder!r} {problem}")
        if self.ray is not None and self.options.resume:
            raise ArgumentError("resume", "not available on Ray; run again with {overwrite}",
                                overwrite=True)  # fmt: skip

    def run(self) -> LabelRun:
        """Label; returns the dataset and its summary."""
        if self.ray is None:
            from autodistill_metaclip.labeling.run import label_run

            model = self.spec.build(self.device)
            return label_run(
                model, self.input_folder, self.extensions, self.output_folder, self.options
            )
        from autodistill_metaclip.distributed import label_with_ray, ray_session

        shards = self.shards or f"{self.output_folder.rstrip('/')}-shards"
        with ray_session():
            run = label_with_ray(
                self.spec,
                self.input_folder,
                shards,
                extensions=self.extensions,
                dataset_folder=self.output_folder,
                options=self.options,
                address=self.ray.address,
                actors=self.ray.actors,
                cpus_per_actor=self.ray.cpus_per_actor,
                stall_timeout=self.ray.stall_timeout,
                actor_resources=self.ray.actor_resources,
            )
        if run.dataset is None or run.summary is None:  # label_with_ray wrote a dataset_folder
            raise RuntimeError("label_with_ray returned no dataset")
        return LabelRun(run.dataset, run.summary)


@dataclass(frozen=True)
class Embedded:
    """What an :class:`EmbedJob` made: the inputs embedded (images as given, texts as
    ``text:...``), their vectors (``(N, D)``, unless written to ``output``), the failures."""

    dim: int
    inputs: list[str]
    vectors: np.ndarray
    errors: list[tuple[str, str]]
    output: str | None = None
    counts: dict[str, int] | None = None


@dataclass(frozen=True)
class EmbedJob:
    """Embed images and texts into a ``.npy`` (the vectors) or ``.npz`` (``inputs`` and
    ``embeddings``) file, or return them; with ``ray``, one folder or URI into parquet shards
    in ``output``."""

    spec: ModelSpec
    images: Sequence[str] = ()
    texts: Sequence[str] = ()
    output: str | None = None
    ray: RayOptions | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.ray is not None:
            if len(self.images) != 1 or self.texts or not self.output:
                raise ArgumentError("ray", "embeds one folder or URI into an output, without texts")
            return
        if not self.images and not self.texts:
            raise ArgumentError("images", "give images and/or texts to embed")
        if self.output is not None and Path(self.output).suffix.lower() not in EMBEDDING_SUFFIXES:
            raise ArgumentError(
                "output",
                f"expected a file name ending in .npy or .npz, but got {self.output!r}",
            )

    def run(self) -> Embedded:
        """Embed; unreadable images are listed in ``errors``, the others embedded."""
        if self.ray is not None:
            from autodistill_metaclip.distributed import embed_with_ray, ray_session

            with ray_session():
                run = embed_with_ray(
                    self.spec, self.images[0], str(self.output), address=self.ray.address,
                    actors=self.ray.actors, cpus_per_actor=self.ray.cpus_per_actor,
                    stall_timeout=self.ray.stall_timeout,
                    actor_resources=self.ray.actor_resources,
                )  # fmt: skip
            empty = np.zeros((0, 0), np.float32)
            return Embedded(0, [], empty, [], self.output, run.counts)
        from autodistill_metaclip.results import gather

        model = self.spec.build(self.device)
        embedded = gather(model.iter_embeddings(list(self.images)), model.dim)
        inputs = [str(self.images[i]) for i in embedded.indices]
        inputs += [f"text:{t}" for t in self.texts]
        matrix = np.concatenate([embedded.vectors, model.embed_text(list(self.texts))])
        errors = [(str(self.images[i]), str(e)) for i, e in embedded.failures.items()]
        if self.output is not None:
            write_embeddings(self.output, inputs, matrix)
        return Embedded(model.dim, inputs, matrix, errors, self.output)


def write_embeddings(path: str | os.PathLike[str], inputs: list[str], vectors: np.ndarray) -> Path:
    """Write vectors to exactly ``path``, atomically: ``.npy`` the ``(N, D)`` float32 vectors,
    ``.npz`` also ``inputs`` (one name per row)."""
    target = Path(path)
    with atomic_write(target) as file:
        if target.suffix.lower() == ".npz":
            np.savez(file, inputs=np.array(inputs, dtype=str), embeddings=vectors)
        else:
            np.save(file, vectors)
    return target


@dataclass(frozen=True)
class EvaluateJob:
    """How good are the labels? For a dataset written by ``label()``: how many labels a human
    changed, per class. For a folder of hand-labelled class folders: each model's accuracy,
    per-class scores and the confidence that reaches ``target_accuracy``, for ``spec`` (named
    ``classes``) and each ontology of ``against`` (same checkpoint)."""

    folder: str
    spec: ModelSpec | None = None
    against: Mapping[str, Any] = field(default_factory=dict)
    target_accuracy: float = 0.95
    device: str | None = None

    @property
    def is_dataset(self) -> bool:
        """Whether ``folder`` is a dataset written by ``label()``."""
        return (Path(self.folder) / STATE / RUN).is_file()

    def __post_init__(self) -> None:
        if not self.is_dataset and (self.spec is None or self.spec.ontology is None):
            raise ArgumentError(
                "ontology", "scoring a hand-labelled folder needs the classes, but none were given"
            )
        if "classes" in self.against:
            raise ArgumentError("against", "an ontology may not be named 'classes'")

    def run(self) -> Any:
        """A corrections report (``dict``) for a dataset; else a list of ``Evaluation``."""
        if self.is_dataset:
            from autodistill_metaclip.labeling.corrections import correction_report

            return correction_report(self.folder)
        from autodistill_metaclip.evaluation import evaluate

        assert self.spec is not None  # checked when the job was made
        name = self.spec.checkpoint if self.spec.checkpoint not in self.against else "classes"
        models = {name: self.spec.build(self.device)}
        for name, ontology in self.against.items():
            models[name] = replace(self.spec, ontology=ontology).build(self.device)
        return evaluate(models, self.folder, target_accuracy=self.target_accuracy)
