"""``review``, ``fix``, ``evaluate``: look at the labels, correct them, measure them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autodistill_metaclip.cli.options import (
    model_options,
    model_spec,
    ontology_options,
    read_ontology,
)
from autodistill_metaclip.cli.runner import OutputFile, command, usage


@click.command()
@click.argument("dataset_folder", metavar="DATASET", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=OutputFile(".html"), help="Where [DATASET/review.html].")
@command
def review(dataset_folder: str, output: str | None) -> Any:
    """Write the review page of a labelled dataset: open it in a browser, fix labels, export.

    \b
    Example:
      autodistill-metaclip review dataset/ && xdg-open dataset/review.html
    """
    from autodistill_metaclip.labeling.folder import locked
    from autodistill_metaclip.labeling.review import write_review
    from autodistill_metaclip.labeling.state import read_run

    with usage():
        read_run(Path(dataset_folder))  # a dataset written by label, or a usage error
    with locked(Path(dataset_folder)):  # no label() or fix rewrites it meanwhile
        page = write_review(dataset_folder, output)
    return {"review": str(page)}, f"review page -> {page}", 0


@click.command()
@click.argument("dataset_folder", metavar="DATASET", type=click.Path(exists=True, file_okay=False))
@click.argument("corrections", type=click.Path(exists=True, dir_okay=False))
@command
def fix(dataset_folder: str, corrections: str) -> Any:
    """Apply corrections exported from the review page: move images, mark the manifest.

    \b
    Example:
      autodistill-metaclip fix dataset/ ~/Downloads/corrections.json
    """
    from autodistill_metaclip.labeling.corrections import (
        apply_corrections,
        correction_report,
        read_corrections,
    )
    from autodistill_metaclip.labeling.state import read_run

    with usage():  # a dataset and a readable corrections file, before anything moves
        read_corrections(corrections)
        read_run(Path(dataset_folder))
    counts = apply_corrections(dataset_folder, corrections)
    total = correction_report(dataset_folder)["total"]
    text = (
        f"reassigned {counts['reassigned']}, excluded {counts['excluded']}, labelled "
        f"{counts['labelled']} (were unlabeled), unchanged {counts['unchanged']} -> "
        f"{dataset_folder} (manifest column 'decided')"
    )
    return {**counts, "dataset": total}, text, 0


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@ontology_options
@click.option(
    "--against", multiple=True, type=click.Path(exists=True, dir_okay=False),
    help="Another ontology JSON to compare with (repeatable).",
)  # fmt: skip
@click.option(
    "--target",
    "target_accuracy",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.95,
    show_default=True,
    help="Accuracy the reported --confidence threshold must reach.",
)
@click.option("--plot", type=OutputFile(".png"), help="Save confusion matrices and coverage.")
@model_options
@command
def evaluate(
    folder: str, against: tuple[str, ...], target_accuracy: float, plot: str | None, **params: Any
) -> Any:
    """Score the classes (and --against ontologies) on a folder of hand-labelled class folders;
    or, given a dataset written by label, report how many labels a human changed per class.

    \b
    Examples:
      autodistill-metaclip evaluate labelled/ -m demo -c "red circle" -c "blue square"
      autodistill-metaclip evaluate dataset/
    """
    from autodistill_metaclip.jobs import EvaluateJob

    with usage():
        classes_given = any(params[n] for n in ("classes", "ontology_file", "examples"))
        spec = model_spec(params, ontology=True) if classes_given else None
        others: dict[str, Any] = {}
        for path in against:
            name = Path(path).stem
            if name in others:
                raise click.UsageError(f"--against {path!r}: a second ontology named {name!r}")
            others[name] = read_ontology(path, "--against")
        job = EvaluateJob(folder, spec, others, target_accuracy, params.get("device"))
    if job.is_dataset:
        return _corrections(job.run())
    evaluations = job.run()
    if plot:
        from autodistill_metaclip import plots

        plots.save(plots.evaluation_chart(evaluations), plot)
    from autodistill_metaclip.evaluation import report

    failed = {f for e in evaluations for f in e.failed}
    text = report(evaluations) + "".join(f"\n  failed: {f}" for f in sorted(failed)[:20])
    return [e.to_dict() for e in evaluations], text, len(failed)


def _corrections(found: dict[str, Any]) -> Any:
    lines = [
        f"{name}: {c['labeled']} labelled, {c['reassigned']} reassigned, {c['excluded']} excluded"
        + (f", {c['kept']:.0%} kept" if c["kept"] is not None else "")
        for name, c in {**found["classes"], "total": found["total"]}.items()
    ]
    return found, "\n".join(lines), 0
