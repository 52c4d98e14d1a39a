"""label() at scale: what each step costs once the embeddings are kept.

    python -m benchmarks.label_scale [--sizes 10000 50000 200000] [--million]

For each size, demo images (64x64 PNGs of ``autodistill_metaclip.synthetic``) are labelled with
the demo model (12 classes), then: a resume with nothing new, a resume with one image added,
a re-label with another ontology (4 colours, ``overwrite=True``), 10 corrections applied
(``apply_corrections``, no model), and an index opened on the dataset. With ``--million``, the
same phases after the model run at 1,000,000 images whose embeddings are put in the store
directly (512-d, as ViT-B/32's: a random-init ViT-B-32-quickgelu classifies them; the image
files are 1x1 PNGs): the cost of everything but encoding, and its memory.

Each phase runs in a fresh process; its time excludes loading the model, its peak RSS is
reported above the process's RSS once the model is loaded (and, for comparison, as a multiple
of the embeddings' size). Each size's results are kept in ``benchmarks/results/label_scale.json``
as it is done (a later run of other sizes keeps them), and the table of all of them is written
to ``benchmarks/results/label_scale.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.memory import peak_mb, reset_peak, rss_mb

RESULTS = Path(__file__).parent / "results" / "label_scale.md"
KEPT = RESULTS.with_suffix(".json")
PHASES = ("fresh", "noop", "add_one", "ontology", "fix10", "index")
COLOURS = {f"a photo of a {c} thing": c for c in ("red", "green", "blue", "yellow")}


def _model(root: Path, ontology: dict[str, str] | None = None) -> Any:
    from autodistill_metaclip import MetaCLIP, synthetic

    classes = ontology or synthetic.caption_ontology()
    weights = root / "vit-b-32.safetensors"
    if weights.exists():  # the million-image runs
        return MetaCLIP(classes, checkpoint="ViT-B-32-quickgelu", weights=weights, batch_size=64)
    return MetaCLIP(classes, checkpoint="demo", batch_size=64)


def phase(name: str, root: Path) -> dict[str, float]:
    """Run one phase on ``root/in`` -> ``root/out`` in this process."""
    from autodistill_metaclip.labeling.corrections import FORMAT, apply_corrections
    from autodistill_metaclip.labeling.manifest import read_manifest

    model = None
    if name in ("fresh", "noop", "add_one", "ontology", "index"):
        model = _model(root, COLOURS if name == "ontology" else None)
    base = rss_mb()
    reset_peak()  # the phase's own peak, from here
    started = time.perf_counter()
    if name == "fresh":  # the million-image folder holds its store already: "overwrite" it
        overwrite = (root / "vit-b-32.safetensors").exists()
        model.label(root / "in", ".png", root / "out", overwrite=overwrite, progress=False)
    elif name == "noop":
        model.label(root / "in", ".png", root / "out", resume=True, progress=False)
    elif name == "add_one":
        shutil.copy(root / "extra.png", root / "in" / "zzzz-added.png")
        started = time.perf_counter()
        model.label(root / "in", ".png", root / "out", resume=True, progress=False)
    elif name == "ontology":
        model.label(root / "in", ".png", root / "out", overwrite=True, progress=False)
    elif name == "fix10":
        rows = read_manifest(root / "out" / "manifest.csv")
        classes = sorted({r["class"] for r in rows.values() if r["status"] == "labeled"})
        chosen = [r for r in rows.values() if r["status"] == "labeled"][:10]
        other = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
        corrections = [{"image": r["image"], "from": r["class"], "to": other[r["class"]]}
                       for r in chosen]  # fmt: skip
        started = time.perf_counter()
        apply_corrections(root / "out", {"format": FORMAT, "corrections": corrections})
    elif name == "index":
        from autodistill_metaclip import EmbeddingIndex

        index = EmbeddingIndex.open(root / "out")
        opened = time.perf_counter() - started
        index.search(model, "a photo of a red thing", k=10)
        return {"seconds": opened, "search": time.perf_counter() - started - opened,
                "peak_mb": peak_mb() - base, "model_mb": base}  # fmt: skip
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb() - base,
            "model_mb": base}  # fmt: skip


def _run(name: str, root: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.label_scale", "--phase", name, "--root", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def demo_folder(root: Path, n: int) -> None:
    """``n`` demo images, and one more to add later."""
    from autodistill_metaclip import synthetic

    synthetic.write_folder(root / "in", n, seed=1)
    synthetic.make_image("green", "square", seed=10**6).save(root / "extra.png")


def million_folder(root: Path, n: int, dim: int = 512) -> None:
    """``n`` 1x1 PNGs, their 512-d embeddings put straight into the dataset's store (clustered
    like image embeddings, see ``benchmarks/index_scale.py``), and random-init ViT-B/32
    weights to classify them."""
    import open_clip
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from autodistill_metaclip.index.store import (
        DATASET_STORES,
        EmbeddingStore,
        identity_name,
        model_identity,
    )
    from autodistill_metaclip.inputs import sources
    from benchmarks.index_scale import vectors

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(root / "vit-b-32.safetensors"))  # fmt: skip
    (root / "in").mkdir()
    pixel = root / "pixel.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(pixel)
    data = pixel.read_bytes()
    for i in range(n):
        (root / "in" / f"{i:07d}.png").write_bytes(data)
    shutil.copy(pixel, root / "extra.png")
    listed = sources.list_images(root / "in", [".png"])
    identity = model_identity(_model(root))
    source = {"input_folder": os.path.abspath(root / "in"), "extensions": [".png"],
              "recursive": False}  # fmt: skip
    store_dir = (root / "out").joinpath(*DATASET_STORES, identity_name(identity, source))
    store = EmbeddingStore.open(store_dir, identity, source)
    embedded, _ = vectors(n, seed=3)
    digest = hashlib.sha256(data).digest()
    for start in range(0, n, 100_000):
        chunk = listed[start : start + 100_000]
        store.append([f.key for f in chunk], [f.stamp for f in chunk], [digest] * len(chunk),
                     embedded[start : start + len(chunk)])  # fmt: skip
    store.compact()


def measure(n: int, million: bool) -> dict[str, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix=f"label-scale-{n}-"))
    try:
        started = time.perf_counter()
        (million_folder if million else demo_folder)(root, n)
        print(f"{n}: inputs ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results = {}
        for name in PHASES:
            results[name] = _run(name, root)
            print(f"{n} {name}: {results[name]}", file=sys.stderr)
        results["page"] = _page_size(root / "out")
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _page_size(output: Path) -> dict[str, float]:
    shell = output / "review.html"
    assets = output / ".autodistill-metaclip" / "review"
    total = (
        sum(p.stat().st_size for p in assets.rglob("*") if p.is_file()) if assets.is_dir() else 0
    )
    return {"shell_mb": shell.stat().st_size / 2**20, "assets_mb": total / 2**20}


def table(results: dict[int, dict[str, Any]], dims: dict[int, int]) -> str:
    lines = [
        f"label() at scale, {os.cpu_count()}-core {_cpu()}; seconds, and peak RSS above the "
        "process once its model is loaded (MB, and x the embeddings' size); 10k-200k: demo "
        "model (64-d), 1M: embeddings put in the store, random-init ViT-B/32 (512-d):",
        "",
        "| images | fresh label | no-op resume | one image added | another ontology "
        "| 10 corrections | index opened | review page (shell / assets) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        embeddings_mb = n * dims[n] * 4 / 2**20
        cells = [
            f"{r[p]['seconds']:.1f} s, {r[p]['peak_mb']:.0f} MB "
            f"({r[p]['peak_mb'] / embeddings_mb:.1f}x)"
            for p in PHASES
        ]
        page = r["page"]
        cells.append(f"{page['shell_mb']:.2f} MB / {page['assets_mb']:.0f} MB")
        label = f"{n:,}" + (" (embeddings given)" if dims[n] == 512 else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip().split(" Processor")[0]
    except OSError:
        pass
    return "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000, 200_000])
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--phase", choices=PHASES)
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.root)))
        return
    kept = json.loads(KEPT.read_text()) if KEPT.exists() else {}
    todo = [(n, False) for n in args.sizes] + ([(10**6, True)] if args.million else [])
    for n, million in todo:
        kept[str(n)] = {"dim": 512 if million else 64, "results": measure(n, million)}
        KEPT.write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
        ordered = sorted(kept.items(), key=lambda item: int(item[0]))
        RESULTS.write_text(
            table({int(k): v["results"] for k, v in ordered},
                  {int(k): v["dim"] for k, v in ordered}),
            encoding="utf-8",
        )  # fmt: skip
    print(RESULTS.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
