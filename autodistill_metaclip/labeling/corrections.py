"""Human corrections of a labelled dataset: reassign an image to another class, or exclude it.

The review page exports them as JSON::

    {"format": "autodistill-metaclip corrections 1",
     "corrections": [{"image": "a.jpg", "from": "cat", "to": "dog"},
                     {"image": "b.jpg", "from": "cat", "to": null}]}

(``"to": null`` excludes the image; ``"from": null`` gives an unlabeled image a class). The
JSON schema is :data:`SCHEMA` (``corrections.schema.json`` beside this module).
:func:`apply_corrections` moves the copies between class folders in their split, marks the
manifest rows (``decided``: ``human`` or ``excluded``) and rewrites the manifest, with the same
layout code as ``label()``: every file renamed atomically. The decisions are kept with the
dataset (``.autodistill-metaclip/decisions.json``), so a later ``label()`` keeps them, and
applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError
from autodistill_metaclip.inputs.files import read_file
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling.folder import DatasetFolder
from autodistill_metaclip.labeling.manifest import MANIFEST, Decision, model_class, read_manifest
from autodistill_metaclip.labeling.state import (
    REVIEW_FILE,
    Decided,
    read_run,
    run_digest,
    save_decisions,
)
from autodistill_metaclip.results import Status

FORMAT = "autodistill-metaclip corrections 1"
SCHEMA = Path(__file__).with_name("corrections.schema.json")
"""The JSON schema of a corrections file (draft 2020-12)."""
MAX_CORRECTIONS_BYTES = 64 * 1024 * 1024


def read_corrections(corrections: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``{image: (from class or None, to class or None to exclude)}`` from a corrections file
    or its parsed JSON.

    Raises:
        ValueError: Naming the entry and what is wrong with it: also two entries for one image
            (which would be applied in an order nobody chose), or a file nested too deeply to
            parse (corrections are three levels deep).
        TypeError: ``corrections`` is neither a path nor a mapping (an ``ArgumentTypeError``).
    """
    if isinstance(corrections, Mapping):
        data: Any = corrections
    elif not isinstance(corrections, str | os.PathLike):
        raise ArgumentTypeError(
            "corrections",
            f"expected a file path or a parsed JSON object, but got {type(corrections).__name__}",
        )
    else:
        raw = read_file(corrections, MAX_CORRECTIONS_BYTES, "corrections")
        try:
            data = json.loads(raw)
        except RecursionError:
            raise ArgumentError(
                "corrections",
                f"{os.fspath(corrections)!r} is nested too deeply to parse; expected an object "
                'with a list of entries under "corrections"',
            ) from None
        except ValueError as e:
            raise ArgumentError(
                "corrections", f"{os.fspath(corrections)!r} is not JSON ({e})"
            ) from e
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ValueError(f'corrections: expected an object with "format": "{FORMAT}"')
    entries = data.get("corrections")
    if not isinstance(entries, list):
        raise ValueError('corrections: expected a list under "corrections"')
    changes: dict[str, Any] = {}
    first: dict[str, int] = {}  # image -> its entry
    for n, entry in enumerate(entries):
        where = f"corrections[{n}]"
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("image"), str)
            or "to" not in entry  # a missing "to" must not read as null: exclude
        ):
            raise ValueError(f'{where}: expected {{"image": ..., "to": class or null}}')
        target, source = entry.get("to"), entry.get("from")
        if target is not None and not isinstance(target, str):
            raise ValueError(f"{where}.to: expected a class name or null, but got {target!r}")
        if source is not None and not isinstance(source, str):
            raise ValueError(f"{where}.from: expected a class name, but got {source!r}")
        image = entry["image"]
        if image in first:
            raise ValueError(
                f"{where}: expected one correction per image, but {image!r} is also "
                f"corrections[{first[image]}]"
            )
        first[image] = n
        changes[image] = (source, target)
    return changes


def apply_corrections(
    dataset_folder: str | os.PathLike[str], corrections: str | os.PathLike[str] | Mapping[str, Any]
) -> dict[str, int]:
    """Apply corrections to a dataset written by ``label()``; returns what changed.

    Each image keeps its split; a reassigned one moves to its new class folder, an excluded
    one leaves the dataset (its row stays, ``decided=excluded``, its bytes kept so a later
    correction can bring it back), an unlabeled one given a class joins the split the split
    rule gives it. Idempotent. The
    decisions are kept with the dataset: a later ``label()`` of it (resumed, or re-derived
    with ``overwrite=True`` and another ontology) applies them where their class still exists.

    Returns:
        ``{"reassigned": n, "excluded": n, "unchanged": n}`` for this call.

    Raises:
        ValueError: An image that is not a labelled row of this dataset, a class that is not one
            of its classes, an image whose class is neither the ``from`` nor the ``to`` of its
            correction (it changed since the page was written), or a dataset whose last run
            did not finish. Nothing is changed then.
    """
    output = Path(dataset_folder)
    changes = read_corrections(corrections)
    try:
        run = read_run(output)
        settings, classes = run["settings"], run["classes"]
    except (ValueError, KeyError) as e:
        raise ArgumentError("dataset_folder", f"not a dataset written by label(): {e}") from e
    counts: Counter[str] = Counter()
    with DatasetFolder(output, settings, classes, resume=True) as folder:
        if not folder.complete:
            raise ArgumentError(
                "dataset_folder",
                f"{str(output)!r} is not a finished run; run label() with resume=True first",
            )
        rows = folder.rows
        for image, (source, target) in changes.items():
            _check(image, source, target, rows.get(image), classes)
        for image, (_, target) in changes.items():
            row = rows[image]
            decided = Decision.EXCLUDED if target is None else Decision.HUMAN
            new_class = row["class"] if target is None else target
            folder.decisions[image] = Decided(row["stamp"], target)
            if (row["decided"], row["class"]) == (decided, new_class):
                counts["unchanged"] += 1
                continue
            row["decided"], row["class"] = str(decided), new_class
            if row["status"] == Status.UNLABELED:  # given a class: it joins the dataset
                row["status"] = str(Status.LABELED)
                counts["labelled"] += 1
            else:
                counts["excluded" if target is None else "reassigned"] += 1
        save_decisions(output, folder.decisions)
        files = [SourceFile(key, "", row["stamp"]) for key, row in rows.items()]
        failures = {k: r["error"] for k, r in rows.items() if r["status"] == Status.FAILED}
        # an existing page shows the decisions from now on
        store = folder.store()
        folder.write(
            files, rows, folder.leaders(files, store), review=(output / REVIEW_FILE).exists(),
            fetch=folder.refetch(store), done=run_digest(settings, classes, files, failures,
                                                          folder.decisions),
        )  # fmt: skip
    return {name: counts[name] for name in ("reassigned", "excluded", "labelled", "unchanged")}


def _check(
    image: str, source: str | None, target: str | None, row: Any, classes: list[str]
) -> None:
    unlabeled = row is not None and row["status"] == Status.UNLABELED
    if row is None or not (row["status"] == Status.LABELED or unlabeled):
        problem = "is not in the manifest" if row is None else f"is {row['status']}"
        raise ArgumentError(
            "corrections", f"{image!r} {problem}; only labelled and unlabeled images can move"
        )
    if unlabeled and target is None:
        raise ArgumentError(
            "corrections", f"{image!r} is unlabeled, so not in the dataset: give it a class"
        )
    if target is not None and target not in classes:
        raise ArgumentError(
            "corrections", f"{image!r} -> {target!r}: expected one of {', '.join(classes)}"
        )
    if source is not None and not unlabeled and row["class"] not in (source, target):
        raise ArgumentError(
            "corrections",
            f"{image!r} is now {row['class']!r}, not {source!r} as when the page "
            "was written; write the page again and review it",
        )


def correction_report(dataset_folder: str | os.PathLike[str]) -> dict[str, Any]:
    """How many labels a human changed, per class the model predicted.

    Returns:
        ``{"classes": {class: {"labeled", "reassigned", "excluded", "kept"}}, "total": {...}}``;
        ``kept`` is the share of the model's labels of that class that a human left as they
        were: the precision of the labels, as far as they were reviewed.
    """
    per_class: dict[str, Counter[str]] = {}
    for row in read_manifest(Path(dataset_folder) / MANIFEST).values():
        if row["status"] != Status.LABELED:
            continue
        predicted = model_class(row)
        counts = per_class.setdefault(predicted, Counter())
        counts["labeled"] += 1
        if row["decided"] == Decision.EXCLUDED:
            counts["excluded"] += 1
        elif row["decided"] == Decision.HUMAN and row["class"] != predicted:
            counts["reassigned"] += 1

    def summary(counts: Counter[str]) -> dict[str, Any]:
        labeled = counts["labeled"]
        changed = counts["reassigned"] + counts["excluded"]
        return {
            "labeled": labeled,
            "reassigned": counts["reassigned"],
            "excluded": counts["excluded"],
            "kept": (labeled - changed) / labeled if labeled else None,
        }

    return {
        "classes": {name: summary(c) for name, c in sorted(per_class.items())},
        "total": summary(sum(per_class.values(), Counter())),
    }
