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
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import supervision as sv
from tqdm.auto import tqdm

from autodistill_metaclip.images import find_images
from autodistill_metaclip.pipeline import encode_images
from autodistill_metaclip.zeroshot import check_confidence

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from autodistill_metaclip.model import MetaCLIP

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

    source: Any  # a local Path, or a path on another filesystem
    key: str  # path relative to the input folder, POSIX style: the manifest's "image"
    split: str
    file_name: str


def label_folder(
    model: MetaCLIP,
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
        model: A ``MetaCLIP`` with an ontology.
        input_folder: Folder to label; never modified.
        extension: ``".jpg"``, a list of suffixes (case-insensitive), or ``None`` for every
            suffix Pillow opens.
        output_folder: Defaults to ``<input_folder>_labeled``. May sit inside ``input_folder``
            (it is not scanned) but must not contain it.
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
    head = model.head
    if head is None or model.ontology is None:
        raise ValueError("ontology: label() needs one, but this model has ontology=None")
    threshold = check_confidence(confidence)
    fractions = check_split(split)
    source_root = Path(input_folder)
    output = Path(output_folder) if output_folder is not None else Path(f"{source_root}_labeled")
    _check_folders(source_root, output)
    if overwrite and resume:
        raise ValueError("overwrite, resume: expected at most one of them, but got both")

    files = find_images(source_root, extension, recursive=recursive, exclude=output)
    keys = [f.relative_to(source_root).as_posix() for f in files]
    writer = DatasetWriter(
        output, plan(files, keys, fractions, seed), head.classes, overwrite=overwrite, resume=resume
    )
    todo = writer.todo
    with writer, tqdm(total=len(todo), desc="Labeling", unit="img", disable=not progress) as bar:
        for item in encode_images(
            model.encoder, [p.source for p in todo], batch_size=model.batch_size
        ):
            if item.embedding is None:
                writer.write(todo[item.index], "failed", error=str(item.error))
            else:
                probabilities = head.probabilities(item.embedding[None])[0]
                writer.write(todo[item.index], *verdict(probabilities, head.classes, threshold))
            bar.update()
    return writer.dataset()


def verdict(
    probabilities: np.ndarray, classes: Sequence[str], threshold: float
) -> tuple[str, str, float]:
    """``(status, best class, its probability)``: "labeled" at or above ``threshold``."""
    best = int(np.argmax(probabilities))
    status = "labeled" if probabilities[best] >= threshold else "unlabeled"
    return status, classes[best], float(probabilities[best])


class DatasetWriter:
    """Writes a ``label()`` dataset as results arrive, in any order.

    Labelled images are copied atomically (``copy(source, destination)``; the original bytes)
    into ``split/class/``, and every result is appended to the manifest at once, so that an
    interrupted run can be resumed. On a clean exit the manifest is rewritten in plan order.
    """

    def __init__(
        self,
        output: Path,
        planned: list[Planned],
        classes: Sequence[str],
        *,
        overwrite: bool = False,
        resume: bool = False,
        copy: Callable[[Any, str], Any] = shutil.copyfile,
    ) -> None:
        self.output, self.plan, self.classes, self.copy = output, planned, list(classes), copy
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
            _copy_atomic(
                self.copy,
                planned.source,
                self.output / planned.split / self.folders[name],
                planned.file_name,
            )
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


def _check_folders(source_root: Path, output: Path) -> None:
    if not source_root.is_dir():
        problem = "does not exist" if not source_root.exists() else "is not a folder"
        raise ValueError(f"input_folder: {str(source_root)!r} {problem}")
    source, target = Path(os.path.realpath(source_root)), Path(os.path.realpath(output))
    if source.is_relative_to(target):
        raise ValueError(
            f"output_folder: {str(output)!r} must not be {str(source_root)!r} or contain it"
        )


def plan(sources: Sequence[Any], keys: Sequence[str], fractions: Split, seed: int) -> list[Planned]:
    """Decide each file's split and output name before anything is encoded.

    ``keys`` are the files' paths relative to the input folder (POSIX); the split is a seeded
    shuffle of them, so the same files and seed always give the same split.
    """
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
    return [
        Planned(src, key, split_of[i], names[i])
        for i, (src, key) in enumerate(zip(sources, keys, strict=True))
    ]


def _prepare_output(output: Path, *, overwrite: bool, resume: bool) -> dict[str, dict[str, str]]:
    """Make the output folder ready; return the manifest rows of an earlier run to resume."""
    existing = output.is_dir() and any(output.iterdir())
    if existing and resume:
        for leftover in output.glob("*/*/.partial-*"):  # from a run killed mid-copy
            leftover.unlink()
        return _read_manifest(output / MANIFEST)
    if existing and not overwrite:
        raise FileExistsError(
            f"output_folder: {str(output)!r} is not empty; pass overwrite=True to replace an "
            "earlier dataset there, or resume=True to continue it"
        )
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


def _copy_atomic(
    copy: Callable[[Any, str], Any], source: Any, folder: Path, file_name: str
) -> None:
    """Copy the original bytes; the file appears under its name only when complete."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".partial-")
    os.close(descriptor)
    try:
        copy(source, temporary)
        os.replace(temporary, folder / file_name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _rewrite_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


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
