"""``index``, ``search``, ``dedup``, ``cluster``: an embedding index of a folder, and what it
answers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from autodistill_metaclip.cli.options import hint_bf16, model_options, model_spec
from autodistill_metaclip.cli.runner import OutputFile, command, printable, usage


def _load(path: str) -> Any:
    """An index file (``.npz``), or the embeddings kept in a folder: a dataset written by
    ``label`` or an embedding store (nothing is embedded again)."""
    from autodistill_metaclip.index import EmbeddingIndex

    return EmbeddingIndex.open(path) if Path(path).is_dir() else EmbeddingIndex.load(path)


def _spec_for(index: Any, params: dict[str, Any]) -> Any:
    """The model of -m/--weights, or by default the one that built ``index`` (if any)."""
    made_by = None
    if index is not None:
        info = index.model_info
        made_by = info.get("spec", {"checkpoint": info["checkpoint"]})
    with usage():
        return model_spec(params, ontology=False, made_by=made_by)


@click.command()
@click.argument("input_folder")
@click.argument("index", metavar="INDEX_FILE", type=OutputFile(".npz"))
@click.option(
    "-e", "--extension", "extensions", multiple=True, help="Only these suffixes [default: all]."
)
@click.option("--recursive/--no-recursive", default=True, show_default=True)
@model_options
@command
def index(
    input_folder: str, index: str, extensions: tuple[str, ...], recursive: bool, **params: Any
) -> Any:
    """Build the embedding index of INPUT_FOLDER (a folder or URI), or bring INDEX_FILE (built
    from INPUT_FOLDER) up to date.

    \b
    Example:
      autodistill-metaclip index -m demo photos/ photos.npz
    """
    from autodistill_metaclip.index import EmbeddingIndex
    from autodistill_metaclip.inputs import sources

    if not sources.is_folder(input_folder):
        raise click.BadParameter(f"{input_folder!r} is not a folder", param_hint="INPUT_FOLDER")
    with usage():
        earlier = EmbeddingIndex.load(index) if Path(index).is_file() else None
    spec, device = _spec_for(earlier, params), params.pop("device")
    hint_bf16(spec, device)
    model = spec.build(device)
    built, counts = EmbeddingIndex.sync(
        model, input_folder, index, extensions=list(extensions) or None, recursive=recursive,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    text = f"{len(built)} images in {printable(index)} "
    text += f"({', '.join(f'{k} {v}' for k, v in counts.items())})"
    text += "".join(
        f"\n  failed: {printable(f'{k}: {v}')}" for k, v in list(built.failed.items())[:20]
    )
    data = {"index": index, "images": len(built), **counts, "failures": built.failed}
    return data, text, counts["failed"]


@click.command()
@click.argument("index", metavar="INDEX", type=click.Path(exists=True))
@click.argument("query")
@click.option("-k", "--top", type=click.IntRange(1), default=5, show_default=True)
@click.option("--text", is_flag=True, help="QUERY is text, even if it looks like a path.")
@click.option("--grid", type=OutputFile(".png"), help="Save a PNG of the results.")
@model_options
@command
def search(index: str, query: str, top: int, text: bool, grid: str | None, **params: Any) -> Any:
    """Find the images most like QUERY: a text, or an image file, URL or URI. INDEX is an
    index file, or a dataset written by label (its embeddings; nothing is embedded again).

    \b
    Examples:
      autodistill-metaclip search photos.npz "a red circle on a grey background" -k 8
      autodistill-metaclip search photos.npz photos/cat.jpg
    """

    loaded = _load(index)
    model = _spec_for(loaded, params).build(params.pop("device"))
    hits = loaded.search(model, query, k=top, text=text or None)  # refuses another model
    if grid:
        from autodistill_metaclip import plots

        plots.save(plots.search_grid(hits, query=query), grid)
    data = [{"path": str(h.path), "score": h.score} for h in hits]
    lines = [f"{i + 1:3}. {h.score:.4f}  {printable(str(h.path))}" for i, h in enumerate(hits)]
    return data, "\n".join(lines), 0


@click.command()
@click.argument("index", metavar="INDEX", type=click.Path(exists=True))
@click.option(
    "--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
    help="Minimum cosine similarity of near-duplicates.",
)  # fmt: skip
@click.option(
    "--move-to", "destination", type=click.Path(file_okay=False),
    help="Move all but the kept image of each group here (a dry run without --apply).",
)  # fmt: skip
@click.option("--apply", is_flag=True, help="With --move-to: really move them.")
@click.option(
    "--folder", type=click.Path(file_okay=False),
    help="The folder the index was built from (needed with --apply: files are moved only "
    "inside a folder you name, never where an index file says).",
)  # fmt: skip
@command
def dedup(
    index: str, threshold: float, destination: str | None, apply: bool, folder: str | None
) -> Any:
    """List groups of near-duplicate images in an index; move all but one of each aside.

    The image kept is the largest file (then the oldest, then the first path); the others
    are moved, never deleted, keeping their relative paths, with a moves.csv to undo it.
    Moving needs --folder, the folder the index was built from: an index of another folder
    is refused (exit 2).

    \b
    Examples:
      autodistill-metaclip dedup photos.npz --threshold 0.97
      autodistill-metaclip dedup photos.npz --move-to duplicates/ --apply --folder photos/
    """
    from autodistill_metaclip.index.dedup import indexed_folder, move_duplicates, plan

    if apply and destination is None:
        raise click.UsageError("--apply needs --move-to")
    if apply and folder is None:
        raise click.UsageError(
            "--apply needs --folder: the folder the index was built from (files are moved "
            "only inside a folder you name)"
        )
    loaded = _load(index)
    if destination is not None:
        with usage():
            indexed_folder(loaded, folder)
    groups = plan(loaded, threshold)
    lines = [
        f"group {i + 1} ({len(g.move) + 1}):\n  keep {printable(str(loaded.location(g.keep)))}"
        + "".join(f"\n  dup  {printable(str(loaded.location(k)))}" for k in g.move)
        for i, g in enumerate(groups)
    ]
    data: dict[str, Any] = {"groups": [{"keep": g.keep, "duplicates": g.move} for g in groups]}
    skipped = 0
    if destination is not None:
        moves = move_duplicates(loaded, groups, destination, apply=apply, folder=folder)
        data["moves"] = [
            {"from": str(m.source), "to": str(m.destination), "outcome": m.outcome} for m in moves
        ]
        done = sum(m.outcome == "moved" for m in moves)
        skipped = sum(m.outcome.startswith("skipped") for m in moves)
        lines += [
            f"  {printable(str(m.source))}: {printable(m.outcome)}"
            for m in moves
            if m.outcome.startswith("skipped")
        ]
        lines.append(
            f"moved {done} of {len(moves)} to {printable(destination)} (see moves.csv); "
            "run `index` again"
            if apply
            else f"dry run: {len(moves)} files would move to {printable(destination)}; add --apply"
        )
    return data, "\n".join(lines) or "no near-duplicates", skipped


@click.command()
@click.argument("index", metavar="INDEX", type=click.Path(exists=True))
@click.option("-k", "--clusters", "k", type=click.IntRange(1), default=8, show_default=True)
@click.option("-n", "--name", "names", multiple=True, help="Candidate label to name clusters.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sheet", type=OutputFile(".png"), help="Save a PNG contact sheet.")
@model_options
@command
def cluster(
    index: str, k: int, names: tuple[str, ...], seed: int, sheet: str | None, **params: Any
) -> Any:
    """Group an index's images into k clusters, optionally named from candidate labels.

    \b
    Example:
      autodistill-metaclip cluster photos.npz -k 4 -n "a red thing" -n "a blue thing" --sheet c.png
    """

    loaded = _load(index)
    spec, device = _spec_for(loaded, params), params.pop("device")
    model = spec.build(device) if names else None
    result = loaded.clusters(k, seed=seed, names=list(names) or None, model=model)
    if sheet:
        from autodistill_metaclip import plots

        plots.save(plots.cluster_sheet(result), sheet)
    data = [
        {"id": c.id, "name": c.name, "size": len(c.members), "representatives": c.representatives}
        for c in result.clusters
    ]
    text = "\n".join(
        f"cluster {c.id} ({len(c.members)} images){' ' + c.name if c.name else ''}: "
        + ", ".join(printable(Path(str(p)).name) for p in c.representatives[:4])
        for c in result.clusters
    )
    return data, text, 0
