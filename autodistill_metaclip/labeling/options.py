"""``label()``'s options, declared and checked once: :class:`LabelOptions`.

``MetaCLIP.label``, :func:`~autodistill_metaclip.labeling.label_folder`,
:func:`~autodistill_metaclip.distributed.label_with_ray` and the ``label`` command all take
these fields (the command line's flags have the same names), with these defaults.

Examples:
    >>> LabelOptions(confidence=0.6, layout="val").split
    (0.7, 0.15, 0.15)
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from autodistill_metaclip.engine.checkpoints import near_duplicate_default
from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError

if TYPE_CHECKING:
    from autodistill_metaclip.inputs.sources import SourceFile

Split: TypeAlias = tuple[float, float, float]

DEFAULT_CONFIDENCE = 0.5
LAYOUTS = {"valid": ("train", "valid", "test"), "val": ("train", "val", "test")}
"""The split folder names of each ``layout``."""


@dataclass(frozen=True)
class LabelOptions:
    """How ``label()`` turns a folder into a dataset.

    Attributes:
        confidence: Minimum probability of the top class; below it the image is "unlabeled".
            One number, or a threshold per class: ``{"cat": 0.4, "dog": 0.8, "*": 0.6}``
            (``"*"``: every class not named, 0.5 if absent), e.g. the ``confidence`` that
            :func:`~autodistill_metaclip.evaluation.evaluate` reports.
        seed: Seed of the split.
        split: Fractions for train, valid and test, summing to 1; kept per class.
        layout: ``"valid"`` (autodistill's split names) or ``"val"`` (ultralytics, ImageNet).
        near_duplicates: Images at least this cosine-similar to their group's first image share
            a split; ``"auto"``: the checkpoint's own threshold
            (:attr:`~autodistill_metaclip.Checkpoint.near_duplicates`); ``None`` turns the
            grouping off.
        recursive: Also label images in subfolders.
        follow_links: Follow symbolic links wherever they lead; by default only to files inside
            the input folder (others are reported as failed).
        overwrite: Replace what an earlier run of this tool wrote in the output folder.
        resume: Continue an earlier run with the same settings: only new, changed and failed
            images are predicted; removed ones leave the dataset.
        review: Also write ``review.html``.
        progress: Show a progress bar.
    """

    confidence: float | Mapping[str, float] = 0.5
    seed: int = 0
    split: Split = (0.7, 0.15, 0.15)
    layout: str = "valid"
    near_duplicates: float | Literal["auto"] | None = "auto"
    recursive: bool = False
    follow_links: bool = False
    overwrite: bool = False
    resume: bool = False
    review: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "confidence", check_thresholds(self.confidence))
        set_(self, "seed", _check_seed(self.seed))
        set_(self, "split", check_split(self.split))
        set_(self, "near_duplicates", check_threshold(self.near_duplicates))
        if self.layout not in LAYOUTS:
            raise ArgumentError(
                "layout", f"expected one of {', '.join(LAYOUTS)}, but got {self.layout!r}"
            )
        for name in ("recursive", "follow_links", "overwrite", "resume", "review", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ArgumentTypeError(
                    name, f"expected True or False, but got {getattr(self, name)!r}"
                )
        if self.overwrite and self.resume:
            raise ArgumentError("overwrite, resume", "expected at most one of them, but got both")

    @classmethod
    def of(cls, options: Mapping[str, Any], *, caller: str = "label()") -> LabelOptions:
        """Options from keyword arguments; an unknown name is a ``TypeError`` that lists the
        valid ones and the closest."""
        names = [f.name for f in fields(cls)]
        for name in options:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise TypeError(
                    f"{caller} got an unexpected keyword argument {name!r}; {hint}"
                    f"its options are {', '.join(names)}"
                )
        return cls(**options)

    def thresholds(self, classes: Sequence[str]) -> list[float]:
        """The confidence threshold of each class; a class named in :attr:`confidence` that is
        not one of ``classes`` is refused."""
        if isinstance(self.confidence, Mapping):
            unknown = sorted(set(self.confidence) - set(classes) - {"*"})
            if unknown:
                raise ArgumentError(
                    "confidence",
                    f"thresholds for {', '.join(map(repr, unknown))}, which are not classes of "
                    f"the ontology ({', '.join(classes)})",
                )
        return [threshold_of(self.confidence, name) for name in classes]

    def near_duplicate_threshold(self, checkpoint: str) -> float | None:
        """The run's near-duplicate threshold: :attr:`near_duplicates`, or for ``"auto"`` the
        checkpoint's default (the demo model packs a class far tighter than MetaCLIP)."""
        if self.near_duplicates == "auto":
            return near_duplicate_default(checkpoint)
        return self.near_duplicates

    def list_inputs(
        self,
        root: str | os.PathLike[str],
        extensions: Any,
        *,
        exclude: str | os.PathLike[str] | None,
        policy: Any = None,
    ) -> list[SourceFile]:
        """The files a run with these options labels: ``root`` listed as :attr:`recursive` and
        :attr:`follow_links` say, without ``exclude`` (the output folder), read under the
        model's input ``policy``."""
        from autodistill_metaclip.inputs import sources

        return sources.list_images(
            root,
            extensions,
            recursive=self.recursive,
            exclude=exclude,
            follow_links=self.follow_links,
            policy=policy,
        )

    @property
    def splits(self) -> tuple[str, str, str]:
        """The split folder names of :attr:`layout`."""
        return LAYOUTS[self.layout]

    def identity(self) -> dict[str, Any]:
        """The options that make a run the same run (compared on ``resume``)."""
        return {
            "confidence": self.confidence
            if isinstance(self.confidence, float)
            else dict(sorted(self.confidence.items())),
            "seed": self.seed,
            "split": list(self.split),
            "layout": self.layout,
            "recursive": self.recursive,
            "follow_links": self.follow_links,
        }


def check_confidence(confidence: Any) -> float:
    """A threshold must be a number in [0, 1]."""
    if isinstance(confidence, bool) or not _is_number(confidence):
        raise ArgumentTypeError(
            "confidence", f"expected a number in [0, 1], but got {type(confidence).__name__}"
        )
    value = float(confidence)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ArgumentError("confidence", f"expected a number in [0, 1], but got {confidence!r}")
    return value


def check_thresholds(confidence: Any) -> float | Mapping[str, float]:
    """One threshold (:func:`check_confidence`), or ``{class: threshold}`` with ``"*"`` for
    every other class."""
    if not isinstance(confidence, Mapping):
        return check_confidence(confidence)
    checked = {}
    for name, value in confidence.items():
        if not isinstance(name, str) or not name:
            raise ArgumentTypeError("confidence", f"expected class names as keys, but got {name!r}")
        try:
            checked[name] = check_confidence(value)
        except ArgumentError as e:
            raise type(e)("confidence", f"{name!r}: {e.message}") from None
    return MappingProxyType(checked)


def threshold_of(confidence: float | Mapping[str, float], name: str) -> float:
    """The threshold of class ``name``: the one number, its own, or ``"*"``'s (0.5)."""
    if isinstance(confidence, Mapping):
        return confidence.get(name, confidence.get("*", DEFAULT_CONFIDENCE))
    return confidence


def check_split(split: Any) -> Split:
    """Three finite, non-negative fractions (train, valid, test) that sum to 1."""
    try:
        values = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        values = ()
    if (
        len(values) != 3
        or not all(math.isfinite(v) for v in values)
        or min(values) < 0
        or abs(sum(values) - 1) > 1e-6
    ):
        raise ArgumentError(
            "split",
            f"expected three fractions (train, valid, test) summing to 1, but got {split!r}",
        )
    return values[0], values[1], values[2]


def check_threshold(threshold: Any) -> float | Literal["auto"] | None:
    """``None`` (no near-duplicate grouping), ``"auto"`` or a cosine in (0, 1]."""
    if threshold is None or threshold == "auto":
        return threshold
    if isinstance(threshold, bool) or not _is_number(threshold):
        raise ArgumentTypeError(
            "near_duplicates", f"expected a cosine, 'auto' or None, but got {threshold!r}"
        )
    if not 0 < float(threshold) <= 1:
        raise ArgumentError(
            "near_duplicates", f"expected a cosine in (0, 1], but got {threshold!r}"
        )
    return float(threshold)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not hasattr(seed, "__index__") or int(seed) < 0:
        raise ArgumentError("seed", f"expected a non-negative integer, but got {seed!r}")
    return int(seed)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str | bytes)
