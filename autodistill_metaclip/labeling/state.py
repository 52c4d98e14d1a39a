"""What a run keeps in ``output_folder/.autodistill-metaclip/``, and the readers of it.

- ``run.json``: the run's settings (:func:`run_settings`, compared on ``resume``), classes,
  store, and the digest of what a finished run was made from (:func:`run_digest`);
- ``written.json``: the journal of the copies this tool wrote (``{relative path: [key,
  stamp]}``): nothing else in the split folders is ever touched;
- ``embeddings/<model and source>/``: the embedding store of every readable image
  (:mod:`autodistill_metaclip.index.store`), one per model identity and input folder;
- ``decisions.json``: the human corrections, kept by ``overwrite`` too;
- ``staged/``: the classified bytes of each image, until the layout moves them into place;
- ``lock``: held by the one process that writes the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autodistill_metaclip.engine.ontology import ontology_identity
from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.index.store import DATASET_STORES, EmbeddingStore
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import atomic_write, read_file
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling.manifest import MANIFEST, STATUSES, Decision, read_manifest
from autodistill_metaclip.labeling.options import LAYOUTS, LabelOptions
from autodistill_metaclip.results import Status

STATE, EMBEDDINGS = DATASET_STORES
RUN = "run.json"
JOURNAL = "written.json"
STAGED = "staged"
CLASSES_FILE = "classes.txt"
REVIEW_FILE = "review.html"
ALL_SPLITS = frozenset(name for names in LAYOUTS.values() for name in names)
"""Every split folder name of every layout: the only folders this tool writes files into."""
MAX_STATE_BYTES = 1 << 30
"""Largest run settings or journal read back (about ten million rows)."""
logger = logging.getLogger(__name__)


def run_settings(
    spec: Any,
    input_folder: str | os.PathLike[str],
    extension: Any,
    options: LabelOptions,
    near_duplicates: float | None,
) -> dict[str, Any]:
    """Everything that makes a run the same run (compared on ``resume``): the package version,
    the model's ``spec``, the input, the options of :meth:`LabelOptions.identity`, and the
    near-duplicate threshold the run uses (the checkpoint's default for ``"auto"``)."""
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
        "near_duplicates": near_duplicates,
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
    parts = relative.split("/")
    return len(parts) == 3 and parts[0] in ALL_SPLITS and not {"", ".", ".."} & set(parts)


def open_store(output: Path, run: dict[str, Any]) -> EmbeddingStore:
    """The embedding store a run recorded in ``run.json``.

    Raises:
        ArgumentError: About ``dataset_folder``: the run recorded none (it embedded nothing).
    """
    name = run.get("store")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ArgumentError("dataset_folder", f"{str(output)!r} has no embeddings to work from")
    return EmbeddingStore.open(output / STATE / EMBEDDINGS / name)


def group_leaders(
    store: EmbeddingStore, files: Iterable[SourceFile], threshold: float | None
) -> dict[str, str]:
    """The key of each embedded file's near-duplicate group leader at ``threshold`` (every
    file its own without one); cached in the store."""
    rows = store.rows(files)
    rows = rows[rows >= 0]
    if threshold is None:
        return {store.keys[r]: store.keys[r] for r in rows.tolist()}
    found = store.leaders(rows, threshold)
    return {
        store.keys[r]: store.keys[lead]
        for r, lead in zip(rows.tolist(), found.tolist(), strict=True)
    }


@dataclass(frozen=True)
class Decided:
    """A human's decision about one image: its class, or ``None`` to exclude it; it holds
    while the file keeps its ``stamp``."""

    stamp: str
    to: str | None


DECISIONS = "decisions.json"


def read_decisions(output: Path) -> dict[str, Decided]:
    """The human decisions kept with a dataset, by key (``{}`` if none)."""
    path = output / STATE / DECISIONS
    if not path.exists():
        return {}
    try:
        data = json.loads(read_file(path, MAX_STATE_BYTES, "dataset_folder"))
        entries = data["decisions"]
        decisions = {
            key: Decided(str(entry["stamp"]), entry["to"])
            for key, entry in entries.items()
            if entry["to"] is None or isinstance(entry["to"], str)
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ArgumentError(
            "dataset_folder", f"its decisions {str(path)!r} are malformed ({e})"
        ) from e
    return decisions


def save_decisions(output: Path, decisions: dict[str, Decided]) -> None:
    """Keep the human decisions with the dataset (they survive ``overwrite``), atomically."""
    entries = {key: {"stamp": d.stamp, "to": d.to} for key, d in sorted(decisions.items())}
    with atomic_write(output / STATE / DECISIONS, "w") as f:
        json.dump({"format": 1, "decisions": entries}, f)


def run_digest(
    settings: dict[str, Any],
    classes: Sequence[str],
    files: Sequence[SourceFile],
    failures: dict[str, str],
    decisions: dict[str, Decided],
) -> str:
    """What a run is made from, summed up: a resume with the same digest has nothing to do."""
    digest = hashlib.sha256()
    digest.update(json.dumps([settings, list(classes)], sort_keys=True).encode())
    for file in files:
        digest.update(f"{file.key}\x00{file.stamp}\x00{failures.get(file.key, '')}\x01".encode())
    for key, decided in sorted(decisions.items()):
        digest.update(f"{key}\x00{decided.stamp}\x00{decided.to}\x02".encode())
    return digest.hexdigest()


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
