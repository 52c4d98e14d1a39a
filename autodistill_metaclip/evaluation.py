"""How good are the labels? Score models and ontologies on a small hand-labelled folder.

A folder of class folders (``cat/``, ``dog/``, ...) is the truth; each class folder's name must
be a class of every model's ontology (which may have more, e.g. an ``other`` class): the class's
exact name, or the safe folder name ``label()`` gives it (``a/b`` -> ``a_b``). A folder name
that two classes could claim (``red_circle`` with classes ``red/circle`` and ``red_circle``, or
``red/circle`` and ``red:circle``) is refused, never guessed. What is not read is reported in
:attr:`Evaluation.skipped`: a link to a folder (never followed), a class folder with no images,
a file beside the class folders. Images are embedded once per distinct checkpoint, so comparing
several ontologies or prompt templates on one checkpoint costs one pass over the images.

Examples:
    >>> results = evaluate({"plain": plain, "templated": templated}, "labelled/")  # doctest: +SKIP
    >>> print(report(results))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.labeling.layout import class_folders, safe_name
from autodistill_metaclip.results import gather

if TYPE_CHECKING:
    from autodistill_metaclip.model import MetaCLIP


@dataclass(frozen=True)
class Evaluation:
    """One model's scores on a labelled folder.

    Attributes:
        name: The name it was given in :func:`evaluate`.
        classes: The model's classes: rows (truth) and columns (prediction) of ``confusion``.
        accuracy: Top-1 accuracy over the readable images.
        per_class: ``{class: {"precision", "recall", "support"}}`` for every class.
        confusion: ``(C, C)`` counts, ``[true class, predicted class]``.
        thresholds: Confidence thresholds, descending (each image's top probability).
        coverage: Fraction of images whose top probability is at least each threshold.
        kept_accuracy: Accuracy of those images.
        target_accuracy: The accuracy asked for.
        threshold: The lowest ``confidence`` whose kept labels reach ``target_accuracy``
            (``None`` if no threshold does); ``label(confidence=threshold)`` keeps that share.
        failed: Images that could not be read, with the reason.
        skipped: What in the folder was not read, by name, with the reason (a symbolic link,
            a class folder with no images, a file beside the class folders).
        class_thresholds: For each class the model predicted, the lowest ``confidence`` at
            which the images it labels with that class are at least ``target_accuracy``
            correct (1.0 when no threshold is: they stay unlabeled).
        ranked: The model's class (index) and whether it was right, for each image in the
            order of :attr:`thresholds`.
    """

    name: str
    classes: list[str]
    accuracy: float
    per_class: dict[str, dict[str, float]]
    confusion: np.ndarray
    thresholds: np.ndarray
    coverage: np.ndarray
    kept_accuracy: np.ndarray
    target_accuracy: float
    threshold: float | None
    failed: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)
    class_thresholds: dict[str, float] = field(default_factory=dict)
    ranked: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, bool))
    )

    @property
    def confidence(self) -> dict[str, float]:
        """The thresholds in the form ``label(confidence=...)`` (and ``label
        --confidence-from``) takes: each class's own, and ``"*"`` for the others (the overall
        :attr:`threshold`, when one reaches the target)."""
        overall = {} if self.threshold is None else {"*": self.threshold}
        return {**self.class_thresholds, **overall}

    @property
    def coverage_at_target(self) -> float:
        """The share of images kept at :attr:`threshold` (0 if none reaches the target)."""
        if self.threshold is None:
            return 0.0
        return float(self.coverage[self.thresholds >= self.threshold][-1])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "name": self.name,
            "accuracy": self.accuracy,
            "per_class": self.per_class,
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
            "target_accuracy": self.target_accuracy,
            "threshold": self.threshold,
            "coverage_at_target": self.coverage_at_target,
            "failed": self.failed,
            "skipped": self.skipped,
            "confidence": self.confidence,
        }


def evaluate(
    models: MetaCLIP | Mapping[str, MetaCLIP],
    folder: str | os.PathLike[str],
    *,
    target_accuracy: float = 0.95,
) -> list[Evaluation]:
    """Score each model (its checkpoint, ontology and templates) on a folder of class folders.

    Args:
        models: A model, or ``{name: model}`` to compare (e.g. two ontologies, or the same
            ontology with and without ``prompt_templates``).
        folder: Class folders of images, named as the classes.
        target_accuracy: The accuracy the reported ``threshold`` must reach.

    Raises:
        ValueError: ``folder`` has no class folders or images, a folder name is not a class
            of a model or could be two of its classes, or ``target_accuracy`` is not in (0, 1].
    """
    candidates = dict(models) if isinstance(models, Mapping) else {"model": models}
    if not candidates:
        raise ArgumentError("models", "expected at least one model")
    if not 0 < target_accuracy <= 1:
        raise ArgumentError(
            "target_accuracy", f"expected a number in (0, 1], but got {target_accuracy}"
        )
    labelled, skipped = _labelled_files(Path(folder))
    named = {name: _folder_classes(model.classes, set(labelled.values()), name)
             for name, model in candidates.items()}  # fmt: skip
    files = sorted(labelled, key=lambda f: f.location)
    embedded: dict[Any, tuple[np.ndarray, dict[str, str]]] = {}
    results = []
    for name, model in candidates.items():
        # What decides the image embeddings: the weights, the precision, the decoding.
        key = (tuple(sorted(model.identity.items())), model.precision, model.spec.draft_decoding)
        if key not in embedded:
            embedded[key] = _embed(model, files)
        vectors, failed = embedded[key]
        readable = [f for f in files if f.location not in failed]
        truth = [named[name][labelled[f]] for f in readable]
        probabilities = model.probabilities(vectors)
        results.append(
            _score(name, model.classes, truth, probabilities, failed)
            if readable
            else _nothing_readable(name, failed)
        )
        results[-1] = replace(_with_target(results[-1], target_accuracy), skipped=skipped)
    return results


def report(evaluations: list[Evaluation]) -> str:
    """A text summary: each model's accuracy and threshold, then per class which one helps."""
    lines = []
    for e in evaluations:
        at = (
            f"confidence >= {e.threshold:.3f} keeps {e.coverage_at_target:.0%}"
            if e.threshold is not None
            else "no threshold reaches it"
        )
        lines.append(f"{e.name}: accuracy {e.accuracy:.3f}; for {e.target_accuracy:.0%}, {at}")
    if len(evaluations) > 1:
        lines.append("recall per class (best marked *):")
        classes = sorted({c for e in evaluations for c, s in e.per_class.items() if s["support"]})
        for name in classes:
            recalls = [e.per_class.get(name, {}).get("recall", 0.0) for e in evaluations]
            best = int(np.argmax(recalls))
            cells = [
                f"{e.name} {r:.2f}{'*' if i == best and len(set(recalls)) > 1 else ''}"
                for i, (e, r) in enumerate(zip(evaluations, recalls, strict=True))
            ]
            lines.append(f"  {name}: " + ", ".join(cells))
    skipped = evaluations[0].skipped if evaluations else {}
    lines += [f"skipped {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def _labelled_files(folder: Path) -> tuple[dict[sources.SourceFile, str], dict[str, str]]:
    """``{image: its class folder's name}`` from the class folders of ``folder`` (a link is
    followed only to a file inside ``folder``), and what was skipped, with the reason."""
    if not folder.is_dir():
        raise ArgumentError("folder", f"{str(folder)!r} is not a folder")
    truth, skipped = {}, {}
    within = os.path.realpath(folder)
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            kind = "a folder" if entry.is_dir() else "a file"
            skipped[entry.name] = f"a symbolic link to {kind}; links are not followed"
        elif not entry.is_dir():
            skipped[entry.name] = "a file, not a class folder"
        else:
            files = sources.list_images(entry, None, recursive=True)
            truth.update({replace(file, within=within): entry.name for file in files})
            if not files:
                skipped[entry.name] = "a class folder with no images"
    if not truth:
        raise ArgumentError("folder", f"{str(folder)!r} has no class folders with images")
    return truth, skipped


def _folder_classes(classes: list[str], folders: set[str], model: str) -> dict[str, str]:
    """``{class folder: class}`` for ``folders``: a folder is the class of that exact name, or
    the class whose safe folder name it is (``a/b`` -> ``a_b``, as ``label()`` writes it).

    Raises:
        ArgumentError: A folder is no class of ``model``, or two classes could claim it.
    """
    claims: dict[str, set[str]] = {}
    for name, written in class_folders(classes).items():
        for candidate in (name, safe_name(name), written):
            claims.setdefault(candidate, set()).add(name)
    unknown = sorted(f for f in folders if f not in claims)
    if unknown:
        raise ArgumentError(
            "folder",
            f"class folders {', '.join(map(repr, unknown))} are not classes of "
            f"{model!r} ({', '.join(classes)})",
        )
    for folder in sorted(folders):
        if len(claims[folder]) > 1:
            both = " and ".join(map(repr, sorted(claims[folder])))
            raise ArgumentError(
                "folder",
                f"expected each class folder to name one class, but {folder!r} could be "
                f"{both} of {model!r}; rename the folder or one of the classes",
            )
    return {folder: next(iter(claims[folder])) for folder in folders}


def _embed(model: MetaCLIP, files: list[sources.SourceFile]) -> tuple[np.ndarray, dict[str, str]]:
    embedded = gather(model.iter_embeddings(files), model.dim)
    return embedded.vectors, {files[i].location: str(e) for i, e in embedded.failures.items()}


def _score(
    name: str,
    classes: list[str],
    truth: list[str],
    probabilities: np.ndarray,
    failed: dict[str, str],
) -> Evaluation:
    index = {c: i for i, c in enumerate(classes)}
    true = np.array([index[t] for t in truth])
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(confusion, (true, predicted), 1)
    per_class = {}
    for i, c in enumerate(classes):
        hits, predicted_as, support = confusion[i, i], confusion[:, i].sum(), confusion[i].sum()
        per_class[c] = {
            "precision": float(hits / predicted_as) if predicted_as else 0.0,
            "recall": float(hits / support) if support else 0.0,
            "support": int(support),
        }
    order = np.argsort(-probabilities.max(axis=1), kind="stable")
    top = probabilities.max(axis=1)[order]
    correct = (predicted == true)[order]
    kept = np.arange(1, len(order) + 1)
    return Evaluation(
        name, list(classes), float(correct.mean()), per_class, confusion,
        top, kept / len(order), np.cumsum(correct) / kept, 1.0, None, failed,
        ranked=(predicted[order], correct),
    )  # fmt: skip


def _nothing_readable(name: str, failed: dict[str, str]) -> Evaluation:
    empty = np.zeros(0)
    return Evaluation(name, [], 0.0, {}, np.zeros((0, 0)), empty, empty, empty, 1.0, None, failed)


def _with_target(evaluation: Evaluation, target: float) -> Evaluation:
    """Set the lowest thresholds (overall, and per predicted class) at which the kept labels
    are at least ``target`` accurate."""
    thresholds, (predicted, correct) = evaluation.thresholds, evaluation.ranked
    per_class = {}
    for i, name in enumerate(evaluation.classes):
        mine = predicted == i
        if mine.any():
            lowest = _lowest_reaching(thresholds[mine], correct[mine], target)
            per_class[name] = 1.0 if lowest is None else lowest
    overall = _lowest_reaching(thresholds, correct, target)
    return replace(
        evaluation, target_accuracy=target, threshold=overall, class_thresholds=per_class
    )


def _lowest_reaching(scores: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """The lowest of ``scores`` (descending) at which the images at or above it are at least
    ``target`` correct; ``None`` if none is."""
    if not len(scores):
        return None
    accuracy = np.cumsum(correct) / np.arange(1, len(scores) + 1)
    # Only the last image of a run of equal confidences is a threshold one can set.
    settable = np.append(scores[1:] != scores[:-1], True)
    reaching = np.flatnonzero((accuracy >= target) & settable)
    return float(scores[reaching[-1]]) if len(reaching) else None
