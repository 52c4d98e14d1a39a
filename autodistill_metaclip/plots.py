"""Pictures of results: class probabilities, labelled images, search results, clusters.

Every function returns a :class:`Picture`, a ``matplotlib.figure.Figure`` made without pyplot
(so it works headless and leaks no global state) that notebooks show inline without
``%matplotlib``. :func:`save` writes a PNG whose size in pixels is the figure size in inches
times ``dpi``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure
from PIL import Image

from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.inputs.files import atomic_write
from autodistill_metaclip.inputs.images import load_image

if TYPE_CHECKING:
    from autodistill_metaclip.evaluation import Evaluation
    from autodistill_metaclip.index.clusters import Clustering
    from autodistill_metaclip.index.core import Hit
    from autodistill_metaclip.results import Prediction

_TILE_PIXELS = 256


class Picture(Figure):
    """A matplotlib figure that Jupyter displays as a PNG."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def probability_chart(
    image: Any, result: sv.Classifications, classes: Sequence[str], *, top: int = 10
) -> Picture:
    """The image beside a bar chart of its most probable classes.

    ``result`` is ``predict(image, confidence=0.0)`` for the full distribution.
    """
    figure = Picture(figsize=(8, 3.5), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.4))
    _show(left, image)
    count = min(top, len(result))
    names = [classes[i] for i in result.class_id[:count]][::-1]
    scores = np.asarray(result.confidence if result.confidence is not None else [])[:count][::-1]
    bars = right.barh(names, scores, color="#3b75af")
    right.bar_label(bars, fmt="%.3f", padding=3)
    right.set_xlim(0, 1.15)
    right.set_xlabel("probability")
    right.spines[["top", "right"]].set_visible(False)
    return figure


def image_grid(
    tiles: Sequence[tuple[Any, str]],
    *,
    columns: int = 4,
    tile_inches: float = 2.0,
    title: str | None = None,
) -> Picture:
    """Images in a grid, each with a caption; unreadable images show why instead."""
    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    figure = Picture(
        figsize=(columns * tile_inches, rows * tile_inches + (0.4 if title else 0)),
        layout="constrained",
    )
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, (image, caption) in zip(axes, tiles, strict=False):
        _show(ax, image)
        ax.set_title(caption, fontsize=8)
    for ax in axes[len(tiles) :]:
        ax.axis("off")
    if title:
        figure.suptitle(title)
    return figure


def predictions_picture(predictions: Sequence[Prediction]) -> Picture:
    """One prediction's probability bars beside its image, or a grid of several images with
    their best class (``-`` for an image that could not be read)."""
    if len(predictions) == 1 and predictions[0].error is None:
        p = predictions[0]
        ranked = sv.Classifications(class_id=p.class_ids, confidence=p.probabilities)
        return probability_chart(p.source, ranked, p.classes)
    return image_grid([(p.source, p.best[0] if p.error is None else "-") for p in predictions])


def labelled_grid(
    dataset: sv.ClassificationDataset, *, limit: int = 16, columns: int = 4
) -> Picture:
    """The first ``limit`` images of a labelled dataset with their class and confidence."""
    tiles = []
    for path in dataset.image_paths[:limit]:
        annotation = dataset.annotations[path]
        score = annotation.confidence[0] if annotation.confidence is not None else float("nan")
        tiles.append((path, f"{dataset.classes[annotation.class_id[0]]} {score:.2f}"))
    title = f"{len(tiles)} of {len(dataset)} labelled images"
    return image_grid(tiles, columns=columns, title=title)


def search_grid(hits: Sequence[Hit], *, query: str | None = None, columns: int = 4) -> Picture:
    """Search results, best first, with their cosine scores."""
    tiles = [
        (hit.path, f"{i + 1}. {hit.score:.3f}  {PurePosixPath(str(hit.path)).name[:18]}")
        for i, hit in enumerate(hits)
    ]
    return image_grid(tiles, columns=columns, title=f"Search: {query}" if query else None)


def cluster_sheet(
    clustering: Clustering, *, per_cluster: int = 6, limit: int | None = None
) -> Picture:
    """One row per cluster (the first ``limit`` of them): its most central images, labelled with
    its name and size."""
    shown = clustering.clusters[:limit]
    rows = len(shown)
    figure = Picture(figsize=(per_cluster * 1.6 + 1.6, rows * 1.6), layout="constrained")
    axes = figure.subplots(rows, per_cluster + 1, squeeze=False)
    for row, cluster in zip(axes, shown, strict=True):
        label = cluster.name or f"cluster {cluster.id}"
        row[0].axis("off")
        row[0].text(
            0.5,
            0.5,
            f"{label}\n{len(cluster.members)} images",
            ha="center",
            va="center",
            fontsize=9,
            wrap=True,
        )
        for ax, path in zip(row[1:], cluster.representatives[:per_cluster], strict=False):
            _show(ax, path)
        for ax in row[1 + len(cluster.representatives[:per_cluster]) :]:
            ax.axis("off")
    return figure


def evaluation_chart(evaluations: Sequence[Evaluation]) -> Picture:
    """Each evaluation's confusion matrix (rows: truth), then all their coverage curves:
    accuracy of the labels kept against the share kept, as ``confidence`` rises."""
    figure = Picture(figsize=(4.2 * (len(evaluations) + 1), 4.2), layout="constrained")
    axes = figure.subplots(1, len(evaluations) + 1, squeeze=False)[0]
    for ax, e in zip(axes, evaluations, strict=False):
        ax.imshow(e.confusion, cmap="Blues")
        ax.set_xticks(range(len(e.classes)), e.classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(e.classes)), e.classes, fontsize=7)
        for (row, column), count in np.ndenumerate(e.confusion):
            if count:
                ax.text(column, row, str(count), ha="center", va="center", fontsize=7)
        ax.set_title(f"{e.name}: accuracy {e.accuracy:.2f}", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    curves = axes[-1]
    for e in evaluations:
        curves.plot(e.coverage, e.kept_accuracy, label=e.name)
        if e.threshold is not None:
            curves.plot([e.coverage_at_target], [e.target_accuracy], "o", color="black")
    curves.set_xlabel("share of images kept")
    curves.set_ylabel("accuracy of the kept labels")
    curves.set_ylim(0, 1.02)
    curves.legend(fontsize=8)
    curves.set_title("coverage", fontsize=9)
    return figure


def save(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG of exactly figure-size x ``dpi`` pixels, atomically."""
    with atomic_write(path) as file:
        figure.savefig(file, dpi=dpi, format="png")
    return Path(path)


def _show(ax: Any, image: Any) -> None:
    ax.axis("off")
    try:
        picture = load_image(image)
    except (ImageLoadError, TypeError) as e:
        ax.text(
            0.5, 0.5, f"unreadable:\n{str(e)[:60]}", ha="center", va="center", fontsize=6, wrap=True
        )
        return
    picture.thumbnail((_TILE_PIXELS, _TILE_PIXELS), Image.Resampling.LANCZOS)
    ax.imshow(picture)
