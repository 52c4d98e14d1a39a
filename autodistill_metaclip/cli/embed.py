"""``embed``: images and texts as vectors, into a file, JSON, or Ray's shards."""

from __future__ import annotations

from typing import Any

import click

from autodistill_metaclip.cli.options import (
    expand,
    hint_bf16,
    model_options,
    model_spec,
    ray_from,
    ray_options,
)
from autodistill_metaclip.cli.runner import OutputFile, command, results_only_on_stdout, usage


@click.command()
@click.argument("images", nargs=-1)
@click.option("-t", "--text", "texts", multiple=True, help="Embed this text (repeatable).")
@click.option(
    "-o",
    "--output",
    help="Write exactly this .npy (vectors) or .npz (inputs, vectors) file; with --ray, the "
    "parquet folder or URI.",
)
@ray_options
@model_options
@command
def embed(
    images: tuple[str, ...], texts: tuple[str, ...], output: str | None, **params: Any
) -> Any:
    """Embed images (files, folders, URLs, URIs) and texts as L2-normalised vectors.

    With --ray, give one folder or URI (s3://bucket/photos) and -o for the parquet shards.

    \b
    Examples:
      autodistill-metaclip embed -m demo photos/ -t "a red circle" -o vectors.npz
      autodistill-metaclip embed -m demo photos/ --ray --actors 2 -o embeddings/
    """
    from autodistill_metaclip.jobs import EmbedJob

    with usage():
        ray = ray_from(params)
        if output is not None and ray is None:
            try:
                OutputFile(".npy", ".npz").convert(output, None, None)
            except click.BadParameter as e:
                raise click.BadParameter(e.message, param_hint="'-o/--output'") from None
        inputs = list(images) if ray is not None else expand(images)
        job = EmbedJob(
            model_spec(params, ontology=False), inputs, texts, output, ray, params.get("device")
        )
    if ray is None:
        hint_bf16(job.spec, job.device)
    with results_only_on_stdout():
        done = job.run()
    if ray is not None:
        counts = done.counts or {}
        text = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        text += f" -> {output} (parquet: key, path, stamp, status, error, embedding)"
        return {"output": output, **counts}, text, counts.get("failed", 0)
    errors = [{"input": name, "error": error} for name, error in done.errors]
    data: dict[str, Any] = {"dim": done.dim, "inputs": done.inputs, "errors": errors}
    if output:
        data["output"] = output
    else:
        data["embeddings"] = done.vectors.tolist()
    text = f"{len(done.inputs)} embeddings of dimension {done.dim}"
    text += f" -> {output}" if output else " (-o FILE or --json for the vectors)"
    text += "".join(f"\n  error: {e['error']}" for e in errors)
    return data, text, len(errors)
