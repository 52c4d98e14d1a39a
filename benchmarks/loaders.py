"""Which way of overlapping image decoding with model compute wins on this machine?

    python -m benchmarks.loaders [--images 192]

Compares, on the same 640x480 JPEGs and random-init ViT-B-32-quickgelu: decoding serially in
the calling thread, the package's thread pool (1, 2, 4 threads), and torch DataLoader worker
processes (1, 2). Prints images/s for each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.encoder import Encoder
from autodistill_metaclip.pipeline import encode_images
from benchmarks.throughput import ARCHITECTURE, make_photos, make_weights


class _Pixels(Dataset):
    def __init__(self, encoder: Encoder, paths: list[Path]) -> None:
        self.encoder, self.paths = encoder, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.encoder.pixels(self.paths[i])


def serial(encoder: Encoder, paths: list[Path], batch_size: int) -> None:
    for i in range(0, len(paths), batch_size):
        encoder.encode_pixels(torch.stack([encoder.pixels(p) for p in paths[i : i + batch_size]]))


def threads(encoder: Encoder, paths: list[Path], batch_size: int, workers: int) -> None:
    for _ in encode_images(encoder, paths, batch_size=batch_size, workers=workers):
        pass


def dataloader(encoder: Encoder, paths: list[Path], batch_size: int, workers: int) -> None:
    loader = DataLoader(_Pixels(encoder, paths), batch_size=batch_size, num_workers=workers)
    for batch in loader:
        encoder.encode_pixels(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_photos(work / "photos", args.images)
        model = MetaCLIP(
            None, ARCHITECTURE, weights=make_weights(work / "w.safetensors"), device="cpu"
        )
        encoder = model.encoder
        runs = {
            "serial (calling thread)": lambda: serial(encoder, paths, args.batch_size),
            **{
                f"threads x{k}": (lambda k=k: threads(encoder, paths, args.batch_size, k))
                for k in (1, 2, 4)
            },
            **{
                f"DataLoader x{k} processes": (
                    lambda k=k: dataloader(encoder, paths, args.batch_size, k)
                )
                for k in (1, 2)
            },
        }
        serial(encoder, paths[: args.batch_size], args.batch_size)  # warm-up
        print(
            f"{args.images} JPEGs 640x480, {ARCHITECTURE}, batch {args.batch_size}, "
            f"{torch.get_num_threads()} torch threads"
        )
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            print(f"  {name:28} {args.images / (time.perf_counter() - start):6.1f} img/s")


if __name__ == "__main__":
    main()
