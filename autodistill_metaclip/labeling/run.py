"""``label()``: list a folder, predict what is not done yet, write the dataset.

Layout written (``layout="val"`` names the middle split ``val``, as ultralytics and ImageNet do)::

    output_folder/
      classes.txt                  the classes, in the order folder readers number them
      manifest.csv                 a row per input file: image, status, class, confidence, split,
                                   error, stamp, top (the model's top 3), decided (human review)
      review.html                  the review page
      train/<class>/<image>        every class has its folder in every split, empty ones too
      valid/<class>/<image>
      test/<class>/<image>
      .autodistill-metaclip/       this tool's state: run.json, the lock, what it wrote, embeddings

Input files are never read twice, so a file swapped during a run cannot enter the dataset
under another file's label; a symbolic link is followed only if it leads to a file inside
``input_folder`` (``follow_links=True``: anywhere).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import supervision as sv
from tqdm.auto import tqdm

from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.labeling.folder import DatasetFolder, LabelRun
from autodistill_metaclip.labeling.options import LabelOptions
from autodistill_metaclip.labeling.state import run_settings
from autodistill_metaclip.results import Classifier

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
        model: A model with an ontology (``MetaCLIP``): its ``classes``, ``spec`` and
            ``iter_predictions`` are used.
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
    settings = run_settings(model.spec, input_folder, extension, chosen)
    source_root = os.fspath(input_folder)
    output = output_path(source_root, output_folder)
    files = sources.list_images(
        source_root,
        extension,
        recursive=chosen.recursive,
        exclude=output,
        follow_links=chosen.follow_links,
    )
    with DatasetFolder(
        output, settings, classes, overwrite=chosen.overwrite, resume=chosen.resume
    ) as folder:
        todo = folder.todo(files)
        if len(todo) < len(files):
            logger.info(
                "resuming: %d of %d images already done", len(files) - len(todo), len(files)
            )
        predictions = model.iter_predictions(todo, chosen.confidence, keep_data=True)
        bar = tqdm(total=len(todo), desc="Labeling", unit="img", disable=not chosen.progress)
        with bar, closing(predictions):
            for prediction in predictions:
                folder.record(todo[prediction.index], prediction)
                bar.update()
        return folder.write(files, review=chosen.review)


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
