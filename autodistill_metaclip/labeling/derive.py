"""The manifest, derived from the embeddings: each readable image's classes and status, with the
human decisions applied. No image is read here; changing the ontology, the templates or the
confidence re-derives everything in seconds.

The numbers are the model's own (:meth:`MetaCLIP.probabilities`: the same softmax as
``predict``), computed in chunks so that many images and classes take little memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from autodistill_metaclip.index.groups import gather
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling.manifest import TOP, Decision, new_row
from autodistill_metaclip.labeling.options import threshold_of
from autodistill_metaclip.labeling.state import Decided
from autodistill_metaclip.results import Status

_CHUNK = 65_536


def derive_rows(
    files: Sequence[SourceFile],
    rows: np.ndarray,
    vectors: np.ndarray,
    probabilities: Callable[[np.ndarray], np.ndarray],
    classes: Sequence[str],
    confidence: float | Mapping[str, float],
    failures: Mapping[str, str],
    decisions: Mapping[str, Decided],
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The manifest rows of ``files`` (in their order), and the decisions that no longer apply.

    Args:
        files: The listed inputs.
        rows: Each file's row in ``vectors``, or -1 if it could not be read.
        vectors: The embeddings (a store's, memory-mapped is fine).
        probabilities: ``(N, D)`` embeddings -> ``(N, len(classes))`` probabilities.
        classes: The ontology's classes (a class listed twice counts at its first place).
        confidence: The threshold of ``labeled``, or one per class (:class:`~.options.
            LabelOptions`).
        failures: Why each unreadable file failed.
        decisions: Human decisions by key; one whose file changed, or whose class is not one of
            ``classes``, is not applied and is returned as dropped.
    """
    columns = np.array(sorted({c: i for i, c in reversed(list(enumerate(classes)))}.values()))
    readable = np.flatnonzero(rows >= 0)
    top_ids = np.zeros((len(files), min(TOP, len(columns))), np.int64)
    top_p = np.zeros(top_ids.shape, np.float32)
    for start in range(0, len(readable), _CHUNK):
        chunk = readable[start : start + _CHUNK]
        gathered = gather(vectors, rows[chunk])
        scores = probabilities(gathered)[:, columns]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]
        top_ids[chunk] = columns[order]
        top_p[chunk] = np.take_along_axis(scores, order, axis=1)
    manifest: dict[str, dict[str, str]] = {}
    for i, file in enumerate(files):
        if rows[i] < 0:
            error = failures.get(file.key, "not embedded")
            manifest[file.key] = new_row(file.key, file.stamp, status=Status.FAILED, error=error)
            continue
        p, best = float(top_p[i, 0]), classes[int(top_ids[i, 0])]
        manifest[file.key] = new_row(
            file.key,
            file.stamp,
            status=Status.LABELED if p >= threshold_of(confidence, best) else Status.UNLABELED,
            **{"class": best},
            confidence=f"{p:.6f}",
            top=json.dumps(
                [
                    [classes[int(c)], round(float(q), 6)]
                    for c, q in zip(top_ids[i], top_p[i], strict=True)
                ]
            ),
        )
    return manifest, apply_decisions(manifest, decisions, classes)


def apply_decisions(
    rows: dict[str, dict[str, str]], decisions: Mapping[str, Decided], classes: Sequence[str]
) -> list[str]:
    """Apply human decisions to manifest rows (in place): a class (for a labelled image, or an
    unlabeled one, which then joins the dataset), or exclusion (of a labelled image); returns
    the keys of those that no longer apply: the file changed, the class is gone, or the image
    is neither labelled nor unlabeled now."""
    known = set(classes)
    dropped = []
    for key, decision in decisions.items():
        row = rows.get(key)
        if row is None:
            continue  # the file is gone: the decision waits in case it comes back
        gone = decision.to is not None and decision.to not in known
        given = row["status"] == Status.UNLABELED and decision.to is not None
        if decision.stamp != row["stamp"] or gone or not (row["status"] == Status.LABELED or given):
            dropped.append(key)
        elif decision.to is None:
            row["decided"] = str(Decision.EXCLUDED)
        else:  # an unlabeled image given a class joins the dataset with it
            row["status"] = str(Status.LABELED)
            row["class"], row["decided"] = decision.to, str(Decision.HUMAN)
    return sorted(dropped)
