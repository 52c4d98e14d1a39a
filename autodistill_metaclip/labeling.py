"""Folder -> classification dataset that every folder reader numbers the same way.

Layout written (``layout="val"`` names the middle split ``val``, as ultralytics and ImageNet do)::

    output_folder/
      classes.txt                  the classes, in the order folder readers number them
      manifest.csv                 a row per input file: image, status, class, confidence, split,
                                   error, stamp, top (the model's top 3), decided (human review)
      train/<class>/<image>        every class has its folder in every split, empty ones too
      valid/<class>/<image>
      test/<class>/<image>
      .autodistill-metaclip/       this tool's state: run.json, the lock, what it wrote, embeddings

A run has three phases:

1. **record** (the part that resumes): each image is read once, and predicted; the bytes
   that were classified are kept (``.autodistill-metaclip/staged/``, written atomically), its
   manifest row appended, and the embedding of a labelled image kept (in chunks);
2. **split**: stratified by predicted class, near-duplicates kept in one split
   (:mod:`autodistill_metaclip.splits`), from the embeddings: seeded and deterministic;
3. **layout**: the class folders, the copies (the kept bytes, renamed into place), the
   manifest and ``classes.txt``, and the removal of copies this tool wrote that are no longer
   planned.

Input files are never read twice, so a file swapped during a run cannot enter the dataset
under another file's label; a symbolic link is followed only if it leads to a file inside
``input_folder`` (``follow_links=True``: anywhere). The tool never writes or removes through a
symbolic link in ``output_folder``: one planted where it writes is refused, naming it.

The manifest's format, its spreadsheet-safe cells and its reader are in
:mod:`autodistill_metaclip.manifest`.

``resume=True`` continues a run only with the same settings (``run.json``; otherwise refused,
naming each difference), redoing only new, changed, failed or invalid rows; removed inputs leave
the dataset. ``overwrite=True`` deletes only what this tool wrote and refuses a folder whose
split folders hold anything else. One process at a time holds an output folder (a lock file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import supervision as sv
from tqdm.auto import tqdm

from autodistill_metaclip import sources, splits
from autodistill_metaclip.files import (
    PARTIAL_PREFIX,
    acquire_lock,
    atomic_write,
    make_folders,
    read_file,
    refuse_link,
    release_lock,
)
from autodistill_metaclip.manifest import (
    MANIFEST,
    STATUSES,
    append_rows,
    model_class,
    read_manifest,
    valid_row,
    write_rows,
)
from autodistill_metaclip.results import Classifier, Prediction
from autodistill_metaclip.sources import SourceFile
from autodistill_metaclip.splits import Split, check_split
from autodistill_metaclip.zeroshot import check_confidence, ontology_identity

LAYOUTS = {"valid": ("train", "valid", "test"), "val": ("train", "val", "test")}
_ALL_SPLITS = frozenset({*LAYOUTS["valid"], *LAYOUTS["val"]})
CLASSES_FILE = "classes.txt"
REVIEW_FILE = "review.html"
STATE = ".autodistill-metaclip"
TOP = 3
JOURNAL = "written.json"
RUN = "run.json"
STAGED = "staged"
MAX_STATE_BYTES = 1 << 30
"""Largest run settings or journal read back (about ten million rows)."""
_CHUNK = 256  # predictions recorded together: at most this many are redone after a kill
_LEFTOVER = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}[0-9a-f]{{16}}-")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
logger = logging.getLogger(__name__)

__all__ = [
    "DatasetFolder",
    "Split",
    "check_split",
    "label_folder",
    "run_settings",
    "summarize",
]


def label_folder(
    model: Classifier,
    input_folder: str | os.PathLike[str],
    extension: str | Sequence[str] | None = ".jpg",
    output_folder: str | os.PathLike[str] | None = None,
    *,
    confidence: float = 0.5,
    seed: int = 0,
    split: Split = (0.7, 0.15, 0.15),
    layout: str = "valid",
    near_duplicates: float | None = 0.98,
    recursive: bool = False,
    follow_links: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    review: bool = True,
    progress: bool = True,
) -> sv.ClassificationDataset:
    """Label every image in ``input_folder`` and write a classification dataset.

    Args:
        model: A model with an ontology (``MetaCLIP``): its ``classes``, ``spec`` and
            ``iter_predictions`` are used.
        input_folder: Folder to label, or a filesystem URI (``s3://bucket/photos``, see
            :mod:`autodistill_metaclip.sources`); never modified.
        extension: ``".jpg"``, a list of suffixes (case-insensitive), or ``None`` for every
            suffix of the formats Pillow decodes itself (``sources.IMAGE_FORMATS``).
        output_folder: A local folder; defaults to ``<input_folder>_labeled`` for a local
            input. May sit inside ``input_folder`` (it is not scanned) but must not contain it.
        confidence: Minimum probability of the top class; below it the image is "unlabeled".
        seed: Seed of the split.
        split: Fractions for train, valid and test, summing to 1; kept per class.
        layout: ``"valid"`` (autodistill's split names) or ``"val"`` (ultralytics, ImageNet).
        near_duplicates: Images of one class at least this cosine-similar share a split;
            ``None`` turns the grouping off.
        recursive: Also label images in subfolders.
        follow_links: Follow symbolic links wherever they lead; by default only to files inside
            ``input_folder`` (others are reported as failed).
        overwrite: Replace what an earlier run of this tool wrote in ``output_folder``.
        resume: Continue an earlier run with the same settings: only new, changed and failed
            images are predicted; removed ones leave the dataset.
        review: Also write ``review.html`` (:mod:`autodistill_metaclip.review`; about 3 kB an
            image, for its thumbnail).
        progress: Show a progress bar.

    Returns:
        Every labelled image as a ``sv.ClassificationDataset`` whose paths point into
        ``output_folder`` and whose classes are in the order folder readers give them
        (sorted folder names; also in ``classes.txt``): each class once.
    """
    classes = model.classes
    if not classes:
        raise ValueError("ontology: label() needs one, but this model has ontology=None")
    settings = run_settings(
        model.spec,
        input_folder,
        extension,
        confidence=check_confidence(confidence),
        seed=seed,
        split=check_split(split),
        layout=layout,
        near_duplicates=splits.check_threshold(near_duplicates),
        recursive=recursive,
        follow_links=bool(follow_links),
    )
    source_root = os.fspath(input_folder)
    output = _output_folder(source_root, output_folder)
    if overwrite and resume:
        raise ValueError("overwrite, resume: expected at most one of them, but got both")
    files = sources.list_images(
        source_root, extension, recursive=recursive, exclude=output, follow_links=follow_links
    )
    with DatasetFolder(output, settings, classes, overwrite=overwrite, resume=resume) as folder:
        todo = folder.todo(files)
        if len(todo) < len(files):
            logger.info(
                "resuming: %d of %d images already done", len(files) - len(todo), len(files)
            )
        predictions = model.iter_predictions(todo, settings["confidence"], keep_data=True)
        bar = tqdm(total=len(todo), desc="Labeling", unit="img", disable=not progress)
        with bar, closing(predictions):
            for prediction in predictions:
                folder.record(todo[prediction.index], prediction)
                bar.update()
        return folder.write(files, review=review)


def run_settings(spec: Any, input_folder: Any, extension: Any, **options: Any) -> dict[str, Any]:
    """Everything that makes a run the same run (compared on ``resume``): the model's
    ``spec``, the input, and ``label()``'s options (checked)."""
    from autodistill_metaclip import __version__

    location = os.fspath(input_folder)
    seed = options["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, but got {seed!r}")
    options["seed"] = int(seed)
    if options["layout"] not in LAYOUTS:
        raise ValueError(
            f"layout: expected one of {', '.join(LAYOUTS)}, but got {options['layout']!r}"
        )
    return {
        "version": __version__,
        "input_folder": location if sources.is_uri(location) else os.path.abspath(location),
        "extensions": sorted(sources.normalise_extensions(extension)),
        "checkpoint": spec.checkpoint,
        "weights": spec.weights,
        "prompt_templates": list(spec.prompt_templates or []),
        "ontology": ontology_identity(spec.ontology),
        **options,
        "split": list(options["split"]),
    }


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
    local = sources.local_path(source_root)
    if local is not None:
        source, target = Path(os.path.realpath(local)), Path(os.path.realpath(output))
        if source.is_relative_to(target):
            raise ValueError(
                f"output_folder: {str(output)!r} must not be {source_root!r} or contain it"
            )
    return output


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
            refuse_existing(self.output, overwrite=False)
        if existing and self.resume and not ours:
            raise FileExistsError(
                f"output_folder: {str(self.output)!r} holds no run of this tool to resume; "
                "choose another output_folder"
            )
        new_state = not self.state.exists()
        self.output.mkdir(parents=True, exist_ok=True)
        make_folders(self.output, STATE)
        try:
            self._lock = acquire_lock(self.state / "lock", self.output)
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
        folders = [self.state, self.state / "embeddings", self.state / STAGED]
        for split in sorted(_ALL_SPLITS):
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
        if row is None or row["stamp"] != file.stamp or row["status"] == "failed":
            return False
        if row["status"] == "unlabeled":
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
        if prediction.error is not None:
            self.add(file, "failed", error=str(prediction.error))
        else:
            name, probability = prediction.best
            self.add(
                file,
                prediction.status,
                name,
                probability,
                vector=prediction.embedding,
                data=prediction.data,
                top=prediction.top(TOP),
            )

    def add(
        self,
        file: SourceFile,
        status: str,
        name: str = "",
        probability: float | None = None,
        error: str = "",
        vector: np.ndarray | None = None,
        data: bytes | None = None,
        top: Sequence[tuple[str, float]] = (),
    ) -> None:
        """Keep one result (``status`` one of :data:`STATUSES`); a labelled one needs the
        ``vector`` and the ``data`` it was classified from (the dataset's copy). ``top``: the
        most probable classes with their probabilities."""
        if status == "labeled":
            if vector is None or data is None:
                raise ValueError(f"{file.key!r}: a labelled result needs its vector and data")
            make_folders(self.state, STAGED)
            with atomic_write(self._staged(file.key)) as f:
                f.write(data)
        row = {
            "image": file.key,
            "status": status,
            "class": name,
            "confidence": "" if probability is None else f"{probability:.6f}",
            "split": "",
            "error": error,
            "stamp": file.stamp,
            "top": json.dumps([[c, round(p, 6)] for c, p in top]) if top else "",
            "decided": "",
        }
        self.rows[file.key] = row
        self.fresh.add(file.key)
        self._pending.rows.append(row)
        if status == "labeled" and vector is not None:
            self.vectors[file.key] = vector
            self._pending.keys.append(file.key)
            self._pending.vectors.append(vector)
        if len(self._pending.rows) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        """Embeddings first, then their rows: a row on disk always has its embedding."""
        pending, self._pending = self._pending, _Pending([], [], [])
        if pending.keys:
            chunks = self.state / "embeddings"
            chunks.mkdir(exist_ok=True)
            number = len(list(chunks.glob("chunk-*.npz")))
            with atomic_write(chunks / f"chunk-{number:06d}.npz") as f:
                np.savez(
                    f, keys=np.array(pending.keys, dtype=str), vectors=np.array(pending.vectors)
                )
        if pending.rows:
            append_rows(self.output / MANIFEST, pending.rows)

    # phases 2 and 3: split and layout --------------------------------------------------

    def write(self, files: Sequence[SourceFile], *, review: bool) -> sv.ClassificationDataset:
        """Decide the splits, write the folders, copies, manifest and class list (and, with
        ``review``, the review page)."""
        self._flush()
        names = file_names([f.key for f in files])
        labelled = sorted(k for k, r in self.rows.items() if r["status"] == "labeled")
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
            row["split"] = self.splits[index] if row["decided"] != "excluded" else ""
            if row["split"]:
                planned[f"{row['split']}/{self.folders[row['class']]}/{names[key]}"] = key
        for row in self.rows.values():
            if row["status"] != "labeled":
                row["split"] = ""
        self._write_copies(planned)
        ordered = sorted(self.classes, key=lambda c: self.folders[c])
        write_rows(self.output / MANIFEST, [self.rows[f.key] for f in files if f.key in self.rows])
        with atomic_write(self.output / CLASSES_FILE, "w") as f:
            f.write("".join(f"{name}\n" for name in ordered))
        _log_summary(self.rows.values(), self.output)
        if review:
            from autodistill_metaclip.review import write_review

            write_review(self.output)
        index = {name: i for i, name in enumerate(ordered)}
        paths = {key: str(self.output / relative) for relative, key in planned.items()}
        return sv.ClassificationDataset(
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
        aside = {k for k, r in self.rows.items() if r["decided"] == "excluded"}
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
        _save_journal(self.state / JOURNAL, {**written, **wanted})
        for split in self.splits:
            for folder in self.folders.values():
                make_folders(self.output, f"{split}/{folder}")
        for key in {*moving.values(), *aside}:
            earlier = copies.get((key, self.rows[key]["stamp"]))
            if not self._staged(key).is_file() and earlier is not None:
                make_folders(self.state, STAGED)
                os.replace(earlier, self._staged(key))
        for relative in written.keys() - wanted.keys():
            _remove_ours(self.output / relative)
        for relative, key in moving.items():
            refuse_link(self.output / relative)
            os.replace(self._staged(key), self.output / relative)
        _save_journal(self.state / JOURNAL, wanted)
        staged_folder = self.state / STAGED
        keep = {self._staged(key).name for key in aside}
        for stale in staged_folder.iterdir() if staged_folder.is_dir() else ():
            if stale.name not in keep:
                _remove_ours(stale)  # bytes of images no longer labelled

    # state of an earlier run ------------------------------------------------------------

    def _check_same_run(self) -> None:
        try:
            earlier = read_run(self.output)["settings"]
        except ValueError as e:
            raise ValueError(f"resume: cannot read the earlier run's settings ({e})") from e
        differences = [
            f"{name} {earlier.get(name)!r} -> {value!r}"
            for name, value in self.settings.items()
            if earlier.get(name) != value
        ]
        if differences:
            raise ValueError(
                f"resume: this run differs from the one in {str(self.output)!r}: "
                f"{'; '.join(differences)}. Run again with the same settings to continue it, "
                "or pass overwrite=True to replace it"
            )

    def _load(self) -> None:
        """Rows that pass validation, and the embeddings kept for them; leftovers removed."""
        _remove_leftovers(self.output, self.splits)
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
        _remove_leftovers(self.output, _ALL_SPLITS)
        foreign += [
            relative
            for split in sorted(_ALL_SPLITS)
            for relative in _entries(self.output, split)
            if relative not in written
        ]
        if foreign:
            shown = ", ".join(foreign[:10]) + (
                f" and {len(foreign) - 10} more" if len(foreign) > 10 else ""
            )
            raise FileExistsError(
                f"output_folder: {str(self.output)!r} holds files this tool did not write where it "
                f"writes ({shown}); move them away or choose another output_folder"
            )
        for split in _ALL_SPLITS:
            if (self.output / split).is_dir():
                shutil.rmtree(self.output / split)  # only this tool's files, checked above
        for name in (MANIFEST, CLASSES_FILE, REVIEW_FILE):
            _remove_ours(self.output / name)
        for name in ("embeddings", STAGED, JOURNAL, RUN):
            target = self.state / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)


def read_run(output: Path) -> dict[str, Any]:
    """The ``run.json`` of a dataset this tool wrote: its ``settings`` and ``classes``.

    Raises:
        ValueError: There is none, or it is not a run of this tool.
    """
    path = output / STATE / RUN
    try:
        run = json.loads(read_file(path, MAX_STATE_BYTES, "dataset_folder"))
        if not isinstance(run, dict) or not isinstance(run["settings"], dict):
            raise TypeError("not an object with settings")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{str(output)!r} holds no readable run of label() ({e})") from e
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
        raise ValueError(f"output_folder: this tool's journal {str(path)!r}: {e}") from e
    if not isinstance(journal, dict) or not all(
        _inside_splits(relative)
        and isinstance(v, list)
        and len(v) == 2
        and all(isinstance(x, str) for x in v)
        for relative, v in journal.items()
    ):
        raise ValueError(f"output_folder: this tool's journal {str(path)!r} is malformed")
    return journal


def read_embeddings(output: Path) -> dict[str, np.ndarray]:
    """The embeddings a run kept, by input key (a later chunk wins; unreadable ones skipped)."""
    vectors: dict[str, np.ndarray] = {}
    for chunk in sorted((output / STATE / "embeddings").glob("chunk-*.npz")):
        try:
            with np.load(chunk, allow_pickle=False) as data:
                vectors.update(zip(map(str, data["keys"]), data["vectors"], strict=True))
        except (OSError, ValueError, KeyError) as e:
            logger.warning("ignoring an unreadable embedding chunk %s (%s)", chunk, e)
    return vectors


def refuse_existing(output: Path, *, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite`` (checked before any work)."""
    if not overwrite and output.is_dir() and any(output.iterdir()):
        raise FileExistsError(
            f"output_folder: {str(output)!r} is not empty; pass overwrite=True to replace an "
            "earlier dataset there, or resume=True to continue it"
        )


def summarize(output_folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A written dataset's counts by status, and its failed files with the reasons."""
    rows = read_manifest(Path(output_folder) / MANIFEST).values()
    counts = Counter(r["status"] for r in rows)
    decided = Counter(r["decided"] for r in rows)
    return {
        **{status: counts[status] for status in STATUSES},
        "corrected": decided["human"],
        "excluded": decided["excluded"],
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
    """One path component that is valid and harmless on Linux, macOS and Windows, not hidden,
    at most 200 bytes (a long name keeps its extension, e.g. ``.jpg``)."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    if _RESERVED.match(cleaned):
        cleaned = "_" + cleaned
    if len(cleaned.encode("utf-8")) > 200:
        suffix = PurePosixPath(cleaned).suffix
        suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
        stem = cleaned[: len(cleaned) - len(suffix)].encode("utf-8")[: 200 - len(suffix)]
        cleaned = (stem.decode("utf-8", "ignore").strip(" .") or "_") + suffix
    return cleaned or "_"


def file_names(keys: Sequence[str]) -> dict[str, str]:
    """Each input's file name in the dataset: its own where unique (ignoring case), else its
    relative path flattened, numbered if still taken."""
    base = {k: PurePosixPath(k).name for k in keys}
    counts = Counter(name.lower() for name in base.values())
    names = {
        k: safe_name(b if counts[b.lower()] == 1 else k.replace("/", "__")) for k, b in base.items()
    }
    seen: set[str] = set()
    for key, name in names.items():
        stem, suffix, n = PurePosixPath(name).stem, PurePosixPath(name).suffix, 1
        while names[key].lower() in seen:
            n += 1
            names[key] = f"{stem}_{n}{suffix}"
        seen.add(names[key].lower())
    return names


def _save_journal(path: Path, journal: dict[str, list[str]]) -> None:
    with atomic_write(path, "w") as f:
        json.dump(journal, f)


def _entries(output: Path, split: str) -> list[str]:
    """Everything below a split folder that is not a plain folder: files, links (to files or
    folders, not followed), and anything deeper than a class folder; paths relative to output."""
    found = []
    for folder, subfolders, files in os.walk(output / split):
        depth = len(Path(folder).relative_to(output).parts)
        for name in subfolders:
            if os.path.islink(os.path.join(folder, name)) or depth >= 2:
                found.append((Path(folder) / name).relative_to(output).as_posix())
        found += [(Path(folder) / name).relative_to(output).as_posix() for name in files]
    if (output / split).is_symlink():
        found.append(split)
    return sorted(found)


def _remove_leftovers(output: Path, split_names: Iterable[str]) -> None:
    """Temporary files of a run that was killed, where this tool writes (never elsewhere)."""
    folders = [output, output / STATE, output / STATE / "embeddings", output / STATE / STAGED]
    for split in dict.fromkeys(split_names):
        if (output / split).is_dir() and not (output / split).is_symlink():
            folders += [p for p in (output / split).iterdir() if p.is_dir() and not p.is_symlink()]
    for folder in folders:
        for path in folder.glob(f"{PARTIAL_PREFIX}*"):
            if _LEFTOVER.match(path.name) and path.is_file() and not path.is_symlink():
                path.unlink()


def _inside_splits(relative: Any) -> bool:
    """Whether a journal path is ``split/class folder/file``: nothing else is ever touched."""
    if not isinstance(relative, str):
        return False
    parts = PurePosixPath(relative).parts
    return len(parts) == 3 and parts[0] in _ALL_SPLITS and not {".", "..", "/"} & set(parts)


def _remove_ours(path: Path) -> None:
    """Remove a file this tool wrote; never follow a link, never remove a folder."""
    if path.is_symlink() or path.is_file():
        path.unlink()


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
