"""The ``autodistill-metaclip`` command (also ``python -m autodistill_metaclip``).

Each command is one library call with the same parameter names, plus rendering: text by
default, ``--json`` for scripts. Exit codes, the same for every command:

- 0: done, every input was read;
- 1: error: the command started and stopped (one line on stderr, ``-v`` for the traceback),
  also for an option value that only the library can judge (an unknown checkpoint or template);
- 2: bad usage, found before any work: an unknown option, a missing argument, a value of the
  wrong type or range, an unreadable ``--ontology`` file, an output file's missing folder;
- 3: done, but some inputs could not be read (each is listed; the others are in the output).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from autodistill_metaclip import checkpoints
from autodistill_metaclip.checkpoints import DEFAULT_CHECKPOINT
from autodistill_metaclip.images import DEFAULT_DECODE_MEMORY

PARTIAL = 3
"""Exit code: the command finished, but some inputs could not be read."""
MAX_ONTOLOGY_BYTES = 1024 * 1024
# Python argument names in library messages -> the flags that set them here.
_FLAGS = {
    "checkpoint": "-m/--checkpoint",
    "weights": "--weights",
    "device": "--device",
    "precision": "--precision",
    "batch_size": "--batch-size",
    "cache_dir": "--cache-dir",
    "prompt_templates": "--templates",
    "ontology": "the classes (-c/--ontology/--examples)",
    "confidence": "--confidence",
    "split": "--split",
    "layout": "--layout",
    "near_duplicates": "--near-duplicates",
    "seed": "--seed",
    "extension": "-e/--extension",
    "overwrite": "--overwrite",
    "resume": "--resume",
    "text": "--text",
    "input_folder": "INPUT_FOLDER",
    "output_folder": "OUTPUT_FOLDER",
    "index": "INDEX_FILE",
    "query": "QUERY",
    "k": "-k",
    "actors": "--actors",
    "cpus_per_actor": "--cpus-per-actor",
    "stall_timeout": "--stall-timeout",
    "output": "the output (--shards, -o)",
    "extensions": "-e/--extension",
    "recursive": "--recursive/--no-recursive",
    "follow_links": "--follow-links",
}
logger = logging.getLogger("autodistill_metaclip")


def in_cli_terms(message: str) -> str:
    """A library message with its Python argument names replaced by this command's flags:
    ``name=True`` -> the flag, ``name='x'`` or ``name=x`` -> the flag and x, a leading
    ``name:`` -> the flag."""

    def flag(match: re.Match[str]) -> str:
        name, value = match[1], match[2].strip("'")
        if name not in _FLAGS:
            return match[0]
        if value in ("", "True"):
            return _FLAGS[name]
        if value == "False" and "/--no-" in _FLAGS[name]:
            return _FLAGS[name].split("/")[-1]
        return f"{_FLAGS[name].split('/')[-1]} {value}"

    message = re.sub(r"\b(\w+)=('[^']*'|[^\s,;)]*)", flag, message)
    return re.sub(
        r"^(\w+(?:, \w+)*):",
        lambda m: ", ".join(_FLAGS.get(n, n) for n in m[1].split(", ")) + ":",
        message,
    )


def _options(*options: Callable[..., Any]) -> Callable[..., Any]:
    """Several click options as one decorator, in the order given."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


def _command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add --json and --verbose; render the result ``(data, text, failed inputs)``; turn
    exceptions into one-line errors in this command's terms; apply the exit-code rule."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("-v", "--verbose", is_flag=True, help="Show library logs and full tracebacks.")
    @functools.wraps(function)
    def wrapper(*args: Any, as_json: bool, verbose: bool, **kwargs: Any) -> None:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.ERROR,
            format="%(levelname)s %(name)s: %(message)s",
        )
        from autodistill_metaclip.errors import MetaCLIPWarning

        with warnings.catch_warnings(record=True) as caught:  # ours shown; others with -v
            warnings.simplefilter("always", MetaCLIPWarning)
            try:
                data, text, failed = function(*args, **kwargs)
            except click.ClickException:
                raise
            except Exception as e:
                if verbose:
                    raise
                message = " ".join(str(e).split()) or type(e).__name__
                click.echo(f"error: {in_cli_terms(message)}", err=True)
                sys.exit(1)
            finally:
                for warning in caught:
                    if verbose or issubclass(warning.category, MetaCLIPWarning):
                        click.echo(f"warning: {in_cli_terms(str(warning.message))}", err=True)
        click.echo(_json(data) if as_json else text)
        if failed:
            sys.exit(PARTIAL)

    return wrapper


def _json(data: Any) -> str:
    """Strict JSON: a float that is not finite (NaN, inf) is written as null."""

    def finite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        if isinstance(value, float | np.floating):
            return float(value) if math.isfinite(value) else None
        return value

    return json.dumps(finite(data), indent=2, default=str, allow_nan=False)


class OutputFile(click.Path):
    """A file to write, checked before any work: its folder exists, its suffix fits."""

    def __init__(self, *suffixes: str) -> None:
        super().__init__(dir_okay=False)
        self.suffixes = suffixes

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        if path.suffix.lower() not in self.suffixes:
            self.fail(f"expected a file name ending in {' or '.join(self.suffixes)}", param, ctx)
        if not path.absolute().parent.is_dir():
            self.fail(f"the folder {str(path.parent)!r} does not exist", param, ctx)
        return str(path)


_model_options = _options(
    click.option(
        "-m",
        "--checkpoint",
        default=None,
        help="Checkpoint name, open_clip architecture or config JSON "
        f"[default: {DEFAULT_CHECKPOINT}, or an index's own].",
    ),
    click.option("--weights", default=None, help="Pretrained tag or local weights file."),
    click.option("--device", default=None, help="cpu, cuda, cuda:N or mps [default: best]."),
    click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None),
    click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
    click.option("--cache-dir", default=None, help="Where downloaded weights are kept."),
    click.option(
        "--templates",
        "prompt_templates",
        multiple=True,
        help='Prompt template with {} (repeatable), or a preset ("openai").',
    ),
    click.option(
        "--draft-decoding",
        is_flag=True,
        help="Decode large JPEGs at reduced scale: faster, not exact.",
    ),
    click.option(
        "--decode-memory",
        type=click.IntRange(1),
        default=DEFAULT_DECODE_MEMORY,
        show_default=True,
        metavar="MIB",
        help="Memory for images being decoded at once (one alone may exceed it).",
    ),
)
_ontology_options = _options(
    click.option(
        "-c",
        "--class",
        "classes",
        multiple=True,
        metavar="NAME|CAPTION=NAME",
        help='A class; a bare NAME is prompted as "a photo of a NAME" (as NAME with --templates).',
    ),
    click.option("--ontology", "ontology_file", help="JSON file of {caption: class}."),
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
    click.option("--actors", type=click.IntRange(1), default=1, show_default=True),
    click.option(
        "--cpus-per-actor", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True
    ),
    click.option(
        "--stall-timeout",
        type=click.FloatRange(0, min_open=True),
        metavar="SECONDS",
        help="Fail a Ray run that finishes no batch for this long [default: Ray Data's, 30 min].",
    ),
)


def _spec(params: dict[str, Any], *, ontology: bool, default: Any = None) -> Any:
    """Take the model options (named as ``ModelSpec``'s fields) and the classes out of a
    command's parameters: the spec they describe (``default``: checkpoint and weights when -m
    is not given). ``device`` stays in ``params``: it is chosen where the model is built."""
    from dataclasses import fields

    from autodistill_metaclip.model import ModelSpec
    from autodistill_metaclip.zeroshot import resolve_templates

    options = {f.name: params.pop(f.name) for f in fields(ModelSpec) if f.name != "ontology"}
    templates = options.pop("prompt_templates")
    classes = None
    if ontology:
        names = (params.pop("classes"), params.pop("ontology_file"), params.pop("examples"))
        classes = _ontology(*names, templated=bool(templates))
    if options["checkpoint"] is None:  # --weights alone keeps its value
        default = default or {"checkpoint": DEFAULT_CHECKPOINT}
        options["checkpoint"] = default["checkpoint"]
        options["weights"] = options["weights"] or default.get("weights")
    templates = resolve_templates((templates[0] if len(templates) == 1 else templates) or None)
    return ModelSpec(ontology=classes, prompt_templates=templates, **options)


def _ontology(
    classes: tuple[str, ...], ontology_file: str | None, examples: str | None, *, templated: bool
) -> Any:
    from autodistill_metaclip import sources
    from autodistill_metaclip.zeroshot import ExampleOntology

    if sum(bool(x) for x in (classes, ontology_file, examples)) != 1:
        raise click.UsageError(
            "give the classes with exactly one of -c/--class, --ontology or --examples"
        )
    if examples:
        folders = sorted(p for p in Path(examples).iterdir() if p.is_dir())
        return ExampleOntology(
            {f.name: [s.location for s in sources.list_images(f, None)] for f in folders}
        )
    if ontology_file:
        return _read_ontology(ontology_file)
    pairs = [
        c.split("=", 1) if "=" in c else (c if templated else f"a photo of a {c}", c)
        for c in classes
    ]
    return {caption.strip(): name.strip() for caption, name in pairs}


def _read_ontology(path: str) -> dict[str, str]:
    from autodistill_metaclip.files import read_file

    where = f"--ontology {path!r}"
    try:
        data = read_file(path, MAX_ONTOLOGY_BYTES, "--ontology")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        mapping = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise click.UsageError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise click.UsageError(f'{where}: expected a JSON object of {{"caption": "class"}}')
    return mapping


def _expand(inputs: tuple[str, ...]) -> list[str]:
    """Image arguments: files, URLs and URIs as given, folders as the images inside them."""
    from autodistill_metaclip import sources

    out: list[str] = []
    for item in inputs:
        if sources.is_folder(item):
            found = [s.location for s in sources.list_images(item, None)]
            if not found:
                raise click.UsageError(f"IMAGES: the folder {item!r} has no image files")
            out.extend(found)
        else:
            out.append(item)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="autodistill-metaclip")
def main() -> None:
    """MetaCLIP for zero-shot classification, embeddings, search and dataset labelling.

    Every command runs offline on the bundled demo model with -m demo. Exit codes: 0 done,
    1 error, 2 bad usage, 3 done but some inputs could not be read (listed).
    """


@main.command()
@click.argument("images", nargs=-1, required=True)
@_ontology_options
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("-k", "--top", type=click.IntRange(1), default=3, help="Classes shown per image.")
@click.option("--plot", type=OutputFile(".png"), help="PNG: bars for one image, else a grid.")
@_model_options
@_command
def predict(images: tuple[str, ...], top: int, plot: str | None, **params: Any) -> Any:
    """Classify images (files, folders, URLs or URIs) zero-shot.

    Every image shows its best classes, also when none reaches --confidence.

    \b
    Example:
      autodistill-metaclip predict -m demo photo.jpg -c "red circle" -c "blue square"
    """
    inputs = _expand(images)
    spec = _spec(params, ontology=True)
    model = spec.build(params.pop("device"))
    predictions = list(model.iter_predictions(inputs, **params))
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for p in predictions:
        if p.error is not None:
            rows.append({"image": str(p.source), "status": "failed", "error": str(p.error)})
            lines.append(f"{p.source}: error: {p.error}")
            continue
        top_k = zip(p.class_ids[:top], p.probabilities[:top], strict=True)
        ranked = [{"class": p.classes[i], "confidence": float(s)} for i, s in top_k]
        passed = ranked[: len(p.classifications)]
        for position, r in enumerate(ranked):
            r["passed"] = position < len(passed)
        row = {"image": str(p.source), "status": p.status, "predictions": passed, "top": ranked}
        rows.append(row)
        shown = [f"{r['class']} {r['confidence']:.3f}" for r in ranked]
        best = ", ".join(shown[: len(passed)]) or f"(none >= {p.threshold:g}) best: {shown[0]}"
        rest = shown[max(len(passed), 1) :]
        lines.append(f"{p.source}: {best}" + (f"   [{', '.join(rest)}]" if rest else ""))
    if plot:
        _plot_predictions(predictions, plot)
    return rows, "\n".join(lines), sum(r["status"] == "failed" for r in rows)


def _plot_predictions(predictions: list[Any], path: str) -> None:
    import supervision as sv

    from autodistill_metaclip import plots

    if len(predictions) == 1 and predictions[0].error is None:
        p = predictions[0]
        ranked = sv.Classifications(class_id=p.class_ids, confidence=p.probabilities)
        plots.save(plots.probability_chart(p.source, ranked, p.classes), path)
    else:
        tiles = [(p.source, p.best[0] if p.error is None else "-") for p in predictions]
        plots.save(plots.image_grid(tiles), path)


@main.command()
@click.argument("input_folder")
@click.argument("output_folder", type=click.Path(file_okay=False))
@_ontology_options
@click.option("-e", "--extension", multiple=True, help="Only these suffixes [default: all].")
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split", type=float, nargs=3, default=(0.7, 0.15, 0.15), show_default=True)
@click.option("--layout", type=click.Choice(["valid", "val"]), default="valid", show_default=True)
@click.option(
    "--near-duplicates", type=click.FloatRange(0, 1, min_open=True), default=0.98,
    show_default=True, help="Cosine above which images of a class share a split.",
)  # fmt: skip
@click.option("-r", "--recursive", is_flag=True, help="Include subfolders.")
@click.option(
    "--follow-links", is_flag=True,
    help="Follow symbolic links anywhere [default: only to files inside INPUT_FOLDER].",
)  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an earlier dataset in OUTPUT_FOLDER.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run.")
@click.option("--grid", type=OutputFile(".png"), help="Save a PNG of labelled images.")
@click.option("--shards", help="With --ray: where the parquet results go [OUTPUT_FOLDER-shards].")
@_ray_options
@_model_options
@_command
def label(
    input_folder: str,
    output_folder: str,
    extension: tuple[str, ...],
    grid: str | None,
    **params: Any,
) -> Any:
    """Label a folder (or a URI such as s3://bucket/photos) into a train/valid/test dataset.

    \b
    Examples:
      autodistill-metaclip label -m demo photos/ dataset/ -c cat -c dog --confidence 0.6
      autodistill-metaclip label -m demo photos/ dataset/ -c cat -c dog --ray --actors 2
    """
    from autodistill_metaclip.labeling import summarize

    spec, extensions = _spec(params, ontology=True), list(extension) or None
    device, ray, shards = params.pop("device"), _ray(params), params.pop("shards")
    if ray is None:
        progress = sys.stderr.isatty()
        dataset = spec.build(device).label(
            input_folder, extensions, output_folder, progress=progress, **params
        )
    else:
        from autodistill_metaclip.distributed import label_with_ray

        if params.pop("resume"):
            raise click.UsageError("--resume is not available with --ray")
        shards = shards or f"{output_folder.rstrip('/')}-shards"
        dataset = _on_ray(
            label_with_ray, spec, input_folder, shards, extensions=extensions,
            dataset_folder=output_folder, **ray, **params,
        ).dataset  # fmt: skip
    if grid:
        from autodistill_metaclip import plots

        plots.save(plots.labelled_grid(dataset), grid)
    summary = summarize(output_folder)
    text = (
        f"labeled {summary['labeled']}, unlabeled {summary['unlabeled']}, failed "
        f"{summary['failed']} -> {output_folder} (see manifest.csv)"
    )
    text += "".join(f"\n  failed: {f['image']}: {f['error']}" for f in summary["failures"][:20])
    return {"output": output_folder, **summary}, text, summary["failed"]


def _ray(params: dict[str, Any]) -> dict[str, Any] | None:
    """Take the Ray options out of a command's parameters: None without --ray."""
    address = params.pop("ray_address")
    options = {name: params.pop(name) for name in ("actors", "cpus_per_actor", "stall_timeout")}
    if address is None:
        return None
    options = {name: value for name, value in options.items() if value is not None}
    return {**options, "address": None if address == "local" else address}


def _on_ray(run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``run(*args, **kwargs)`` with Ray's cluster messages (e.g. a node lost) on stderr, where
    they cannot break the command's output on stdout; disconnects if it connected."""
    import contextlib

    import ray

    connected = ray.is_initialized()
    with contextlib.redirect_stdout(sys.stderr):
        try:
            return run(*args, **kwargs)
        finally:
            if not connected:
                ray.shutdown()


@main.command()
@click.argument("images", nargs=-1)
@click.option("-t", "--text", "texts", multiple=True, help="Embed this text (repeatable).")
@click.option(
    "-o",
    "--output",
    help="Write exactly this .npy (vectors) or .npz (inputs, vectors) file; with --ray, the "
    "parquet folder or URI.",
)
@_ray_options
@_model_options
@_command
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
    spec, ray = _spec(params, ontology=False), _ray(params)
    if ray is not None:
        from autodistill_metaclip.distributed import embed_with_ray

        if len(images) != 1 or texts or not output:
            raise click.UsageError("--ray embeds one folder or URI into -o OUTPUT, without --text")
        run = _on_ray(embed_with_ray, spec, images[0], output, **ray)
        counts = ", ".join(f"{status} {n}" for status, n in sorted(run.counts.items()))
        text = f"{counts} -> {output} (parquet: key, path, status, error, embedding)"
        return {"output": output, **run.counts}, text, run.counts.get("failed", 0)
    if not images and not texts:
        raise click.UsageError("give IMAGES and/or -t/--text to embed")
    if output:
        try:
            OutputFile(".npy", ".npz").convert(output, None, None)
        except click.BadParameter as e:
            raise click.BadParameter(e.message, param_hint="'-o/--output'") from None
    import numpy as np

    model = spec.build(params.pop("device"))
    results = list(model.iter_embeddings(_expand(images)))
    inputs = [str(r.source) for r in results if r.error is None] + [f"text:{t}" for t in texts]
    vectors = [r.vector for r in results if r.vector is not None]
    images_part = np.array(vectors, np.float32).reshape(-1, model.dim)
    matrix = np.concatenate([images_part, model.embed_text(list(texts))])
    errors = [{"input": str(r.source), "error": str(r.error)} for r in results if r.error]
    data: dict[str, Any] = {"dim": model.dim, "inputs": inputs, "errors": errors}
    if output:
        from autodistill_metaclip.files import atomic_write

        with atomic_write(output) as file:
            if output.lower().endswith(".npz"):
                np.savez(file, inputs=np.array(inputs, dtype=str), embeddings=matrix)
            else:
                np.save(file, matrix)
        data["output"] = output
    else:
        data["embeddings"] = matrix.tolist()
    text = f"{len(inputs)} embeddings of dimension {model.dim}"
    text += f" -> {output}" if output else " (-o FILE or --json for the vectors)"
    text += "".join(f"\n  error: {e['error']}" for e in errors)
    return data, text, len(errors)


def _index_spec(index: Any, params: dict[str, Any]) -> Any:
    """The model of -m/--weights, or by default the one that built ``index`` (if any)."""
    made_by = None
    if index is not None:
        info = index.model_info
        made_by = info.get("spec", {"checkpoint": info["checkpoint"]})
    return _spec(params, ontology=False, default=made_by)


@main.command()
@click.argument("input_folder")
@click.argument("index_file", type=OutputFile(".npz"))
@click.option("-e", "--extension", multiple=True, help="Only these suffixes [default: all].")
@click.option("--recursive/--no-recursive", default=True, show_default=True)
@_model_options
@_command
def index(input_folder: str, index_file: str, extension: tuple[str, ...], **params: Any) -> Any:
    """Build the embedding index of INPUT_FOLDER (a folder or URI), or bring INDEX_FILE (built
    from INPUT_FOLDER) up to date.

    \b
    Example:
      autodistill-metaclip index -m demo photos/ photos.npz
    """
    from autodistill_metaclip.index import EmbeddingIndex

    earlier = EmbeddingIndex.load(index_file) if Path(index_file).is_file() else None
    model = _index_spec(earlier, params).build(params.pop("device"))
    progress = sys.stderr.isatty()
    built, counts = EmbeddingIndex.sync(
        model,
        input_folder,
        index_file,
        extensions=list(extension) or None,
        progress=progress,
        **params,
    )
    text = (
        f"{len(built)} images in {index_file} ({', '.join(f'{k} {v}' for k, v in counts.items())})"
    )
    text += "".join(f"\n  failed: {k}: {v}" for k, v in list(built.failed.items())[:20])
    data = {"index": index_file, "images": len(built), **counts, "failures": built.failed}
    return data, text, counts["failed"]


@main.command()
@click.argument("index_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("query")
@click.option("-k", "--top", type=click.IntRange(1), default=5, show_default=True)
@click.option("--text", is_flag=True, help="QUERY is text, even if it looks like a path.")
@click.option("--grid", type=OutputFile(".png"), help="Save a PNG of the results.")
@_model_options
@_command
def search(
    index_file: str, query: str, top: int, text: bool, grid: str | None, **params: Any
) -> Any:
    """Find the images most like QUERY: a text, or an image file, URL or URI.

    \b
    Examples:
      autodistill-metaclip search photos.npz "a red circle on a grey background" -k 8
      autodistill-metaclip search photos.npz photos/cat.jpg
    """
    from autodistill_metaclip.index import EmbeddingIndex

    loaded = EmbeddingIndex.load(index_file)
    model = _index_spec(loaded, params).build(params.pop("device"))
    hits = loaded.search(model, query, k=top, text=text or None)  # refuses another model
    if grid:
        from autodistill_metaclip import plots

        plots.save(plots.search_grid(hits, query=query), grid)
    data = [{"path": str(h.path), "score": h.score} for h in hits]
    return data, "\n".join(f"{i + 1:3}. {h.score:.4f}  {h.path}" for i, h in enumerate(hits)), 0


@main.command()
@click.argument("index_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
    help="Minimum cosine similarity of near-duplicates.",
)  # fmt: skip
@click.option(
    "--move-to", type=click.Path(file_okay=False),
    help="Move all but the kept image of each group here (a dry run without --apply).",
)  # fmt: skip
@click.option("--apply", is_flag=True, help="With --move-to: really move them.")
@_command
def dedup(index_file: str, threshold: float, move_to: str | None, apply: bool) -> Any:
    """List groups of near-duplicate images in an index; move all but one of each aside.

    The image kept is the largest file (then the oldest, then the first path); the others
    are moved, never deleted, keeping their relative paths, with a moves.csv to undo it.

    \b
    Examples:
      autodistill-metaclip dedup photos.npz --threshold 0.97
      autodistill-metaclip dedup photos.npz --move-to duplicates/ --apply
    """
    from autodistill_metaclip.dedup import move_duplicates, plan
    from autodistill_metaclip.index import EmbeddingIndex

    if apply and move_to is None:
        raise click.UsageError("--apply needs --move-to")
    index = EmbeddingIndex.load(index_file)
    groups = plan(index, threshold)
    lines = [
        f"group {i + 1} ({len(g.move) + 1}):\n  keep {index.location(g.keep)}"
        + "".join(f"\n  dup  {index.location(k)}" for k in g.move)
        for i, g in enumerate(groups)
    ]
    data: dict[str, Any] = {"groups": [{"keep": g.keep, "duplicates": g.move} for g in groups]}
    skipped = 0
    if move_to is not None:
        moves = move_duplicates(index, groups, move_to, apply=apply)
        data["moves"] = [
            {"from": str(m.source), "to": str(m.destination), "outcome": m.outcome} for m in moves
        ]
        done = sum(m.outcome == "moved" for m in moves)
        skipped = sum(m.outcome.startswith("skipped") for m in moves)
        lines.append(
            f"moved {done} of {len(moves)} to {move_to} (see moves.csv); run `index` again"
            if apply
            else f"dry run: {len(moves)} files would move to {move_to}; add --apply"
        )
    return data, "\n".join(lines) or "no near-duplicates", skipped


@main.command()
@click.argument("index_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-k", "--clusters", "k", type=click.IntRange(1), default=8, show_default=True)
@click.option("-n", "--name", "names", multiple=True, help="Candidate label to name clusters.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sheet", type=OutputFile(".png"), help="Save a PNG contact sheet.")
@_model_options
@_command
def cluster(index_file: str, names: tuple[str, ...], sheet: str | None, **params: Any) -> Any:
    """Group an index's images into k clusters, optionally named from candidate labels.

    \b
    Example:
      autodistill-metaclip cluster photos.npz -k 4 -n "a red thing" -n "a blue thing" --sheet c.png
    """
    from autodistill_metaclip.index import EmbeddingIndex

    loaded = EmbeddingIndex.load(index_file)
    spec, device = _index_spec(loaded, params), params.pop("device")
    model = spec.build(device) if names else None
    result = loaded.clusters(names=list(names) or None, model=model, **params)
    if sheet:
        from autodistill_metaclip import plots

        plots.save(plots.cluster_sheet(result), sheet)
    data = [
        {"id": c.id, "name": c.name, "size": len(c.members), "representatives": c.representatives}
        for c in result.clusters
    ]
    text = "\n".join(
        f"cluster {c.id} ({len(c.members)} images){' ' + c.name if c.name else ''}: "
        + ", ".join(Path(str(p)).name for p in c.representatives[:4])
        for c in result.clusters
    )
    return data, text, 0


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=OutputFile(".html"), help="Where [DATASET/review.html].")
@_command
def review(dataset: str, output: str | None) -> Any:
    """Write the review page of a labelled dataset: open it in a browser, fix labels, export.

    \b
    Example:
      autodistill-metaclip review dataset/ && xdg-open dataset/review.html
    """
    from autodistill_metaclip.review import write_review

    page = write_review(dataset, output)
    return {"review": str(page)}, f"review page -> {page}", 0


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.argument("corrections", type=click.Path(exists=True, dir_okay=False))
@_command
def fix(dataset: str, corrections: str) -> Any:
    """Apply corrections exported from the review page: move images, mark the manifest.

    \b
    Example:
      autodistill-metaclip fix dataset/ ~/Downloads/corrections.json
    """
    from autodistill_metaclip.corrections import apply_corrections, correction_report

    counts = apply_corrections(dataset, corrections)
    total = correction_report(dataset)["total"]
    text = (
        f"reassigned {counts['reassigned']}, excluded {counts['excluded']}, unchanged "
        f"{counts['unchanged']} -> {dataset} (manifest column 'decided')"
    )
    return {**counts, "dataset": total}, text, 0


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@_ontology_options
@click.option(
    "--against", "others", multiple=True, type=click.Path(exists=True, dir_okay=False),
    help="Another ontology JSON to compare with (repeatable).",
)  # fmt: skip
@click.option(
    "--target",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.95,
    show_default=True,
    help="Accuracy the reported --confidence threshold must reach.",
)
@click.option("--plot", type=OutputFile(".png"), help="Save confusion matrices and coverage.")
@_model_options
@_command
def evaluate(
    folder: str, others: tuple[str, ...], target: float, plot: str | None, **params: Any
) -> Any:
    """Score the classes (and --against ontologies) on a folder of hand-labelled class folders;
    or, given a dataset written by label, report how many labels a human changed per class.

    \b
    Examples:
      autodistill-metaclip evaluate labelled/ -m demo -c "red circle" -c "blue square"
      autodistill-metaclip evaluate dataset/
    """
    from dataclasses import replace

    from autodistill_metaclip.evaluation import evaluate as run
    from autodistill_metaclip.evaluation import report
    from autodistill_metaclip.labeling import RUN, STATE

    if (Path(folder) / STATE / RUN).is_file():
        return _corrections_report(folder)
    spec, device = _spec(params, ontology=True), params.pop("device")
    model = spec.build(device)
    candidates = {"classes": model}
    for path in others:
        name = Path(path).stem
        if name in candidates:
            raise click.UsageError(f"--against {path!r}: a second ontology named {name!r}")
        candidates[name] = replace(spec, ontology=_read_ontology(path)).build(device)
    evaluations = run(candidates, folder, target_accuracy=target)
    if plot:
        from autodistill_metaclip import plots

        plots.save(plots.evaluation_chart(evaluations), plot)
    failed = {f for e in evaluations for f in e.failed}
    text = report(evaluations) + "".join(f"\n  failed: {f}" for f in sorted(failed)[:20])
    return [e.to_dict() for e in evaluations], text, len(failed)


def _corrections_report(dataset: str) -> Any:
    from autodistill_metaclip.corrections import correction_report

    found = correction_report(dataset)
    lines = [
        f"{name}: {c['labeled']} labelled, {c['reassigned']} reassigned, {c['excluded']} excluded"
        + (f", {c['kept']:.0%} kept" if c["kept"] is not None else "")
        for name, c in {**found["classes"], "total": found["total"]}.items()
    ]
    return found, "\n".join(lines), 0


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
        return rows, checkpoints.markdown_table(), 0
    text = "\n".join(
        f"{c.name:22} {c.architecture:30} {c.pretrained:26} "
        f"{'' if c.imagenet_top1 is None else c.imagenet_top1:>5} {c.params_m:>8,.1f}M {c.license}"
        for c in checkpoints.CHECKPOINTS
    )
    return rows, text, 0


@main.command()
@click.argument("folder", default="metaclip-demo", type=click.Path(file_okay=False))
def demo(folder: str) -> None:  # prose output: no --json
    """Run the offline demo (predictions, embeddings, label()) on the bundled model in FOLDER
    (default: ./metaclip-demo). Running it again replaces what it wrote there.

    \b
    Example:
      autodistill-metaclip demo
    """
    from autodistill_metaclip.demo.tour import run

    try:
        run(Path(folder))
    except OSError as e:
        raise click.ClickException(f"FOLDER: {e.strerror or e} ({e.filename or folder})") from e
