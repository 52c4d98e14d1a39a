"""Ray Data labelling throughput with 1 and 2 actors, next to single-machine label().

    python -m benchmarks.ray_throughput [--images 256]

Same 640x480 JPEGs, random-init ViT-B-32-quickgelu and 10-prompt ontology as
``benchmarks/throughput.py``, on a local Ray instance using every core of this machine. Times
include Ray's scheduling and the actors' model loading, not ``ray.init``. Writes
``ray_throughput.json`` and ``ray_throughput.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import ray
from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.distributed import label_with_ray
from benchmarks.throughput import ARCHITECTURE, ONTOLOGY, _cpu_name, make_photos, make_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = make_weights(work / "b32.safetensors")
        make_photos(work / "photos", args.images)
        model = MetaCLIP(
            CaptionOntology(ONTOLOGY),
            ARCHITECTURE,
            weights=weights,
            device="cpu",
            batch_size=args.batch_size,
        )
        model.label(work / "photos", ".jpg", work / "warm", progress=False)
        start = time.perf_counter()
        model.label(work / "photos", ".jpg", work / "local", confidence=0.0, progress=False)
        results: dict[str, object] = {
            "machine": f"{_cpu_name()}, {cores} cores",
            "images": args.images,
            "label_img_s": args.images / (time.perf_counter() - start),
        }
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        for actors in (1, 2):
            # Leave one CPU to the decoding tasks.
            share = min(1.0, (cores - 1) / actors)
            start = time.perf_counter()
            label_with_ray(
                model,
                str(work / "photos"),
                str(work / f"shards{actors}"),
                actors=actors,
                cpus_per_actor=share,
                confidence=0.0,
            )
            results[f"ray_{actors}_actors_img_s"] = args.images / (time.perf_counter() - start)
            results[f"ray_{actors}_actors_cpus_each"] = share
        ray.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    table = to_markdown(results)
    (args.out / "ray_throughput.md").write_text(table)
    print(table)


def to_markdown(r: dict) -> str:
    rows = [("`label()` on one machine", r["label_img_s"])]
    for actors in (1, 2):
        share = r[f"ray_{actors}_actors_cpus_each"]
        rows.append((f"Ray, {actors} actor(s) of {share:g} CPU", r[f"ray_{actors}_actors_img_s"]))
    lines = [
        f"Machine: {r['machine']}; {r['images']} JPEGs of 640x480, random-init {ARCHITECTURE}, "
        "local Ray.",
        "",
        "| run | images/s |",
        "|---|---|",
        *(f"| {name} | {speed:.1f} |" for name, speed in rows),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
