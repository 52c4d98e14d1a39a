"""The embedding index at 10k, 100k and 1M images: build, save, load, search, duplicates,
k-means, peak memory.

    python -m benchmarks.index_scale [--sizes 10000 100000 1000000]

Vectors: 512-d (ViT-B size), unit length, of intrinsic dimension 32 (a 200-component Gaussian
mixture in 32 dimensions, mapped linearly into 512), as image embeddings are: their nearest
neighbours mean something. (Uniformly random 512-d vectors have none to speak of: every pair
is at cosine 0 +- 0.05, and "the top 10" is noise only a full scan finds; on them, or on
clusters with no structure inside, IVF and HNSW both fall below 0.3 recall here.) Plus
planted near-duplicates: one per 2,000 vectors, at cosine about 0.99 to its original. Each size
runs in two fresh processes: one builds and saves the index, one loads it and measures; peak
RSS is each process's. Recall@10 is against exact search (faiss.knn) on 100 held-out queries.
Writes ``benchmarks/results/index_scale.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.memory import peak_mb, reset_peak, rss_mb

RESULTS = Path(__file__).parent / "results" / "index_scale.md"
D = 512
LATENT = 32


def vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors of intrinsic dimension 32, the last ``n // 2000`` near-copies of
    earlier ones; and the (original, copy) rows."""
    rng = np.random.default_rng(seed)
    fixed = np.random.default_rng(12345)  # the same "embedding space" for every call
    basis = fixed.standard_normal((LATENT, D)).astype(np.float32) / np.sqrt(LATENT)
    centres = fixed.standard_normal((200, LATENT)).astype(np.float32) * 1.5
    planted = n // 2000
    out = np.empty((n, D), np.float32)
    for start in range(0, n - planted, 100_000):  # in chunks: no 2x temporary at 1M
        stop = min(start + 100_000, n - planted)
        latent = centres[rng.integers(0, len(centres), stop - start)]
        latent += rng.standard_normal(latent.shape, dtype=np.float32)
        chunk = latent @ basis + rng.standard_normal((stop - start, D), dtype=np.float32) * 0.01
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    originals = rng.choice(n - planted, planted, replace=False)
    noise = rng.standard_normal((planted, D), dtype=np.float32) * 0.15 / np.sqrt(D)
    copies = out[originals] + noise
    out[n - planted :] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    pairs = np.stack([originals, np.arange(n - planted, n)], axis=1)
    return out, pairs


def build(n: int, path: Path) -> dict[str, float]:
    from autodistill_metaclip import EmbeddingIndex

    baseline = rss_mb()
    reset_peak()
    data, pairs = vectors(n, seed=0)
    np.save(path.with_suffix(".pairs.npy"), pairs)
    keys = [f"{i:07d}.jpg" for i in range(n)]
    started = time.perf_counter()
    index = EmbeddingIndex("photos", keys, data, ["1:1"] * n, {"checkpoint": "benchmark"})
    index.neighbours.parts()  # builds the IVF index above the exact limit
    built = time.perf_counter() - started
    started = time.perf_counter()
    index.save(path)
    saved = time.perf_counter() - started
    return {"build": built, "save": saved, "build_rss": peak_mb() - baseline}


def measure(n: int, path: Path) -> dict[str, float]:
    import faiss

    from autodistill_metaclip import EmbeddingIndex

    baseline = rss_mb()
    reset_peak()
    started = time.perf_counter()
    index = EmbeddingIndex.load(path)
    loaded = time.perf_counter() - started
    queries, _ = vectors(100, seed=1)
    search = index.neighbours
    search.search(queries[:1], 10)  # reads the IVF index in
    started = time.perf_counter()
    found = np.stack([search.search(q[None], 10)[1][0] for q in queries])
    per_query = (time.perf_counter() - started) / len(queries)
    exact = faiss.knn(queries, np.asarray(index.embeddings), 10, metric=faiss.METRIC_INNER_PRODUCT)[
        1
    ]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))
    started = time.perf_counter()
    groups = index.duplicate_keys(0.95)
    duplicates = time.perf_counter() - started
    grouped = {key: n for n, group in enumerate(groups) for key in group}
    pairs = np.load(path.with_suffix(".pairs.npy"))
    hits = sum(
        f"{a:07d}.jpg" in grouped and grouped.get(f"{a:07d}.jpg") == grouped.get(f"{b:07d}.jpg")
        for a, b in pairs
    )
    started = time.perf_counter()
    index.clusters(100, representatives=1)
    clustering = time.perf_counter() - started
    return {
        "load": loaded, "search_ms": per_query * 1000, "recall": recall,
        "duplicates": duplicates, "planted": len(pairs), "found": hits,
        "kmeans": clustering, "rss": peak_mb() - baseline, "approximate": search.approximate,
    }  # fmt: skip


def _child(step: str, n: int, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.index_scale", "--step", step, str(n), str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step, n, path = args.step
        print(json.dumps((build if step == "build" else measure)(int(n), Path(path))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for n in args.sizes:
            path = Path(work) / f"index-{n}.npz"
            built = _child("build", n, path)
            measured = _child("measure", n, path)
            vectors_mib = n * D * 4 / 2**20
            rows.append(
                f"| {n:,} | {'IVF-SQ8' if measured['approximate'] else 'exact'} "
                f"| {built['build']:.1f} s | {built['save']:.1f} s | {measured['load']:.2f} s "
                f"| {measured['search_ms']:.2f} ms | {measured['recall']:.3f} "
                f"| {measured['duplicates']:.1f} s, {measured['found']}/{measured['planted']} "
                f"| {measured['kmeans']:.1f} s "
                f"| {built['build_rss'] / vectors_mib:.2f}x "
                f"/ {measured['rss'] / vectors_mib:.2f}x |"
            )
            print(rows[-1], flush=True)
    lines = [
        "Embedding index, 512-d unit vectors of intrinsic dimension 32 with planted "
        "near-duplicates; 2-core AMD EPYC, faiss-cpu, one query at a time:",
        "",
        "| images | search | build | save | load | search / query | recall@10 "
        "| duplicates (>= 0.95), planted pairs found | k-means (k=100) "
        "| peak RSS above the interpreter / vectors: build / use |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
