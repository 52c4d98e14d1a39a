"""``predict``: zero-shot classes of images."""

from __future__ import annotations

from typing import Any

import click

from autodistill_metaclip.cli.options import expand, model_options, model_spec, ontology_options
from autodistill_metaclip.cli.runner import OutputFile, command, printable, usage
from autodistill_metaclip.labeling.options import check_confidence
from autodistill_metaclip.results import Status


@click.command()
@click.argument("images", nargs=-1, required=True)
@ontology_options
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("-k", "--top", type=click.IntRange(1), default=3, help="Classes shown per image.")
@click.option("--plot", type=OutputFile(".png"), help="PNG: bars for one image, else a grid.")
@model_options
@command
def predict(
    images: tuple[str, ...], confidence: float, top: int, plot: str | None, **params: Any
) -> Any:
    """Classify images (files, folders, URLs or URIs) zero-shot.

    Every image shows its best classes, also when none reaches --confidence.

    \b
    Example:
      autodistill-metaclip predict -m demo photo.jpg -c "red circle" -c "blue square"
    """
    with usage():
        inputs, spec = expand(images), model_spec(params, ontology=True)
        threshold = check_confidence(confidence)
    model = spec.build(params.pop("device"))
    predictions = list(model.iter_predictions(inputs, threshold))
    rows = [p.to_dict(top) for p in predictions]
    if plot:
        from autodistill_metaclip import plots

        plots.save(plots.predictions_picture(predictions), plot)
    failed = sum(row["status"] == Status.FAILED for row in rows)
    return rows, "\n".join(printable(_line(row)) for row in rows), failed


def _line(row: dict[str, Any]) -> str:
    """One image's line of text (its name and messages may hold control characters: the
    caller shows them with :func:`printable`)."""
    if row["status"] == Status.FAILED:
        return f"{row['image']}: error: {row['error']}"
    shown = [f"{r['class']} {r['confidence']:.3f}" for r in row["top"]]
    passed = len(row["predictions"])
    best = ", ".join(shown[:passed]) or f"(none >= {row['threshold']:g}) best: {shown[0]}"
    rest = shown[max(passed, 1) :]
    return f"{row['image']}: {best}" + (f"   [{', '.join(rest)}]" if rest else "")
