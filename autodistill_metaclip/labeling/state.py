"""What a run keeps in ``output_folder/.autodistill-metaclip/``, and the readers of it.

- ``run.json``: the run's settings (:func:`run_settings`, compared on ``resume``) and classes;
- ``written.json``: the journal of the copies this tool wrote (``{relative path: [key,
  stamp]}``): nothing else in the split folders is ever touched;
- ``embeddings/chunk-*.npz``: the embeddings of the labelled images, appended in chunks;
- ``staged/``: the classified bytes of each image, until the layout moves them into place;
- ``lock``: held by the one process that writes the folder.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from autodistill_metaclip.engine.ontology import ontology_identity
from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import atomic_write, read_file
from autodistill_metaclip.labeling.manifest import MANIFEST, STATUSES, Decision, read_manifest
from autodistill_metaclip.labeling.options import LAYOUTS, LabelOptions
from autodistill_metaclip.results import Status

STATE = ".autodistill-metaclip"
RUN = "run.json"
JOURNAL = "written.json"
STAGED = "staged"
EMBEDDINGS = "embeddings"
CLASSES_FILE = "classes.txt"
REVIEW_FILE = "review.html"
ALL_SPLITS = frozenset(name for names in LAYOUTS.values() for name in names)
"""Every split folder name of every layout: the only folders this tool writes files into."""
MAX_STATE_BYTES = 1 << 30
"""Largest run settings or journal read back (about ten million rows)."""
logger = logging.getLogger(__name__)


def run_settings(
    spec: Any, input_folder: str | os.PathLike[str], extension: Any, options: LabelOptions
) -> dict[str, Any]:
    """Everything that makes a run the same run (compared on ``resume``): the package version,
    the model's ``spec``, the input, and the options of :meth:`LabelOptions.identity`."""
    from autodistill_metaclip import __version__

    location = os.fspath(input_folder)
    return {
        "version": __version__,
        "input_folder": location if sources.is_uri(location) else os.path.abspath(location),
        "extensions": sorted(sources.normalise_extensions(extension)),
        "checkpoint": spec.checkpoint,
        "weights": spec.weights,
        "prompt_templates": list(spec.prompt_templates or []),
        "ontology": ontology_identity(spec.ontology),
        **options.identity(),
    }


def read_run(output: Path) -> dict[str, Any]:
    """The ``run.json`` of a dataset this tool wrote: its ``settings`` and ``classes``.

    Raises:
        ArgumentError: About ``dataset_folder``: there is none, or it is not a run of this tool.
    """
    path = output / STATE / RUN
    try:
        run = json.loads(read_file(path, MAX_STATE_BYTES, "dataset_folder"))
        if not isinstance(run, dict) or not isinstance(run["settings"], dict):
            raise TypeError("not an object with settings")
    except (ValueError, KeyError, TypeError) as e:
        raise ArgumentError(
            "dataset_folder", f"{str(output)!r} holds no readable run of label() ({e})"
        ) from e
    return run


def read_journal(output: Path) -> dict[str, list[str]]:
    """Which copies this tool wrote: ``{path relative to the output: [input key, its stamp]}``,
    every path checked to be ``split/class folder/file`` (nothing else is ever touched)."""
    path = output / STATE / JOURNAL
    if not path.exists():
        return {}
    try:
        journal = json.loads(read_file(path, MAX_STATE_BYTES, "output_folder"))
    except ValueError as e:
        raise ArgumentError("output_folder", f"this tool's journal {str(path)!r}: {e}") from e
    if not isinstance(journal, dict) or not all(
        inside_splits(relative)
        and isinstance(v, list)
        and len(v) == 2
        and all(isinstance(x, str) for x in v)
        for relative, v in journal.items()
    ):
        raise ArgumentError("output_folder", f"this tool's journal {str(path)!r} is malformed")
    return journal


def save_journal(output: Path, journal: dict[str, list[str]]) -> None:
    """Write the journal of copies, atomically."""
    with atomic_write(output / STATE / JOURNAL, "w") as f:
        json.dump(journal, f)


def inside_splits(relative: Any) -> bool:
    """Whether a journal path is ``split/class folder/file``: nothing else is ever touched."""
    if not isinstance(relative, str):
        return False
    parts = PurePosixPath(relative).parts
    return len(parts) == 3 and parts[0] in ALL_SPLITS and not {".", "..", "/"} & set(parts)


def read_embeddings(output: Path) -> dict[str, np.ndarray]:
    """The embeddings a run kept, by input key (a later chunk wins; unreadable ones skipped)."""
    vectors: dict[str, np.ndarray] = {}
    for chunk in sorted((output / STATE / EMBEDDINGS).glob("chunk-*.npz")):
        try:
            with np.load(chunk, allow_pickle=False) as data:
                vectors.update(zip(map(str, data["keys"]), data["vectors"], strict=True))
        except (OSError, ValueError, KeyError) as e:
            logger.warning("ignoring an unreadable embedding chunk %s (%s)", chunk, e)
    return vectors


def append_embeddings(output: Path, keys: list[str], vectors: list[np.ndarray]) -> None:
    """Write one more chunk of embeddings, atomically."""
    chunks = output / STATE / EMBEDDINGS
    chunks.mkdir(exist_ok=True)
    number = len(list(chunks.glob("chunk-*.npz")))
    with atomic_write(chunks / f"chunk-{number:06d}.npz") as f:
        np.savez(f, keys=np.array(keys, dtype=str), vectors=np.array(vectors))


def summarize(output_folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A written dataset's counts by status, and its failed files with the reasons."""
    return summarize_rows(read_manifest(Path(output_folder) / MANIFEST).values())


def summarize_rows(rows: Iterable[dict[str, str]]) -> dict[str, Any]:
    """Manifest rows' counts by status and decision, and the failed files with the reasons."""
    rows = list(rows)
    counts = Counter(r["status"] for r in rows)
    decided = Counter(r["decided"] for r in rows)
    return {
        **{str(status): counts[status] for status in STATUSES},
        "corrected": decided[Decision.HUMAN],
        "excluded": decided[Decision.EXCLUDED],
        "failures": [{"image": r["image"], "error": r["error"]} for r in rows if r["error"]],
    }


def log_summary(rows: Any, output: Path) -> None:
    """Log a run's counts, and warn of failures and of an empty dataset."""
    counts = Counter(r["status"] for r in rows)
    labeled, unlabeled, failed = (counts[s] for s in STATUSES)
    logger.info("labeled %d, unlabeled %d, failed %d -> %s", labeled, unlabeled, failed, output)
    if failed:
        logger.warning(
            "%d images could not be read; see %s (status=%s)",
            failed,
            output / MANIFEST,
            Status.FAILED,
        )
    if not labeled:
        logger.warning("no image was labeled: the dataset in %s is empty", output)
