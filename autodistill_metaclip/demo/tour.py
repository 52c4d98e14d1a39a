"""The built-in demo, offline: ``python -m autodistill_metaclip.demo [FOLDER]``.

Writes synthetic shape photos into ``FOLDER/images``, classifies a few, compares text and image
embeddings, labels the folder into ``FOLDER/labeled`` (with its review page), compares two
ontologies on a hand-labelled folder ``FOLDER/truth``, and says what to run for the real
MetaCLIP. Running it again replaces what it wrote.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("folder", default="metaclip-demo", type=click.Path(file_okay=False))
def demo(folder: str) -> None:  # prose output: no --json
    """Run the offline demo (predictions, embeddings, label()) on the bundled model in FOLDER
    (default: ./metaclip-demo). Running it again replaces what it wrote there.

    \b
    Example:
      autodistill-metaclip demo
    """
    try:
        run(Path(folder))
    except OSError as e:
        raise click.ClickException(f"FOLDER: {e.strerror or e} ({e.filename or folder})") from e


def run(workdir: Path) -> None:
    """Run every step of the demo inside ``workdir``."""
    from autodistill.detection import CaptionOntology

    from autodistill_metaclip import synthetic
    from autodistill_metaclip.evaluation import evaluate, report
    from autodistill_metaclip.model import MetaCLIP

    images = synthetic.write_folder(workdir / "images", 60, suffix=".jpg", seed=42)
    ontology = CaptionOntology(synthetic.caption_ontology())
    model = MetaCLIP(ontology, checkpoint="demo")
    click.echo(f"{model}\n\nZero-shot predictions:")
    classes = ontology.classes()
    for path, truth in list(images.items())[:4]:
        result = model.predict(str(path), confidence=0.5)
        guess = "-"
        if result.confidence is not None and len(result) > 0:
            guess = f"{classes[result.class_id[0]]} ({result.confidence[0]:.3f})"
        click.echo(f"  {path.name:28} -> {guess:24} truth: {truth}")

    red, blue = (
        next(p for p, t in images.items() if t == name) for name in ("red circle", "blue square")
    )
    text = model.embed_text("a photo of a red circle")
    click.echo("\nCosine of 'a photo of a red circle' with")
    click.echo(f"  {red.name:28} {model.compare(text, model.embed_image(red)):+.3f}")
    click.echo(f"  {blue.name:28} {model.compare(text, model.embed_image(blue)):+.3f}")

    output = workdir / "labeled"
    # near_duplicates: the tiny demo model packs a class closely (same-class cosine up to 0.99)
    dataset = model.label(
        workdir / "images", ".jpg", output, progress=False, overwrite=True, near_duplicates=0.995
    )
    names = {path.name: label for path, label in images.items()}  # other files: not counted
    right = sum(
        dataset.classes[dataset.annotations[p].class_id[0]] == names.get(Path(p).name)
        for p in dataset.image_paths
    )
    labelled = f"{len(dataset)} of {len(images)} images labelled, {right} correctly"
    click.echo(f"\nlabel(): {labelled}, into")
    for split in ("train", "valid", "test"):
        count = sum(1 for _ in (output / split).rglob("*.jpg"))
        click.echo(f"  {output / split}  ({count} images)")
    click.echo(f"  {output / 'manifest.csv'}")
    click.echo(f"  {output / 'review.html'}  (open it in a browser: fix labels, export)")

    hand_labelled = workdir / "truth"  # a small hand-labelled set: one folder per class
    for path, name in synthetic.write_folder(workdir / "truth-images", 48, seed=7).items():
        (hand_labelled / name).mkdir(parents=True, exist_ok=True)
        path.replace(hand_labelled / name / path.name)
    # The same classes in words the demo model never saw in training: which prompts help?
    synonyms = {"red": "crimson", "green": "emerald", "blue": "navy", "yellow": "golden"}
    fancy = {f"a photo of a {synonyms[c.split()[0]]} {c.split()[1]}": c for c in classes}
    other = MetaCLIP(CaptionOntology(fancy), checkpoint="demo")
    evaluations = evaluate({"plain": model, "synonyms": other}, hand_labelled, target_accuracy=0.9)
    click.echo(f"\nevaluate() on {hand_labelled}: 'a photo of a red circle' vs 'a crimson circle':")
    click.echo("  " + report(evaluations).replace("\n", "\n  "))
    click.echo(
        "\nFor the real MetaCLIP (downloads about 600 MB once, then works offline):\n"
        "  MetaCLIP(CaptionOntology({'a photo of a dog': 'dog', 'a photo of a cat': 'cat'}))\n"
        "  # checkpoint='b32-fullcc' by default; see autodistill_metaclip.list_checkpoints()"
    )
