"""``label``: a folder into a train/valid/test dataset, here or on Ray."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from autodistill_metaclip.cli.options import (
    hint_bf16,
    label_options,
    label_options_from,
    model_options,
    model_spec,
    ontology_options,
    ray_from,
    ray_options,
)
from autodistill_metaclip.cli.runner import OutputFile, command, results_only_on_stdout, usage


@click.command()
@click.argument("input_folder")
@click.argument("output_folder", type=click.Path(file_okay=False))
@ontology_options
@click.option("-e", "--extension", multiple=True, help="Only these suffixes [default: all].")
@label_options
@click.option("--grid", type=OutputFile(".png"), help="Save a PNG of labelled images.")
@click.option("--shards", help="With --ray: where the parquet results go [OUTPUT_FOLDER-shards].")
@ray_options
@model_options
@command
def label(
    input_folder: str, output_folder: str, extension: tuple[str, ...], grid: str | None,
    shards: str | None, **params: Any,
) -> Any:  # fmt: skip
    """Label a folder (or a URI such as s3://bucket/photos) into a train/valid/test dataset.

    \b
    Examples:
      autodistill-metaclip label -m demo photos/ dataset/ -c cat -c dog --confidence 0.6
      autodistill-metaclip label -m demo photos/ dataset/ -c cat -c dog --ray --actors 2
    """
    from autodistill_metaclip.jobs import LabelJob

    with usage():
        options = label_options_from(params, progress=sys.stderr.isatty())
        job = LabelJob(
            model_spec(params, ontology=True),
            input_folder,
            output_folder,
            extensions=list(extension) or None,
            options=options,
            ray=ray_from(params),
            shards=shards,
            device=params.get("device"),
        )
    if job.ray is None:
        hint_bf16(job.spec, job.device)
    with results_only_on_stdout():
        written = job.run()
    if grid:
        from autodistill_metaclip import plots

        plots.save(plots.labelled_grid(written.dataset), grid)
    summary = written.summary
    text = (
        f"labeled {summary['labeled']}, unlabeled {summary['unlabeled']}, failed "
        f"{summary['failed']} -> {output_folder} (manifest.csv; check the labels in "
        f"{Path(output_folder) / 'review.html'})"
    )
    text += "".join(f"\n  failed: {f['image']}: {f['error']}" for f in summary["failures"][:20])
    return {"output": output_folder, **summary}, text, summary["failed"]
