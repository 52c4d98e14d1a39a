"""``label()``: embed what the folder's store lacks, derive the dataset from the embeddings.

Layout written (``layout="val"`` names the middle split ``val``, as ultralytics and ImageNet do)::

    output_folder/
      classes.txt                  the classes, in the order folder readers number them
      manifest.csv                 a row per input file: image, status, class, confidence, split,
                                   error, stamp, top (the model's top 3), decided (human review)
      review.html                  the review page
      train/<class>/<image>        every class has its folder in every split, empty ones too
      valid/<class>/<image>
      test/<class>/<image>
      .autodistill-metaclip/       this tool's state: run.json, the lock, the embeddings store,
                                   the human decisions, what it wrote

The model runs only on images the store does not hold at their current stamp: a resume, an
added image, or another ontology, confidence, seed, split, layout or near-duplicate threshold
(``overwrite=True``) re-derive the rest from the embeddings. Each input is read once when it is
embedded, so a file swapped during a run cannot enter the dataset under another file's label; a
symbolic link is followed only if it leads to a file inside ``input_folder``
(``follow_links=True``: anywhere).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from tqdm.auto import tqdm

from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.index.store import EmbeddingStore, model_identity
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.labeling.derive import derive_rows
from autodistill_metaclip.labeling.folder import DatasetFolder, LabelRun
from autodistill_metaclip.labeling.options import LabelOptions
from autodistill_metaclip.labeling.state import run_digest, run_settings
from autodistill_metaclip.results import Classifier, Status

_CHUNK = 256  # embeddings kept together: at most this many are redone after a kill
_MAX_SEGMENTS = 16  # more, and the store is compacted after the run
logger = logging.getLogger(__name__)


def label_folder(
    model: Classifier,
    input_folder: str | os.PathLike[str],
    extension: str | Sequence[str] | None = ".jpg",
    output_folder: str | os.PathLike[str] | None = None,
    options: LabelOptions | None = None,
    **keywords: Any,
) -> sv.ClassificationDataset:
    """Label every image in ``input_folder`` and write a classification dataset.

    Args:
        model: A model with an ontology (``MetaCLIP``).
        input_folder: Folder to label, or a filesystem URI (``s3://bucket/photos``, see
            :mod:`autodistill_metaclip.inputs.sources`); never modified.
        extension: ``".jpg"``, a list of suffixes (case-insensitive), or ``None`` for every
            suffix of the formats Pillow decodes itself (``sources.IMAGE_FORMATS``).
        output_folder: A local folder; defaults to ``<input_folder>_labeled`` for a local
            input. May sit inside ``input_folder`` (it is not scanned) but must not contain it.
        options: The :class:`~autodistill_metaclip.labeling.options.LabelOptions`; or give
            its fields as keywords (``confidence=0.6``).

    Returns:
        Every labelled image as a ``sv.ClassificationDataset`` whose paths point into
        ``output_folder`` and whose classes are in the order folder readers give them
        (sorted folder names; also in ``classes.txt``): each class once.
    """
    return label_run(model, input_folder, extension, output_folder, options, **keywords).dataset


def label_run(
    model: Classifier,
    input_folder: str | os.PathLike[str],
    extension: str | Sequence[str] | None = ".jpg",
    output_folder: str | os.PathLike[str] | None = None,
    options: LabelOptions | None = None,
    **keywords: Any,
) -> LabelRun:
    """:func:`label_folder`, returning the dataset with the summary of its manifest."""
    if options is not None and keywords:
        raise TypeError(f"label(): give options or keywords, not both ({', '.join(keywords)})")
    chosen = options if options is not None else LabelOptions.of(keywords)
    classes = model.classes
    if not classes:
        raise ArgumentError("ontology", "label() needs one, but this model has ontology=None")
    chosen.thresholds(classes)  # refuse a threshold for a class the ontology does not have
    threshold = chosen.near_duplicate_threshold(model.spec.checkpoint)
    settings = run_settings(model.spec, input_folder, extension, chosen, threshold)
    source_root = os.fspath(input_folder)
    output = output_path(source_root, output_folder)
    files = chosen.list_inputs(source_root, extension, exclude=output, policy=model.spec.inputs)
    with DatasetFolder(
        output, settings, classes, overwrite=chosen.overwrite, resume=chosen.resume
    ) as folder:
        store = folder.store(model_identity(model))
        failures = _embed_missing(model, store, folder, files, chosen)
        done = run_digest(settings, classes, files, failures, folder.decisions)
        current = folder.current(files) if folder.finished(done) else None
        if current is not None:
            logger.info("nothing changed since the run in %s", output)
            return current
        rows = store.rows(files)
        manifest, dropped = derive_rows(
            files, rows, store.vectors, model.probabilities, classes, chosen.confidence,
            failures, folder.decisions,
        )  # fmt: skip
        if dropped:
            logger.warning(
                "%d human decisions no longer apply (their file changed, their class is gone, "
                "or the image is not labelled now): %s",
                len(dropped),
                ", ".join(map(repr, dropped[:10])),
            )
        written = folder.write(
            files, manifest, folder.leaders(files, store), review=chosen.review,
            fetch=folder.refetch(store, files), done=done,
        )  # fmt: skip
        readable = len(files) - len(failures)
        if store.segments > _MAX_SEGMENTS or len(store) > 1.25 * readable:
            store.compact({f.key for f in files})  # one memory-mapped file, no stale rows
        return written


def _embed_missing(
    model: Classifier,
    store: EmbeddingStore,
    folder: DatasetFolder,
    files: Sequence[sources.SourceFile],
    options: LabelOptions,
) -> dict[str, str]:
    """Run the model on the files the store lacks, keeping each embedding (in chunks) and the
    bytes of each image labelled now; returns why each unreadable file failed."""
    todo = [f for f in files if store.find(f.key, f.stamp) < 0]
    if len(todo) < len(files):
        logger.info("%d of %d images are embedded already", len(files) - len(todo), len(files))
    failures: dict[str, str] = {}
    pending: list[tuple[str, str, bytes, np.ndarray]] = []

    def keep() -> None:
        if pending:
            keys, stamps, digests, vectors = zip(*pending, strict=True)
            store.append(keys, stamps, digests, np.stack(vectors))
            pending.clear()

    lowest = min(options.thresholds(classes=model.classes))  # keep the bytes of any labelled
    predictions = model.iter_predictions(todo, lowest, keep_data=True)
    bar = tqdm(total=len(todo), desc="Labeling", unit="img", disable=not options.progress)
    with bar, closing(predictions):
        try:
            for prediction in predictions:
                file = todo[prediction.index]
                if prediction.embedding is None or prediction.data is None:
                    failures[file.key] = str(prediction.error)
                else:
                    if prediction.status == Status.LABELED:  # its bytes first, then its embedding
                        folder.stage(file.key, file.stamp, prediction.data)
                    digest = hashlib.sha256(prediction.data).digest()
                    pending.append((file.key, file.stamp, digest, prediction.embedding))
                    if len(pending) >= _CHUNK:
                        keep()
                bar.update()
        finally:
            keep()  # what was embedded before an interruption is kept
    return failures


def output_path(source_root: str, output_folder: str | os.PathLike[str] | None) -> Path:
    """The local output folder, checked against the input folder."""
    if output_folder is None:
        if sources.is_uri(source_root):
            raise ArgumentError(
                "output_folder",
                f"needed (a local folder) when input_folder is a URI ({source_root!r})",
            )
        output_folder = f"{source_root.rstrip('/')}_labeled"
    if sources.is_uri(os.fspath(output_folder)):
        raise ArgumentError("output_folder", f"expected a local folder, but got {output_folder!r}")
    output = Path(output_folder)
    local = sources.local_path(source_root)
    if local is not None:
        source, target = Path(os.path.realpath(local)), Path(os.path.realpath(output))
        if source.is_relative_to(target):
            raise ArgumentError(
                "output_folder", f"{str(output)!r} must not be {source_root!r} or contain it"
            )
    return output
