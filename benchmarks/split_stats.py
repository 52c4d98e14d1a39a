"""Split statistics of ``label()`` on a skewed 1,000-image folder, with planted near-duplicates.

    python -m benchmarks.split_stats [--out benchmarks/results]

Twelve demo classes with counts from 300 down to 3 (1,000 PNGs), 50 of them with a near-copy
(2 levels brighter, re-encoded as BMP). Reports images per class and split, the share of train,
which classes miss a split, and whether any near-copy pair straddles splits. Writes
``split_stats.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from collections import Counter
from pathlib import Path

from PIL import Image

from autodistill_metaclip import MetaCLIP, synthetic

COUNTS = [300, 200, 150, 100, 80, 60, 40, 30, 20, 10, 7, 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    labels = synthetic.class_names()
    model = MetaCLIP({f"a photo of a {name}": name for name in labels}, checkpoint="demo")
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "in"
        source.mkdir()
        n, twins = 0, {}
        for label, count in zip(labels, COUNTS, strict=True):
            colour, shape = label.split()
            for _ in range(count):
                path = source / f"{n:05d}.png"
                synthetic.make_image(colour, shape, seed=n).save(path)
                if n % 20 == 0:
                    twin = source / f"twin-{n:05d}.bmp"
                    with Image.open(path) as image:
                        image.point(lambda v: min(255, v + 2)).save(twin)
                    twins[path.name] = twin.name
                n += 1
        output = Path(work) / "out"
        model.label(source, [".png", ".bmp"], output, near_duplicates=0.995, progress=False)
        with open(output / "manifest.csv", newline="") as f:
            rows = {r["image"]: r for r in csv.DictReader(f)}
    per_class = Counter((r["class"], r["split"]) for r in rows.values() if r["split"])
    lines = [
        f"{len(rows)} images ({len(twins)} planted near-copy pairs), 12 classes from 300 to 3 "
        "images, split (0.7, 0.15, 0.15), near_duplicates=0.995 (demo model), seed 0.",
        "",
        "| predicted class | images | train | valid | test | train share |",
        "|---|---|---|---|---|---|",
    ]
    for label in sorted(
        {c for c, _ in per_class},
        key=lambda c: -sum(per_class[c, s] for s in ("train", "valid", "test")),
    ):
        counts = [per_class[label, s] for s in ("train", "valid", "test")]
        lines.append(
            f"| {label} | {sum(counts)} | {counts[0]} | {counts[1]} | {counts[2]} | "
            f"{counts[0] / sum(counts):.2f} |"
        )
    both = [(a, b) for a, b in twins.items() if rows[a]["split"] and rows[b]["split"]]
    straddling = sum(rows[a]["split"] != rows[b]["split"] for a, b in both)
    missing = [
        c
        for c in {c for c, _ in per_class}
        if 0 in (per_class[c, s] for s in ("train", "valid", "test"))
    ]
    lines += ["", f"Near-copy pairs in different splits: {straddling} of the {len(both)} pairs "
              f"both labelled ({len(twins) - len(both)} pairs had an image below the threshold, "
              "so in no split). "
              f"Classes missing from a split: {', '.join(sorted(missing)) or 'none'}."]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split_stats.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
