"""One output folder of ``label()``: its lock, its state, and how a run's rows become files.

A run (:mod:`.run`) embeds what the folder's store lacks, derives every manifest row from the
embeddings (:mod:`.derive`), then :meth:`DatasetFolder.write` lays the dataset out: the splits
(near-duplicate groups kept whole, :mod:`.splits`), the copies (:mod:`.copies`: moved, never
rewritten, when a copy of the same file exists; else the classified bytes, checked against the
hash that was embedded), the manifest, ``classes.txt``, the review page, and a digest of what
the run was made from, so that a resume with nothing new writes nothing.

The tool never writes or removes through a symbolic link in the output folder: one planted
where it writes is refused, naming it. ``resume`` continues a run only with the same settings
(otherwise refused, naming each difference); ``overwrite`` replaces the dataset, keeping what
is this tool's cache (the embeddings, the copies it can move into their new places) and the
human decisions; it refuses a folder whose split folders hold files it did not write. One
process at a time holds an output folder (:mod:`.lock`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from autodistill_metaclip.errors import ArgumentError, ImageLoadError, OutputFolderError
from autodistill_metaclip.index.store import EmbeddingStore, identity_name
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import atomic_write, make_folders, refuse_link
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling import splits
from autodistill_metaclip.labeling.copies import Copies, Fetch
from autodistill_metaclip.labeling.derive import Decided
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
    model_class,
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
    REVIEW_FILE,
    RUN,
    STAGED,
    STATE,
    group_leaders,
    log_summary,
    open_store,
    read_decisions,
    read_journal,
    read_run,
    summarize_rows,
)
from autodistill_metaclip.results import Status

LOCK = "lock"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelRun:
    """What a run wrote: the dataset (as ``label()`` returns it) and the manifest's summary
    (:func:`~autodistill_metaclip.labeling.state.summarize_rows`)."""

    dataset: sv.ClassificationDataset
    summary: dict[str, Any]


@contextlib.contextmanager
def locked(output: Path) -> Iterator[None]:
    """Hold ``output``'s lock, as ``label()`` and ``fix`` do, for the block (e.g. while its
    review page is written again)."""
    lock = acquire_lock(output / STATE / LOCK, output)
    try:
        yield
    finally:
        release_lock(lock)


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


class DatasetFolder:
    """One output folder of ``label()``: a context manager that holds its lock.

    Attributes:
        rows: The manifest rows of the earlier run (``resume``; also what ``fix`` corrects).
        decisions: The human decisions, by key (kept by ``overwrite``).
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
        self.decisions: dict[str, Decided] = {}
        self._run: dict[str, Any] = {}
        self.copies = Copies(output)

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
            earlier = read_run(self.output) if ours else {}
            if existing and self.resume:
                self._check_same_run(earlier)
                self._load()
            elif existing:
                self._clear(ours)
            self.decisions = read_decisions(self.output)
            done = earlier.get("done") if self.resume else None
            store = earlier.get("store") if earlier.get("settings") == self.settings else None
            self._run = {"tool": "autodistill-metaclip", "settings": self.settings,
                         "classes": self.classes, "store": store, "done": done}  # fmt: skip
            self._save_run()
        except BaseException:
            release_lock(self._lock)
            if new_state:
                shutil.rmtree(self.state, ignore_errors=True)
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        release_lock(self._lock)

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

    # the state --------------------------------------------------------------------------------

    def store(self, identity: dict[str, Any] | None = None) -> EmbeddingStore:
        """The store of this run's embeddings: of ``identity`` (created if new), or without it
        the one the run recorded (:func:`~.state.open_store`)."""
        if identity is None:
            return open_store(self.output, self._run)
        source = {name: self.settings[name] for name in ("input_folder", "extensions", "recursive")}
        name = identity_name(identity, source)
        make_folders(self.state, f"{EMBEDDINGS}/{name}")
        store = EmbeddingStore.open(self.state / EMBEDDINGS / name, identity, source)
        if self._run.get("store") != name:
            self._run["store"] = name
            self._save_run()
        return store

    def stage(self, key: str, stamp: str, data: bytes) -> None:
        """Keep the classified bytes of an image until the layout moves them into place."""
        self.copies.stage(key, stamp, data)

    @property
    def complete(self) -> bool:
        """Whether the earlier run finished its layout."""
        return self._run.get("done") is not None

    def leaders(
        self, files: Sequence[SourceFile], store: EmbeddingStore | None = None
    ) -> dict[str, str]:
        """The key of the near-duplicate group leader of each embedded file, at the run's
        threshold; from the run's store unless ``store`` is given."""
        store = store if store is not None else self.store()
        return group_leaders(store, files, self.settings["near_duplicates"])

    def refetch(self, store: EmbeddingStore, files: Sequence[SourceFile] = ()) -> Fetch:
        """Read an image again for the dataset, if its bytes are still the ones embedded: from
        its listed ``files`` entry, else from the run's input folder (a link followed only as
        the run would)."""
        listed = {f.key: f for f in files}
        root = self.settings["input_folder"]
        local = sources.local_path(root)
        within = None if self.settings["follow_links"] or local is None else os.path.realpath(local)

        def fetch(key: str) -> bytes | None:
            file = listed.get(key) or SourceFile(
                key, sources.join(root, sources.unescape_key(key)), self.rows[key]["stamp"], within
            )
            row = store.find(key, file.stamp)
            if row < 0:
                return None
            try:
                data = sources.read(file)
            except ImageLoadError as e:
                logger.warning("cannot read %r again for the dataset: %s", key, e)
                return None
            if hashlib.sha256(data).digest() != bytes(store.digests[row]):
                logger.warning("%r changed since it was embedded; label() again to embed it", key)
                return None
            return data

        return fetch

    def finished(self, digest: str) -> bool:
        """Whether the earlier run completed from exactly what ``digest`` sums up."""
        return self._run.get("done") == digest

    def current(self, files: Sequence[SourceFile]) -> LabelRun | None:
        """The dataset as the earlier run wrote it, from its manifest (nothing is written);
        ``None`` if the manifest does not hold a valid row of each of ``files``."""
        if list(self.rows) != [f.key for f in files]:
            return None
        written = {key: relative for relative, (key, _) in read_journal(self.output).items()}
        return self._dataset(self.rows, written)

    # the layout -------------------------------------------------------------------------------

    def write(
        self,
        files: Sequence[SourceFile],
        rows: dict[str, dict[str, str]],
        leaders: dict[str, str],
        *,
        review: bool,
        fetch: Fetch | None = None,
        done: str | None = None,
    ) -> LabelRun:
        """Decide the splits, write the folders, copies, manifest and class list (and, with
        ``review``, the review page); ``done``: the digest a later resume compares.

        Args:
            files: The listed inputs (the manifest's order).
            rows: Every listed input's manifest row (:func:`~.derive.derive_rows`).
            leaders: The key of each readable image's near-duplicate group leader.
            review: Also write the review page.
            fetch: Reads an image again when no kept bytes or copy of it exist.
            done: What this run was made from (``None``: a later resume redoes the layout).
        """
        self.rows = rows
        self._run["done"] = None  # until the layout is whole
        self._save_run()
        self.copies.gather(rows, fetch)
        names = file_names([f.key for f in files])
        labelled = sorted(k for k, r in rows.items() if r["status"] == Status.LABELED)
        chosen = splits.assign(  # by the model's class: a human's correction moves no split
            labelled,
            [model_class(rows[k]) for k in labelled],
            [leaders.get(k, k) for k in labelled],
            check_split(self.settings["split"]),
            seed=self.settings["seed"],
        )
        planned = {}
        for key, index in zip(labelled, chosen.tolist(), strict=True):
            row = rows[key]
            row["split"] = self.splits[index] if row["decided"] != Decision.EXCLUDED else ""
            if row["split"]:
                planned[f"{row['split']}/{self.folders[row['class']]}/{names[key]}"] = key
        for row in rows.values():
            if row["status"] != Status.LABELED:
                row["split"] = ""
        self.copies.place(rows, planned, self.splits, self.folders)
        write_rows(self.output / MANIFEST, [rows[f.key] for f in files if f.key in rows])
        ordered = sorted(self.classes, key=lambda c: self.folders[c])
        with atomic_write(self.output / CLASSES_FILE, "w") as f:
            f.write("".join(f"{name}\n" for name in ordered))
        log_summary(rows.values(), self.output)
        if review:
            write_review(self.output)
        self._run["done"] = done
        self._save_run()
        return self._dataset(rows, {key: relative for relative, key in planned.items()})

    def _dataset(self, rows: dict[str, dict[str, str]], copies: dict[str, str]) -> LabelRun:
        ordered = sorted(self.classes, key=lambda c: self.folders[c])
        index = {name: i for i, name in enumerate(ordered)}
        prefix = "" if os.fspath(self.output) == os.curdir else os.path.join(self.output, "")
        paths = [prefix + relative.replace("/", os.sep) for relative in copies.values()]
        class_ids = np.array([index[rows[key]["class"]] for key in copies], np.int64)
        confidences = np.array([float(rows[key]["confidence"]) for key in copies], np.float32)
        # One checked Classifications, copied: supervision checks each one it makes (at 50,000
        # images a fifth of a no-op resume), and these are (1,) arrays by construction.
        first = sv.Classifications(class_id=class_ids[:1], confidence=confidences[:1])
        annotations = {}
        for i, path in enumerate(paths):
            one = copy.copy(first)
            one.class_id, one.confidence = class_ids[i : i + 1], confidences[i : i + 1]
            annotations[path] = one
        dataset = sv.ClassificationDataset(classes=ordered, images=paths, annotations=annotations)
        return LabelRun(dataset, summarize_rows(rows.values()))

    # an earlier run ---------------------------------------------------------------------------

    def _save_run(self) -> None:
        with atomic_write(self.state / RUN, "w") as f:
            json.dump(self._run, f, indent=1)

    def _check_same_run(self, earlier: dict[str, Any]) -> None:
        settings = earlier.get("settings")
        if not isinstance(settings, dict):
            raise ArgumentError("resume", "cannot read the earlier run's settings")
        differences = [
            f"{name} {settings.get(name)!r} -> {value!r}"
            for name, value in self.settings.items()
            if settings.get(name) != value
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
        """The earlier rows that pass validation; leftovers of a killed run removed."""
        remove_leftovers(self.output, self.splits)
        valid = set(self.splits) | {""}
        for key, row in read_manifest(self.output / MANIFEST).items():
            if valid_row(row, set(self.classes), valid):
                self.rows[key] = row
            else:
                logger.info("manifest row of %r is incomplete or invalid: redone", key)

    def _clear(self, ours: bool) -> None:
        """``overwrite``: remove what this tool wrote but its cache (embeddings, copies it can
        move, kept bytes) and the human decisions; refuse anything else in split folders."""
        written = read_journal(self.output)
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
        for name in (MANIFEST, CLASSES_FILE, REVIEW_FILE):
            remove_ours(self.output / name)
        (self.state / RUN).unlink(missing_ok=True)
