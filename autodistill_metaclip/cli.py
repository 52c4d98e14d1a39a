"""The ``autodistill-metaclip`` command (also ``python -m autodistill_metaclip``).

Human-readable output by default, ``--json`` for scripts. Exit codes: 0 success, 1 failure,
2 bad usage. Errors are one line unless ``--verbose``.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from autodistill_metaclip import checkpoints
from autodistill_metaclip.checkpoints import DEFAULT_CHECKPOINT

logger = logging.getLogger("autodistill_metaclip")


def _options(*options: Callable[..., Any]) -> Callable[..., Any]:
    """Several click options as one decorator, in the order given."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


def _command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add --json and --verbose; turn exceptions into one-line errors with exit code 1."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("-v", "--verbose", is_flag=True, help="Show library logs and full tracebacks.")
    @functools.wraps(function)
    def wrapper(*args: Any, as_json: bool, verbose: bool, **kwargs: Any) -> None:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        try:
            result = function(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as e:
            if verbose:
                raise
            click.echo(f"error: {' '.join(str(e).split()) or type(e).__name__}", err=True)
            sys.exit(1)
        if result is None:
            return
        data, text, failed = result
        click.echo(json.dumps(data, indent=2, default=str) if as_json else text)
        if failed:
            sys.exit(1)

    return wrapper


_model_options = _options(
    click.option(
        "-m",
        "--checkpoint",
        default=None,
        help=f"Checkpoint name, open_clip architecture or config JSON "
        f"[default: {DEFAULT_CHECKPOINT}, or the index's own].",
    ),
    click.option("--weights", default=None, help="Pretrained tag or local weights file."),
    click.option("--device", default=None, help="cpu, cuda, cuda:N or mps [default: best]."),
    click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None),
    click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
    click.option(
        "--templates",
        default=None,
        help='Prompt template(s) with {} or a preset ("openai"), comma-free.',
    ),
)


_ontology_options = _options(
    click.option(
        "-c",
        "--class",
        "classes",
        multiple=True,
        metavar="NAME|CAPTION=NAME",
        help='A class; a bare NAME is prompted as "a photo of a NAME".',
    ),
    click.option(
        "--ontology",
        type=click.Path(exists=True, dir_okay=False),
        help="JSON file of {caption: class}.",
    ),
    click.option(
        "--examples",
        type=click.Path(exists=True, file_okay=False),
        help="Folder with one subfolder of example images per class.",
    ),
)


_ray_options = _options(
    click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS]",
        help="Run on Ray: a local instance, or the cluster at ADDRESS.",
    ),
    click.option(
        "--actors",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="With --ray: model replicas (one GPU each where there are GPUs).",
    ),
    click.option(
        "--cpus-per-actor",
        type=click.FloatRange(0, min_open=True),
        default=1.0,
        show_default=True,
        help="With --ray: CPUs each replica reserves.",
    ),
)


def _spec(
    checkpoint: str | None,
    weights: str | None,
    precision: str | None,
    batch_size: int,
    templates: str | None,
    ontology: Any = None,
    device: str | None = None,
) -> Any:
    """The model the options describe, not yet loaded (Ray actors build it themselves)."""
    from autodistill_metaclip.model import ModelSpec
    from autodistill_metaclip.zeroshot import resolve_templates

    return ModelSpec(
        ontology=ontology,
        checkpoint=checkpoint or DEFAULT_CHECKPOINT,
        weights=weights,
        precision=precision,
        batch_size=batch_size,
        prompt_templates=resolve_templates(templates),
    )


def _model(device: str | None = None, **options: Any) -> Any:
    """The model the options describe, loaded here."""
    return _spec(**options).build(device)


def _ontology(classes: tuple[str, ...], ontology_file: str | None, examples: str | None) -> Any:
    from autodistill_metaclip.images import find_images
    from autodistill_metaclip.zeroshot import ExampleOntology

    given = sum(bool(x) for x in (classes, ontology_file, examples))
    if given != 1:
        raise click.UsageError(
            "give the classes with exactly one of -c/--class, --ontology or --examples"
        )
    if examples:
        folders = sorted(p for p in Path(examples).iterdir() if p.is_dir())
        return ExampleOntology({f.name: find_images(f, None) for f in folders})
    if ontology_file:
        mapping = json.loads(Path(ontology_file).read_text(encoding="utf-8"))
        if not isinstance(mapping, dict):
            raise click.UsageError("--ontology: expected a JSON object of {caption: class}")
        return mapping
    pairs = [c.split("=", 1) if "=" in c else (f"a photo of a {c}", c) for c in classes]
    return {caption.strip(): name.strip() for caption, name in pairs}


def _expand(inputs: tuple[str, ...]) -> list[str]:
    """Image arguments: files and URLs as given, folders as the images inside them."""
    from autodistill_metaclip.images import find_images

    out: list[str] = []
    for item in inputs:
        if Path(item).is_dir():
            out.extend(str(p) for p in find_images(item, None))
        else:
            out.append(item)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="autodistill-metaclip")
def main() -> None:
    """MetaCLIP for zero-shot classification, embeddings, search and dataset labelling.

    Every command runs offline on the bundled demo model with -m demo.
    """


@main.command()
@click.argument("images", nargs=-1, required=True)
@_ontology_options
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Save a PNG: bars for one image, a grid for several.",
)
@_model_options
@_command
def predict(
    images: tuple[str, ...],
    classes: tuple[str, ...],
    ontology: str | None,
    examples: str | None,
    confidence: float,
    plot: str | None,
    **model: Any,
) -> Any:
    """Classify images (files, folders or URLs) zero-shot.

    \b
    Example:
      autodistill-metaclip predict -m demo photo.jpg -c "red circle" -c "blue square"
    """
    from autodistill_metaclip.pipeline import encode_images

    metaclip = _model(**model, ontology=_ontology(classes, ontology, examples))
    names = metaclip.ontology.classes()
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    inputs = _expand(images)
    for item in encode_images(metaclip.encoder, inputs, batch_size=metaclip.batch_size):
        if item.embedding is None:
            rows.append({"image": item.source, "error": str(item.error)})
            lines.append(f"{item.source}: error: {item.error}")
            continue
        result = metaclip.head.classify(item.embedding[None], 0.0)[0]
        ranked = [
            {"class": names[i], "confidence": round(float(p), 6)}
            for i, p in zip(result.class_id, result.confidence, strict=True)
        ]
        kept = [r for r in ranked if r["confidence"] >= confidence]
        rows.append({"image": item.source, "predictions": kept})
        best = f"{kept[0]['class']} {kept[0]['confidence']:.3f}" if kept else "(below threshold)"
        runners = ", ".join(f"{r['class']} {r['confidence']:.3f}" for r in ranked[1:3])
        lines.append(f"{item.source}: {best}   [{runners}]")
        if plot and len(inputs) == 1:
            from autodistill_metaclip import plots

            plots.save(plots.probability_chart(item.source, result, names), plot)
    if plot and len(rows) > 1:
        from autodistill_metaclip import plots

        tiles = [
            (r["image"], r["predictions"][0]["class"] if r.get("predictions") else "-")
            for r in rows
        ]
        plots.save(plots.image_grid(tiles), plot)
    return rows, "\n".join(lines), any("error" in r for r in rows)


@main.command()
@click.argument("input_folder")
@click.argument("output_folder", type=click.Path(file_okay=False))
@_ontology_options
@click.option(
    "-e", "--extension", multiple=True, help="Only these suffixes [default: every image]."
)
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split", type=float, nargs=3, default=(0.7, 0.15, 0.15), show_default=True)
@click.option("-r", "--recursive", is_flag=True, help="Include subfolders.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier dataset in OUTPUT_FOLDER.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run.")
@click.option("--grid", type=click.Path(dir_okay=False), help="Save a PNG of labelled images.")
@click.option(
    "--shards", help="With --ray: where the parquet results go [default: OUTPUT_FOLDER-shards]."
)
@_ray_options
@_model_options
@_command
def label(
    input_folder: str,
    output_folder: str,
    classes: tuple[str, ...],
    ontology: str | None,
    examples: str | None,
    extension: tuple[str, ...],
    confidence: float,
    seed: int,
    split: tuple[float, float, float],
    recursive: bool,
    overwrite: bool,
    resume: bool,
    grid: str | None,
    shards: str | None,
    ray_address: str | None,
    actors: int,
    cpus_per_actor: float,
    **model: Any,
) -> Any:
    """Label a folder of images into a train/valid/test classification dataset.

    With --ray, INPUT_FOLDER may also be a URI pyarrow reads (s3://bucket/photos).

    \b
    Examples:
      autodistill-metaclip label -m demo photos/ dataset/ -c cat -c dog --confidence 0.6
      autodistill-metaclip label -m demo photos/ dataset/ -c cat -c dog --ray --actors 2
    """
    import csv

    classes_given = _ontology(classes, ontology, examples)
    if ray_address is None:
        dataset = _model(**model, ontology=classes_given).label(
            input_folder,
            list(extension) or None,
            output_folder,
            confidence=confidence,
            seed=seed,
            split=split,
            recursive=recursive,
            overwrite=overwrite,
            resume=resume,
            progress=sys.stderr.isatty(),
        )
    else:
        from autodistill_metaclip.distributed import label_with_ray

        if resume:
            raise click.UsageError("--resume is not available with --ray")
        dataset = label_with_ray(
            _spec(**model, ontology=classes_given),
            input_folder,
            shards or f"{output_folder.rstrip('/')}-shards",
            extensions=list(extension) or None,
            recursive=recursive,
            confidence=confidence,
            actors=actors,
            cpus_per_actor=cpus_per_actor,
            address=None if ray_address == "local" else ray_address,
            dataset_folder=output_folder,
            seed=seed,
            split=split,
            overwrite=overwrite,
        ).dataset
    with open(Path(output_folder) / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("labeled", "unlabeled", "failed")}
    failures = [{"image": r["image"], "error": r["error"]} for r in rows if r["status"] == "failed"]
    if grid:
        from autodistill_metaclip import plots

        plots.save(plots.labelled_grid(dataset), grid)
    data = {"output": output_folder, **counts, "failures": failures}
    text = (
        f"labeled {counts['labeled']}, unlabeled {counts['unlabeled']}, failed "
        f"{counts['failed']} -> {output_folder} (see manifest.csv)"
    )
    text += "".join(f"\n  failed: {f['image']}: {f['error']}" for f in failures[:20])
    return data, text, False


@main.command()
@click.argument("images", nargs=-1)
@click.option("-t", "--text", "texts", multiple=True, help="Embed this text (repeatable).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write .npy (vectors) or .npz (inputs and vectors); with --ray, the parquet folder.",
)
@_ray_options
@_model_options
@_command
def embed(
    images: tuple[str, ...],
    texts: tuple[str, ...],
    output: str | None,
    ray_address: str | None,
    actors: int,
    cpus_per_actor: float,
    **model: Any,
) -> Any:
    """Embed images (files, folders, URLs) and texts as L2-normalised vectors.

    With --ray, give one folder or URI (s3://bucket/photos) and -o for the parquet shards.

    \b
    Examples:
      autodistill-metaclip embed -m demo photos/ -t "a red circle" -o vectors.npz
      autodistill-metaclip embed -m demo photos/ --ray --actors 2 -o embeddings/
    """
    if ray_address is not None:
        from autodistill_metaclip.distributed import embed_with_ray

        if len(images) != 1 or texts or not output:
            raise click.UsageError("--ray embeds one folder or URI into -o OUTPUT, without --text")
        run = embed_with_ray(
            _spec(**model),
            images[0],
            output,
            actors=actors,
            cpus_per_actor=cpus_per_actor,
            address=None if ray_address == "local" else ray_address,
        )
        text = f"{run.counts} -> {output} (parquet: key, path, status, error, embedding)"
        return {"output": output, **run.counts}, text, False

    from autodistill_metaclip.pipeline import encode_images

    metaclip = _model(**model)
    inputs: list[str] = []
    vectors: list[np.ndarray] = []
    errors: list[dict[str, str]] = []
    for item in encode_images(metaclip.encoder, _expand(images), batch_size=metaclip.batch_size):
        if item.embedding is None:
            errors.append({"input": item.source, "error": str(item.error)})
        else:
            inputs.append(item.source)
            vectors.append(item.embedding)
    if texts:
        vectors.extend(metaclip.embed_text(list(texts)))
        inputs.extend(f"text:{t}" for t in texts)
    if not inputs and not errors:
        raise click.UsageError("give images and/or --text to embed")
    matrix = np.array(vectors, np.float32).reshape(len(inputs), metaclip.encoder.dim)
    data: dict[str, Any] = {"dim": metaclip.encoder.dim, "inputs": inputs, "errors": errors}
    if output:
        if output.endswith(".npz"):
            np.savez(output, inputs=np.array(inputs, dtype=str), embeddings=matrix)
        else:
            np.save(output, matrix)
        data["output"] = output
    else:
        data["embeddings"] = matrix.round(6).tolist()
    text = f"{len(inputs)} embeddings of dimension {metaclip.encoder.dim}"
    text += f" -> {output}" if output else ""
    text += "".join(f"\n  error: {e['error']}" for e in errors)
    return data, text, bool(errors)


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("index_file", type=click.Path(dir_okay=False))
@click.option(
    "-e", "--extension", multiple=True, help="Only these suffixes [default: every image]."
)
@click.option("--recursive/--no-recursive", default=True, show_default=True)
@_model_options
@_command
def index(
    folder: str, index_file: str, extension: tuple[str, ...], recursive: bool, **model: Any
) -> Any:
    """Build an embedding index of FOLDER, or bring INDEX_FILE up to date with it.

    \b
    Example:
      autodistill-metaclip index -m demo photos/ photos.npz
    """
    from autodistill_metaclip.index import EmbeddingIndex

    metaclip = _model(**model)
    if Path(index_file).exists():
        built = EmbeddingIndex.load(index_file, metaclip)
        counts = built.update(metaclip, progress=sys.stderr.isatty())
    else:
        built = EmbeddingIndex.build(
            metaclip,
            folder,
            extensions=list(extension) or None,
            recursive=recursive,
            progress=sys.stderr.isatty(),
        )
        counts = {"added": len(built), "changed": 0, "removed": 0, "failed": len(built.failed)}
    built.save(index_file)
    text = (
        f"{len(built)} images in {index_file} (added {counts['added']}, changed "
        f"{counts['changed']}, removed {counts['removed']}, failed {counts['failed']})"
    )
    text += "".join(f"\n  failed: {k}: {v}" for k, v in list(built.failed.items())[:20])
    return (
        {"index": index_file, "images": len(built), **counts, "failures": built.failed},
        text,
        False,
    )


def _index_and_model(index_file: str, model: dict[str, Any]) -> tuple[Any, Any]:
    from autodistill_metaclip.index import EmbeddingIndex

    loaded = EmbeddingIndex.load(index_file)
    if model["checkpoint"] is None and loaded.model_info["checkpoint"] in {
        c.name for c in checkpoints.CHECKPOINTS
    }:
        model = {**model, "checkpoint": loaded.model_info["checkpoint"]}
    metaclip = _model(**model)
    loaded.check_model(metaclip)
    return loaded, metaclip


@main.command()
@click.argument("index_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("query")
@click.option("-k", "--top", type=click.IntRange(1), default=5, show_default=True)
@click.option("--grid", type=click.Path(dir_okay=False), help="Save a PNG of the results.")
@_model_options
@_command
def search(index_file: str, query: str, top: int, grid: str | None, **model: Any) -> Any:
    """Find the images most like QUERY: a text, or an image file or URL.

    \b
    Example:
      autodistill-metaclip search photos.npz "a red circle on a grey background" -k 8
    """
    loaded, metaclip = _index_and_model(index_file, model)
    hits = loaded.search(metaclip, query, k=top)
    if grid:
        from autodistill_metaclip import plots

        plots.save(plots.search_grid(hits, query=query), grid)
    data = [{"path": str(h.path), "score": round(h.score, 6)} for h in hits]
    text = "\n".join(f"{i + 1:3}. {h.score:.4f}  {h.path}" for i, h in enumerate(hits))
    return data, text, False


@main.command()
@click.argument("index_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--threshold",
    type=click.FloatRange(-1, 1),
    default=0.95,
    show_default=True,
    help="Minimum cosine similarity of near-duplicates.",
)
@_command
def dedup(index_file: str, threshold: float) -> Any:
    """List groups of near-duplicate images in an index.

    \b
    Example:
      autodistill-metaclip dedup photos.npz --threshold 0.97
    """
    from autodistill_metaclip.index import EmbeddingIndex

    groups = EmbeddingIndex.load(index_file).duplicates(threshold)
    text = (
        "\n".join(
            f"group {i + 1} ({len(g)}):" + "".join(f"\n  {p}" for p in g)
            for i, g in enumerate(groups)
        )
        or "no near-duplicates"
    )
    return [[str(p) for p in g] for g in groups], text, False


@main.command()
@click.argument("index_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-k", "--clusters", "k", type=click.IntRange(1), default=8, show_default=True)
@click.option("-n", "--name", "names", multiple=True, help="Candidate label to name clusters with.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sheet", type=click.Path(dir_okay=False), help="Save a PNG contact sheet.")
@_model_options
@_command
def cluster(
    index_file: str, k: int, names: tuple[str, ...], seed: int, sheet: str | None, **model: Any
) -> Any:
    """Group an index's images into k clusters, optionally named from candidate labels.

    \b
    Example:
      autodistill-metaclip cluster photos.npz -k 4 -n "a red thing" -n "a blue thing" --sheet c.png
    """
    from autodistill_metaclip.index import EmbeddingIndex

    if names:
        loaded, metaclip = _index_and_model(index_file, model)
    else:
        loaded, metaclip = EmbeddingIndex.load(index_file), None
    result = loaded.clusters(k, seed=seed, names=list(names) or None, model=metaclip)
    if sheet:
        from autodistill_metaclip import plots

        plots.save(plots.cluster_sheet(result), sheet)
    data = [
        {
            "id": c.id,
            "name": c.name,
            "size": len(c.members),
            "representatives": [str(p) for p in c.representatives],
        }
        for c in result.clusters
    ]
    text = "\n".join(
        f"cluster {c['id']} ({c['size']} images){' ' + c['name'] if c['name'] else ''}: "
        + ", ".join(Path(p).name for p in c["representatives"][:4])
        for c in data
    )
    return data, text, False


@main.command("checkpoints")
@click.option("--markdown", is_flag=True, help="The README's Markdown table.")
@_command
def list_checkpoints(markdown: bool) -> Any:
    """List the MetaCLIP checkpoints.

    \b
    Example:
      autodistill-metaclip checkpoints --json
    """
    from dataclasses import asdict

    rows = [asdict(c) for c in checkpoints.CHECKPOINTS]
    if markdown:
        return rows, checkpoints.markdown_table(), False
    text = "\n".join(
        f"{c.name:22} {c.architecture:30} {c.pretrained:26} "
        f"{'' if c.imagenet_top1 is None else c.imagenet_top1:>5} {c.params_m:>8,.1f}M {c.license}"
        for c in checkpoints.CHECKPOINTS
    )
    return rows, text, False


@main.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False))
def demo(folder: str | None) -> None:
    """Run the offline demo (predictions, embeddings, label()) on the bundled model.

    \b
    Example:
      autodistill-metaclip demo
    """
    import tempfile

    from autodistill_metaclip.demo.__main__ import run

    if folder:
        run(Path(folder))
        return
    with tempfile.TemporaryDirectory() as workdir:
        run(Path(workdir))
