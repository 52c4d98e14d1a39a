"""Options that several commands share, named as the library's arguments, and how they become
the library's objects: a :class:`~autodistill_metaclip.ModelSpec`, an ontology,
:class:`~autodistill_metaclip.LabelOptions`, Ray settings, a list of images.

Defaults live in the library's dataclasses; the flags default to ``None`` ("not given") and
show the dataclass's default in ``--help``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import click

from autodistill_metaclip.engine.spec import PRECISIONS, ModelSpec, resolve_templates
from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs.policy import InputPolicy, using
from autodistill_metaclip.labeling.options import LAYOUTS, LabelOptions

MAX_ONTOLOGY_BYTES = 1024 * 1024


def default(cls: type, name: str) -> Any:
    """The default of a dataclass field, for ``--help``."""
    field = next(f for f in fields(cls) if f.name == name)
    return field.default if field.default is not MISSING else None


def group(*options: Callable[..., Any]) -> Callable[..., Any]:
    """Several click options as one decorator, in the order given."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


model_options = group(
    click.option(
        "-m",
        "--checkpoint",
        default=None,
        help="Checkpoint name, open_clip architecture or config JSON "
        f"[default: {default(ModelSpec, 'checkpoint')}, or an index's own].",
    ),
    click.option("--weights", default=None, help="Pretrained tag or local weights file."),
    click.option("--device", default=None, help="cpu, cuda, cuda:N or mps [default: best]."),
    click.option("--precision", type=click.Choice(PRECISIONS), default=None),
    click.option(
        "--batch-size",
        type=click.IntRange(1),
        help=f"Images per forward pass [default: {default(ModelSpec, 'batch_size')}].",
    ),
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
        default=None,
        help="Decode large JPEGs at reduced scale: faster, not exact.",
    ),
    click.option(
        "--decode-memory",
        type=click.IntRange(1),
        metavar="MIB",
        help="Memory for images being decoded at once (one alone may exceed it) "
        f"[default: {default(ModelSpec, 'decode_memory')}].",
    ),
    click.option(
        "--public-urls-only",
        is_flag=True,
        default=None,
        help="For services taking URLs from users: read only http(s) URLs, and connect only to "
        "public addresses (no loopback, private, link-local or cloud-metadata ones).",
    ),
    click.option(
        "--allow-scheme",
        "allow_schemes",
        multiple=True,
        metavar="SCHEME",
        help="Also read inputs of this scheme (repeatable), e.g. memory, ftp, zip "
        "[default: local files, http, https, s3, gs, az].",
    ),
)

ontology_options = group(
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

label_options = group(
    click.option(
        "--confidence",
        type=click.FloatRange(0, 1),
        help="Minimum probability of the top class "
        f"[default: {default(LabelOptions, 'confidence')}]; with --confidence-from, of the "
        "classes the file does not name.",
    ),
    click.option(
        "--confidence-from",
        type=click.Path(exists=True, dir_okay=False),
        help="A threshold per class: the JSON of `evaluate --json` (its first evaluation's "
        '"confidence"), or an object {"class": threshold, "*": others}.',
    ),
    click.option("--seed", type=int, help="Seed of the split [default: 0]."),
    click.option(
        "--split",
        type=float,
        nargs=3,
        help=f"Train, valid, test fractions [default: {' '.join(map(str, LabelOptions().split))}].",
    ),
    click.option("--layout", type=click.Choice(list(LAYOUTS)), help="[default: valid]."),
    click.option(
        "--near-duplicates",
        type=click.FloatRange(0, 1, min_open=True),
        help="Cosine above which images share a split "
        f"[default: {default(LabelOptions, 'near_duplicates')}].",
    ),
    click.option("-r", "--recursive", is_flag=True, default=None, help="Include subfolders."),
    click.option(
        "--follow-links",
        is_flag=True,
        default=None,
        help="Follow symbolic links anywhere [default: only to files inside INPUT_FOLDER].",
    ),
    click.option(
        "--overwrite", is_flag=True, default=None, help="Replace an earlier dataset there."
    ),
    click.option("--resume", is_flag=True, default=None, help="Continue an interrupted run."),
)

ray_options = group(
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
    click.option(
        "--actor-resource",
        "actor_resources",
        multiple=True,
        metavar="NAME=AMOUNT",
        help="A custom resource each actor needs: actors run only on nodes that have it "
        "(repeatable).",
    ),
)


def given(params: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Take ``names`` out of a command's parameters, keeping those the user gave."""
    taken = {name: params.pop(name) for name in names if name in params}
    return {name: value for name, value in taken.items() if value is not None and value != ()}


def model_spec(params: dict[str, Any], *, ontology: bool, made_by: Any = None) -> ModelSpec:
    """Take the model options and (with ``ontology``) the classes out of a command's
    parameters: the spec they describe. ``made_by``: the checkpoint and weights to use when -m
    is not given (an index's own). ``device`` stays: it is chosen where the model is built."""
    own = ("ontology", "prompt_templates", "inputs")
    options = given(params, [f.name for f in fields(ModelSpec) if f.name not in own])
    options["inputs"] = input_policy()
    params.pop("public_urls_only", None)
    params.pop("allow_schemes", None)
    templates = params.pop("prompt_templates")
    classes = None
    if ontology:
        chosen = (params.pop("classes"), params.pop("ontology_file"), params.pop("examples"))
        classes = ontology_from(*chosen, templated=bool(templates))
    if "checkpoint" not in options and made_by:  # --weights alone keeps its value
        options["checkpoint"] = made_by["checkpoint"]
        options.setdefault("weights", made_by.get("weights"))
    preset_or_list = (templates[0] if len(templates) == 1 else list(templates)) or None
    resolved = resolve_templates(preset_or_list)
    return ModelSpec(ontology=classes, prompt_templates=resolved, **options)


def hint_bf16(spec: ModelSpec, device: str | None) -> None:
    """One line on stderr when the model will run fp32 on a CPU that has bf16 instructions."""
    from autodistill_metaclip.engine.encoder import leaves_bf16_unused

    if leaves_bf16_unused(spec.precision, device):
        click.echo(
            "hint: this CPU has bf16 instructions (AVX-512 BF16 or AMX); --precision bf16 ran "
            "ViT-B/32 2x faster than fp32 on one, embeddings within cosine 0.9999 (docs: Speed)",
            err=True,
        )


def input_policy() -> InputPolicy:
    """The input policy of ``--public-urls-only`` and ``--allow-scheme``, in force (for listing
    folders, reading images, plotting them) until the command ends."""
    context = click.get_current_context()
    policy: InputPolicy | None = context.meta.get("input_policy")
    if policy is None:
        public = context.params.get("public_urls_only")
        chosen = InputPolicy.public_urls() if public else InputPolicy()
        chosen = chosen.allowing(*context.params.get("allow_schemes") or ())
        policy = context.with_resource(using(chosen))
        context.meta["input_policy"] = policy
    return policy


def ontology_from(
    classes: tuple[str, ...], ontology_file: str | None, examples: str | None, *, templated: bool
) -> Any:
    """The classes of ``-c``, ``--ontology`` or ``--examples`` (exactly one of them)."""
    if sum(bool(x) for x in (classes, ontology_file, examples)) != 1:
        raise click.UsageError(
            "give the classes with exactly one of -c/--class, --ontology or --examples"
        )
    if examples:
        from autodistill_metaclip.engine.ontology import ExampleOntology
        from autodistill_metaclip.inputs import sources

        folders = sorted(p for p in Path(examples).iterdir() if p.is_dir())
        return ExampleOntology(
            {f.name: [s.location for s in sources.list_images(f, None)] for f in folders}
        )
    if ontology_file:
        return read_ontology(ontology_file)
    pairs = [
        c.split("=", 1) if "=" in c else (c if templated else f"a photo of a {c}", c)
        for c in classes
    ]
    return {caption.strip(): name.strip() for caption, name in pairs}


def read_ontology(path: str, flag: str = "--ontology") -> dict[str, str]:
    """A ``{caption: class}`` JSON file; any problem is a usage error naming ``flag``."""
    from autodistill_metaclip.engine.ontology import check_size
    from autodistill_metaclip.inputs.files import read_file

    where = f"{flag} {path!r}"
    try:
        data = read_file(path, MAX_ONTOLOGY_BYTES, flag)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        mapping = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise click.UsageError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise click.UsageError(f'{where}: expected a JSON object of {{"caption": "class"}}')
    try:
        check_size("captions", list(mapping), list(mapping.values()))
    except ArgumentError as e:
        raise click.UsageError(f"{where}: {e.message}") from None
    return mapping


def label_options_from(params: dict[str, Any], **fixed: Any) -> LabelOptions:
    """Take ``label()``'s options out of a command's parameters (the flags are its fields),
    with ``fixed`` ones the command sets itself; ``--confidence-from`` gives a threshold per
    class (``--confidence`` then the one of the others)."""
    options = given(params, [f.name for f in fields(LabelOptions)])
    path = params.pop("confidence_from", None)
    if path is not None:
        thresholds = read_thresholds(path)
        if "confidence" in options:
            thresholds["*"] = options["confidence"]
        options["confidence"] = thresholds
    return LabelOptions(**options, **fixed)


def read_thresholds(path: str) -> dict[str, Any]:
    """The thresholds per class in a JSON file: ``evaluate --json``'s output (its first
    evaluation's ``confidence``), an object with ``confidence``, or ``{class: threshold}``."""
    from autodistill_metaclip.inputs.files import read_file

    where = f"--confidence-from {path!r}"
    try:
        data = json.loads(read_file(path, MAX_ONTOLOGY_BYTES, "--confidence-from"))
    except ValueError as e:
        raise click.UsageError(f"{where}: not a JSON file ({e})") from None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("confidence"), dict):
        data = data["confidence"]
    if not isinstance(data, dict) or not data:
        raise click.UsageError(f'{where}: expected {{"class": threshold}} or evaluate\'s JSON')
    return dict(data)


def ray_from(params: dict[str, Any]) -> Any:
    """Take the Ray options out of a command's parameters: ``None`` without ``--ray``."""
    from autodistill_metaclip.distributed import RayOptions

    address = params.pop("ray_address")
    options = given(params, ["actors", "cpus_per_actor", "stall_timeout", "actor_resources"])
    if address is None:
        return None
    if "actor_resources" in options:
        pairs = [item.partition("=") for item in options["actor_resources"]]
        try:
            options["actor_resources"] = {name: float(amount) for name, _, amount in pairs}
        except ValueError:
            raise click.BadParameter(
                "expected NAME=AMOUNT", param_hint="'--actor-resource'"
            ) from None
    return RayOptions(address=None if address == "local" else address, **options)


def expand(inputs: tuple[str, ...]) -> list[str]:
    """Image arguments: files, URLs and URIs as given, folders as the images inside them."""
    from autodistill_metaclip.inputs import sources

    policy = input_policy() if click.get_current_context(silent=True) else None
    out: list[str] = []
    for item in inputs:
        if sources.is_folder(item, policy):
            found = [s.location for s in sources.list_images(item, None, policy=policy)]
            if not found:
                raise click.UsageError(f"IMAGES: the folder {item!r} has no image files")
            out.extend(found)
        else:
            out.append(item)
    return out
