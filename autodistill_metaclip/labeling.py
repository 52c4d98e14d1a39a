"""Folder -> classification dataset: plan, label in batches, copy, and keep a manifest.

Layout written (the one ``sv.ClassificationDataset.from_folder_structure`` loads)::

    output_folder/
      manifest.csv                 image,status,class,confidence,split,error (one row per file)
      train/<class>/<image>        original bytes, never re-encoded
      valid/<class>/<image>
      test/<class>/<image>

The split is fixed before labelling (a seeded shuffle of every file found), so it is the same
for the same seed and files. Images are copied atomically and the manifest is appended as the
run goes, so an interrupted run leaves no half-written image and ``resume=True`` picks it up.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import supervision as sv
from tqdm.auto import tqdm

from autodistill_metaclip import sources
from autodistill_metaclip.files import PARTIAL_PREFIX, atomic_write
from autodistill_metaclip.results import Classifier, Prediction
from autodistill_metaclip.sources import SourceFile
from autodistill_metaclip.zeroshot import check_confidence

if TYPE_CHECKING:
    from collections.abc import Sequence

Split: TypeAlias = tuple[float, float, float]
SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.csv"
COLUMNS = ("image", "status", "class", "confidence", "split", "error")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """Where one input file goes if it gets a class."""

    file: SourceFile
    split: str
    file_name: str

    @property
    def key(self) -> str:
        """The file's path relative to the input folder: the manifest's ``image``."""
        return self.file.key


def label_folder(
    model: Classifier,
    input_folder: str | os.PathLike[str],
    extension: str | Sequence[str] | None = ".jpg",
    output_folder: str | os.PathLike[str] | None = None,
    *,
    confidence: float = 0.5,
    seed: int = 0,
    split: Split = (0.7, 0.15, 0.15),
    recursive: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> sv.ClassificationDataset:
    """Label every image in ``input_folder`` and write a classification dataset.

    Args:
        model: A model with an ontology (``MetaCLIP``): only its ``classes`` and
            ``iter_predictions`` are used.
        input_folder: Folder to label, or a filesystem URI (``s3://bucket/photos``, see
            :mod:`autodistill_metaclip.sources`); never modified.
        extension: ``".jpg"``, a list of suffixes (case-insensitive), or ``None`` for every
            suffix Pillow opens.
        output_folder: A local folder; defaults to ``<input_folder>_labeled`` for a local
            input. May sit inside ``input_folder`` (it is not scanned) but must not contain it.
        confidence: Minimum probability of the top class; below it the image is "unlabeled".
        seed: Seed of the train/valid/test shuffle.
        split: Fractions for train, valid and test, summing to 1.
        recursive: Also label images in subfolders.
        overwrite: Replace the dataset folders and manifest of an earlier run.
        resume: Continue an interrupted run from its manifest; images already labelled or
            unlabelled are not encoded again, failed ones are retried.
        progress: Show a progress bar.

    Returns:
        Every labelled image (this run's and resumed ones) as a ``sv.ClassificationDataset``
        whose paths point into ``output_folder``.
    """
    classes = model.classes
    if not classes:
        raise ValueError("ontology: label() needs one, but this model has ontology=None")
    threshold = check_confidence(confidence)
    fractions = check_split(split)
    source_root = os.fspath(input_folder)
    output = _output_folder(source_root, output_folder)
    if overwrite and resume:
        raise ValueError("overwrite, resume: expected at most one of them, but got both")

    files = sources.list_images(source_root, extension, recursive=recursive, exclude=output)
    writer = DatasetWriter(
        output, plan(files, fractions, seed), classes, overwrite=overwrite, resume=resume
    )
    todo = writer.todo
    with writer, tqdm(total=len(todo), desc="Labeling", unit="img", disable=not progress) as bar:
        predictions = model.iter_predictions([p.file.location for p in todo], threshold)
        with closing(predictions):
            for prediction in predictions:
                writer.record(todo[prediction.index], prediction)
                bar.update()
    return writer.dataset()


def _output_folder(source_root: str, output_folder: str | os.PathLike[str] | None) -> Path:
    """The local output folder, checked against the input folder."""
    if output_folder is None:
        if sources.is_uri(source_root):
            raise ValueError(
                f"output_folder: needed (a local folder) when input_folder is a URI "
                f"({source_root!r})"
            )
        output_folder = f"{source_root.rstrip('/')}_labeled"
    if sources.is_uri(os.fspath(output_folder)):
        raise ValueError(f"output_folder: expected a local folder, but got {output_folder!r}")
    output = Path(output_folder)
    if not sources.is_uri(source_root):
        source, target = Path(os.path.realpath(source_root)), Path(os.path.realpath(output))
        if source.is_relative_to(target):
            raise ValueError(
                f"output_folder: {str(output)!r} must not be {source_root!r} or contain it"
            )
    return output


class DatasetWriter:
    """Writes a ``label()`` dataset as results arrive, in any order.

    Labelled images are copied atomically (the original bytes) into ``split/class/``, and every
    result is appended to the manifest at once, so that an interrupted run can be resumed. On a
    clean exit the manifest is rewritten in plan order.
    """

    def __init__(
        self,
        output: Path,
        planned: list[Planned],
        classes: Sequence[str],
        *,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.output, self.plan, self.classes = output, planned, list(classes)
        self.folders = class_folders(classes)
        done = _prepare_output(output, overwrite=overwrite, resume=resume)
        self.rows = {k: r for k, r in done.items() if r.get("status") in ("labeled", "unlabeled")}
        self.todo = [p for p in planned if p.key not in self.rows]
        if done:
            logger.info("resuming: %d of %d images already done", len(self.rows), len(planned))

    def __enter__(self) -> DatasetWriter:
        self._file = open(self.output / MANIFEST, "a", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._file, COLUMNS)
        if self._file.tell() == 0:
            self._csv.writeheader()
        return self

    def record(self, planned: Planned, prediction: Prediction) -> None:
        """Record one prediction of ``planned``'s file."""
        if prediction.error is not None:
            self.write(planned, "failed", error=str(prediction.error))
        else:
            self.write(planned, prediction.status, *prediction.best)

    def write(
        self,
        planned: Planned,
        status: str,
        name: str = "",
        probability: float | None = None,
        error: str = "",
    ) -> None:
        """Record one result; a labelled image is copied into the dataset first."""
        if status == "labeled":
            folder = self.output / planned.split / self.folders[name]
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_write(folder / planned.file_name) as file:
                sources.copy_into(planned.file.location, file)
        row = {
            "image": planned.key,
            "status": status,
            "class": name,
            "confidence": "" if probability is None else f"{probability:.6f}",
            "split": planned.split if status == "labeled" else "",
            "error": error,
        }
        self.rows[planned.key] = row
        self._csv.writerow(row)
        self._file.flush()

    def __exit__(self, error_type: Any, *_: Any) -> None:
        self._file.close()
        if error_type is None:
            _rewrite_manifest(
                self.output / MANIFEST, [self.rows[p.key] for p in self.plan if p.key in self.rows]
            )
            _log_summary(self.rows.values(), self.output)

    def dataset(self) -> sv.ClassificationDataset:
        """Every labelled image in the output, as a supervision dataset."""
        by_key = {p.key: p for p in self.plan}
        images, annotations = [], {}
        for row in self.rows.values():
            planned = by_key.get(row["image"])
            if row["status"] != "labeled" or planned is None or row["class"] not in self.folders:
                continue
            path = str(self.output / row["split"] / self.folders[row["class"]] / planned.file_name)
            images.append(path)
            annotations[path] = sv.Classifications(
                class_id=np.array([self.classes.index(row["class"])]),
                confidence=np.array([float(row["confidence"])], dtype=np.float32),
            )
        return sv.ClassificationDataset(
            classes=self.classes, images=images, annotations=annotations
        )


def summarize(output_folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A written dataset's counts by status, and its failed files with the reasons."""
    rows = _read_manifest(Path(output_folder) / MANIFEST).values()
    counts = Counter(r["status"] for r in rows)
    return {
        **{status: counts[status] for status in ("labeled", "unlabeled", "failed")},
        "failures": [{"image": r["image"], "error": r["error"]} for r in rows if r["error"]],
    }


def class_folders(classes: Sequence[str]) -> dict[str, str]:
    """A safe, unique folder name for every class name (the manifest keeps the real name)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in dict.fromkeys(classes):
        base = safe_name(name)
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate.lower())
        folders[name] = candidate
    return folders


def safe_name(name: str) -> str:
    """One path component that is valid and harmless on Linux, macOS and Windows."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    if _RESERVED.match(cleaned):
        cleaned = "_" + cleaned
    cleaned = cleaned.encode("utf-8")[:200].decode("utf-8", "ignore").strip(" .")
    return cleaned or "_"


def check_split(split: Any) -> Split:
    """Three non-negative fractions (train, valid, test) that sum to 1."""
    try:
        values = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
        raise ValueError(
            f"split: expected three fractions (train, valid, test) summing to 1, but got {split!r}"
        )
    return values[0], values[1], values[2]


def plan(files: Sequence[SourceFile], fractions: Split, seed: int) -> list[Planned]:
    """Decide each file's split and output name before anything is encoded.

    The split is a seeded shuffle of the listed files, so the same files and seed always give
    the same split.
    """
    keys = [f.key for f in files]
    order = np.random.default_rng(seed).permutation(len(keys))
    n_train = round(fractions[0] * len(keys))
    n_valid = round(fractions[1] * len(keys))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[i] = (
            SPLITS[0] if rank < n_train else SPLITS[1] if rank < n_train + n_valid else SPLITS[2]
        )
    # A bare file name where it is unique (ignoring case); else the relative path, flattened.
    base = [PurePosixPath(k).name for k in keys]
    counts = Counter(name.lower() for name in base)
    names = [
        b if counts[b.lower()] == 1 else safe_name(k.replace("/", "__"))
        for b, k in zip(base, keys, strict=True)
    ]
    seen: set[str] = set()
    for i, name in enumerate(names):
        stem, suffix, n = PurePosixPath(name).stem, PurePosixPath(name).suffix, 1
        while names[i].lower() in seen:
            n += 1
            names[i] = f"{stem}_{n}{suffix}"
        seen.add(names[i].lower())
    return [Planned(file, split_of[i], names[i]) for i, file in enumerate(files)]


def refuse_existing(output: Path, *, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite`` (checked before any work)."""
    if not overwrite and output.is_dir() and any(output.iterdir()):
        raise FileExistsError(
            f"output_folder: {str(output)!r} is not empty; pass overwrite=True to replace an "
            "earlier dataset there, or resume=True to continue it"
        )


def _prepare_output(output: Path, *, overwrite: bool, resume: bool) -> dict[str, dict[str, str]]:
    """Make the output folder ready; return the manifest rows of an earlier run to resume."""
    existing = output.is_dir() and any(output.iterdir())
    if existing and resume:
        for leftover in output.glob(f"*/*/{PARTIAL_PREFIX}*"):  # from a run killed mid-copy
            leftover.unlink()
        return _read_manifest(output / MANIFEST)
    refuse_existing(output, overwrite=overwrite)
    for name in (*SPLITS, MANIFEST):
        target = output / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    output.mkdir(parents=True, exist_ok=True)
    return {}


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("image") and r.get("status")]
    return {r["image"]: {c: r.get(c) or "" for c in COLUMNS} for r in rows}


def _rewrite_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _log_summary(rows: Any, output: Path) -> None:
    counts = Counter(r["status"] for r in rows)
    logger.info(
        "labeled %d, unlabeled %d, failed %d -> %s",
        counts["labeled"],
        counts["unlabeled"],
        counts["failed"],
        output,
    )
    if counts["failed"]:
        logger.warning(
            "%d images could not be read; see %s (status=failed)",
            counts["failed"],
            output / MANIFEST,
        )
    if not counts["labeled"]:
        logger.warning("no image was labeled: the dataset in %s is empty", output)
