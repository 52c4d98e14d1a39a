"""One output folder of ``label()``: its lock, its state, and the three phases of a run.

1. **record** (the part that resumes): each image is read once, and predicted; the bytes
   that were classified are kept (``.autodistill-metaclip/staged/``, written atomically), its
   manifest row appended, and the embedding of a labelled image kept (in chunks);
2. **split**: stratified by predicted class, near-duplicates kept in one split
   (:mod:`autodistill_metaclip.labeling.splits`), from the embeddings: seeded and deterministic;
3. **layout**: the class folders, the copies (the kept bytes, renamed into place), the
   manifest and ``classes.txt``, and the removal of copies this tool wrote that are no longer
   planned.

The tool never writes or removes through a symbolic link in the output folder: one planted
where it writes is refused, naming it. ``resume`` continues a run only with the same settings
(otherwise refused, naming each difference), redoing only new, changed, failed or invalid rows;
``overwrite`` deletes only what this tool wrote and refuses a folder whose split folders hold
anything else. One process at a time holds an output folder (:mod:`.lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from autodistill_metaclip.errors import ArgumentError, OutputFolderError
from autodistill_metaclip.inputs.files import atomic_write, make_folders, refuse_link
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling import splits
from autodistill_metaclip.labeling.layout import (
    class_folders,
    file_names,
    foreign_entries,
    remove_leftovers,
    remove_ours,
)
from autodistill_metaclip.labeling.lock import acquire_lock, release_lock
from autodistill_metaclip.labeling.manifest import (
    MANIFEST,
    Decision,
    append_rows,
    model_class,
    new_row,
    prediction_cells,
    read_manifest,
    valid_row,
    write_rows,
)
from autodistill_metaclip.labeling.options import LAYOUTS, check_split
from autodistill_metaclip.labeling.review import write_review
from autodistill_metaclip.labeling.state import (
    ALL_SPLITS,
    CLASSES_FILE,
    EMBEDDINGS,
    JOURNAL,
    REVIEW_FILE,
    RUN,
    STAGED,
    STATE,
    append_embeddings,
    log_summary,
    read_embeddings,
    read_journal,
    read_run,
    save_journal,
    summarize_rows,
)
from autodistill_metaclip.results import Prediction, Status

LOCK = "lock"
_CHUNK = 256  # predictions recorded together: at most this many are redone after a kill
logger = logging.getLogger(__name__)


def refuse_existing(output: Path) -> None:
    """Refuse a non-empty output folder (checked before any work)."""
    if output.is_dir() and any(output.iterdir()):
        raise OutputFolderError(
            "output_folder",
            f"{str(output)!r} is not empty; pass {{overwrite}} to replace an earlier dataset "
            "there, or {resume} to continue it",
            overwrite=True,
            resume=True,
        )


@dataclass(frozen=True)
class LabelRun:
    """What a run wrote: the dataset (as ``label()`` returns it) and the manifest's summary
    (:func:`~autodistill_metaclip.labeling.state.summarize_rows`)."""

    dataset: sv.ClassificationDataset
    summary: dict[str, Any]


@dataclass
class _Pending:
    rows: list[dict[str, str]]
    keys: list[str]
    vectors: list[np.ndarray]


class DatasetFolder:
    """One output folder of ``label()``: its state, its lock, its three phases.

    Use as a context manager (it holds the lock inside), :meth:`todo` -> :meth:`record` (or
    :meth:`add`) for each result -> :meth:`write`.
    """

    def __init__(
        self,
        output: Path,
        settings: dict[str, Any],
        classes: Sequence[str],
        *,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.output, self.state = output, output / STATE
        self.settings, self.classes = settings, list(dict.fromkeys(classes))
        self.folders = class_folders(self.classes)
        self.splits = LAYOUTS[settings["layout"]]
        self.overwrite, self.resume = overwrite, resume
        self.rows: dict[str, dict[str, str]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.fresh: set[str] = set()  # keys predicted by this run: their copies are redone
        self._pending = _Pending([], [], [])

    def __enter__(self) -> DatasetFolder:
        self._refuse_links()
        existing = self.output.is_dir() and any(self.output.iterdir())
        ours = (self.state / RUN).is_file()
        if existing and not (self.overwrite or self.resume):
            refuse_existing(self.output)
        if existing and self.resume and not ours:
            raise OutputFolderError(
                "output_folder",
                f"{str(self.output)!r} holds no run of this tool to resume; choose another "
                "output_folder",
            )
        new_state = not self.state.exists()
        self.output.mkdir(parents=True, exist_ok=True)
        make_folders(self.output, STATE)
        try:
            self._lock = acquire_lock(self.state / LOCK, self.output)
        except BaseException:
            if new_state:
                shutil.rmtree(self.state, ignore_errors=True)
            raise
        try:
            if existing and self.resume:
                self._check_same_run()
                self._load()
            elif existing:
                self._clear()
            with atomic_write(self.state / RUN, "w") as f:
                run = {"tool": "autodistill-metaclip", "settings": self.settings}
                json.dump({**run, "classes": self.classes}, f, indent=1)
        except BaseException:
            release_lock(self._lock)
            if new_state:
                shutil.rmtree(self.state, ignore_errors=True)
            raise
        return self

    def _refuse_links(self) -> None:
        """Refuse symbolic links planted where this tool writes or removes files."""
        places = [self.state, *(self.output / n for n in (MANIFEST, CLASSES_FILE, REVIEW_FILE))]
        folders = [self.state, self.state / EMBEDDINGS, self.state / STAGED]
        for split in sorted(ALL_SPLITS):
            places.append(self.output / split)
            folders.append(self.output / split)
        for folder in folders:
            if folder.is_dir() and not folder.is_symlink():
                places += folder.iterdir()
        for path in places:
            refuse_link(path)

    def __exit__(self, error_type: Any, *_: Any) -> None:
        try:
            if error_type is not None and not issubclass(error_type, OSError):
                self._flush()  # keep what was predicted before an interruption
        finally:
            release_lock(self._lock)

    # phase 1: record -------------------------------------------------------------------

    def todo(self, files: Sequence[SourceFile]) -> list[SourceFile]:
        """The files to predict: new, changed (another stamp), failed, or labelled without a
        kept embedding. Rows of files no longer listed are dropped."""
        listed = {f.key for f in files}
        self.rows = {k: r for k, r in self.rows.items() if k in listed}
        copies = self._copies(read_journal(self.output))
        return [f for f in files if not self._done(f, copies)]

    def _done(self, file: SourceFile, copies: dict[tuple[str, str], Path]) -> bool:
        row = self.rows.get(file.key)
        if row is None or row["stamp"] != file.stamp or row["status"] == Status.FAILED:
            return False
        if row["status"] == Status.UNLABELED:
            return True
        kept = self._staged(file.key).is_file() or (file.key, file.stamp) in copies
        return file.key in self.vectors and kept

    def _staged(self, key: str) -> Path:
        """Where the classified bytes of ``key`` wait for the layout."""
        return self.state / STAGED / hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]

    def _copies(self, written: dict[str, list[str]]) -> dict[tuple[str, str], Path]:
        """The copies an earlier layout left, by ``(key, stamp)``: plain files only."""
        copies = {}
        for relative, (key, stamp) in written.items():
            path = self.output / relative
            if path.is_file() and not path.is_symlink():
                copies[key, stamp] = path
        return copies

    def record(self, file: SourceFile, prediction: Prediction) -> None:
        """Keep one prediction of ``file`` (appended to disk in chunks) and, if it is labelled,
        the bytes it was made from (``keep_data=True``)."""
        self.add(file, prediction_cells(prediction), prediction.embedding, prediction.data)

    def add(
        self,
        file: SourceFile,
        cells: dict[str, str],
        vector: np.ndarray | None = None,
        data: bytes | None = None,
    ) -> None:
        """Keep one result: the manifest ``cells`` it decided (:func:`prediction_cells`); a
        labelled one needs the ``vector`` and the ``data`` it was classified from (the
        dataset's copy)."""
        labeled = cells["status"] == Status.LABELED
        if labeled:
            if vector is None or data is None:
                raise ValueError(f"{file.key!r}: a labelled result needs its vector and data")
            make_folders(self.state, STAGED)
            with atomic_write(self._staged(file.key)) as f:
                f.write(data)
        row = new_row(file.key, file.stamp, **cells)
        self.rows[file.key] = row
        self.fresh.add(file.key)
        self._pending.rows.append(row)
        if labeled and vector is not None:
            self.vectors[file.key] = vector
            self._pending.keys.append(file.key)
            self._pending.vectors.append(vector)
        if len(self._pending.rows) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        """Embeddings first, then their rows: a row on disk always has its embedding."""
        pending, self._pending = self._pending, _Pending([], [], [])
        if pending.keys:
            append_embeddings(self.output, pending.keys, pending.vectors)
        if pending.rows:
            append_rows(self.output / MANIFEST, pending.rows)

    # phases 2 and 3: split and layout --------------------------------------------------

    def write(self, files: Sequence[SourceFile], *, review: bool) -> LabelRun:
        """Decide the splits, write the folders, copies, manifest and class list (and, with
        ``review``, the review page)."""
        self._flush()
        names = file_names([f.key for f in files])
        labelled = sorted(k for k, r in self.rows.items() if r["status"] == Status.LABELED)
        chosen = splits.assign(  # by the model's class: a human's correction moves no split
            [model_class(self.rows[k]) for k in labelled],
            np.array([self.vectors[k] for k in labelled] or np.zeros((0, 1)), np.float32),
            check_split(self.settings["split"]),
            seed=self.settings["seed"],
            threshold=self.settings["near_duplicates"],
        )
        planned = {}
        for key, index in zip(labelled, chosen, strict=True):
            row = self.rows[key]
            row["split"] = self.splits[index] if row["decided"] != Decision.EXCLUDED else ""
            if row["split"]:
                planned[f"{row['split']}/{self.folders[row['class']]}/{names[key]}"] = key
        for row in self.rows.values():
            if row["status"] != Status.LABELED:
                row["split"] = ""
        self._write_copies(planned)
        ordered = sorted(self.classes, key=lambda c: self.folders[c])
        write_rows(self.output / MANIFEST, [self.rows[f.key] for f in files if f.key in self.rows])
        with atomic_write(self.output / CLASSES_FILE, "w") as f:
            f.write("".join(f"{name}\n" for name in ordered))
        log_summary(self.rows.values(), self.output)
        if review:
            write_review(self.output)
        index = {name: i for i, name in enumerate(ordered)}
        paths = {key: str(self.output / relative) for relative, key in planned.items()}
        dataset = sv.ClassificationDataset(
            classes=ordered,
            images=list(paths.values()),
            annotations={
                paths[key]: sv.Classifications(
                    class_id=np.array([index[self.rows[key]["class"]]]),
                    confidence=np.array([float(self.rows[key]["confidence"])], np.float32),
                )
                for key in paths
            },
        )
        return LabelRun(dataset, summarize_rows(self.rows.values()))

    def _write_copies(self, planned: dict[str, str]) -> None:
        """Journal first (what this tool may have written, and from which file); then move
        each copy into place: the kept bytes, or an earlier copy of the same file (moved aside
        first, so no rename can land on a copy still needed); then forget the rest. The bytes
        of excluded images stay kept, so a correction can bring them back."""
        written = read_journal(self.output)
        wanted = {relative: [key, self.rows[key]["stamp"]] for relative, key in planned.items()}
        copies = self._copies(written)
        moving = {}
        for relative, key in planned.items():
            target = self.output / relative
            if written.get(relative) != wanted[relative] or key in self.fresh:
                moving[relative] = key
            elif not (target.is_file() and not target.is_symlink()):
                moving[relative] = key
        aside = {k for k, r in self.rows.items() if r["decided"] == Decision.EXCLUDED}
        missing = [
            key
            for key in [*moving.values(), *aside]
            if not self._staged(key).is_file() and (key, self.rows[key]["stamp"]) not in copies
        ]
        if missing:  # checked before anything moves
            raise FileNotFoundError(
                f"output_folder: the copies of {len(missing)} images ({missing[0]!r}, ...) are "
                "gone; run label() again with resume=True to read them again"
            )
        save_journal(self.output, {**written, **wanted})
        for split in self.splits:
            for folder in self.folders.values():
                make_folders(self.output, f"{split}/{folder}")
        for key in {*moving.values(), *aside}:
            earlier = copies.get((key, self.rows[key]["stamp"]))
            if not self._staged(key).is_file() and earlier is not None:
                make_folders(self.state, STAGED)
                os.replace(earlier, self._staged(key))
        for relative in written.keys() - wanted.keys():
            remove_ours(self.output / relative)
        for relative, key in moving.items():
            refuse_link(self.output / relative)
            os.replace(self._staged(key), self.output / relative)
        save_journal(self.output, wanted)
        staged_folder = self.state / STAGED
        keep = {self._staged(key).name for key in aside}
        for stale in staged_folder.iterdir() if staged_folder.is_dir() else ():
            if stale.name not in keep:
                remove_ours(stale)  # bytes of images no longer labelled

    # state of an earlier run ------------------------------------------------------------

    def _check_same_run(self) -> None:
        try:
            earlier = read_run(self.output)["settings"]
        except ValueError as e:
            raise ArgumentError("resume", f"cannot read the earlier run's settings ({e})") from e
        differences = [
            f"{name} {earlier.get(name)!r} -> {value!r}"
            for name, value in self.settings.items()
            if earlier.get(name) != value
        ]
        if differences:
            raise ArgumentError(
                "resume",
                f"this run differs from the one in {str(self.output)!r}: "
                f"{'; '.join(differences)}. Run again with the same settings to continue it, "
                "or pass {overwrite} to replace it",
                overwrite=True,
            )

    def _load(self) -> None:
        """Rows that pass validation, and the embeddings kept for them; leftovers removed."""
        remove_leftovers(self.output, self.splits)
        self.vectors.update(read_embeddings(self.output))
        valid = set(self.splits) | {""}
        for key, row in read_manifest(self.output / MANIFEST).items():
            if valid_row(row, set(self.classes), valid):
                self.rows[key] = row
            else:
                logger.info("manifest row of %r is incomplete or invalid: redone", key)

    def _clear(self) -> None:
        """``overwrite``: remove what this tool wrote; refuse anything else in split folders."""
        written = read_journal(self.output)
        ours = (self.state / RUN).is_file()
        foreign = [
            name
            for name in (MANIFEST, CLASSES_FILE, REVIEW_FILE)
            if not ours and (self.output / name).exists()
        ]
        remove_leftovers(self.output, ALL_SPLITS)
        foreign += [
            relative
            for split in sorted(ALL_SPLITS)
            for relative in foreign_entries(self.output, split)
            if relative not in written
        ]
        if foreign:
            shown = ", ".join(foreign[:10]) + (
                f" and {len(foreign) - 10} more" if len(foreign) > 10 else ""
            )
            raise OutputFolderError(
                "output_folder",
                f"{str(self.output)!r} holds files this tool did not write where it writes "
                f"({shown}); move them away or choose another output_folder",
            )
        for split in ALL_SPLITS:
            if (self.output / split).is_dir():
                shutil.rmtree(self.output / split)  # only this tool's files, checked above
        for name in (MANIFEST, CLASSES_FILE, REVIEW_FILE):
            remove_ours(self.output / name)
        for name in (EMBEDDINGS, STAGED, JOURNAL, RUN):
            target = self.state / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
