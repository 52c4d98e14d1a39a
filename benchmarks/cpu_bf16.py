"""bf16 against fp32 on this CPU: the speed and agreement behind the command line's bf16 hint.

    python -m benchmarks.cpu_bf16 [--batch-size 32] [--rounds 3]

Random-init ViT-B-32-quickgelu, one batch of random 224x224 inputs; the same weights converted
to bf16 as ``MetaCLIP(precision="bf16")`` converts them on CPU (open_clip's conversion,
LayerNorm kept in fp32). Reports the image tower's img/s in each precision (best of
``--rounds``, alternating), their ratio, and the lowest cosine between the two embeddings of an
input. Writes ``benchmarks/results/cpu_bf16.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import open_clip
import torch

from benchmarks.label_scale import _cpu

RESULTS = Path(__file__).parent / "results" / "cpu_bf16.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    fp32 = open_clip.create_model("ViT-B-32-quickgelu").eval()
    bf16 = open_clip.create_model("ViT-B-32-quickgelu", precision="bf16").eval()
    bf16.load_state_dict(fp32.state_dict())
    pixels = torch.randn(args.batch_size, 3, 224, 224)
    models = {"fp32": (fp32, torch.float32), "bf16": (bf16, torch.bfloat16)}
    best = {name: float("inf") for name in models}
    out = {}
    with torch.inference_mode():
        for model, dtype in models.values():  # warm-up
            model.encode_image(pixels[:4].to(dtype))
        for _ in range(args.rounds):
            for name, (model, dtype) in models.items():
                start = time.perf_counter()
                out[name] = model.encode_image(pixels.to(dtype)).float()
                best[name] = min(best[name], time.perf_counter() - start)
    speed = {name: args.batch_size / seconds for name, seconds in best.items()}
    cosine = torch.nn.functional.cosine_similarity(out["fp32"], out["bf16"]).min().item()
    flags = [
        name
        for name, probe in (
            ("AVX-512 BF16", "_is_avx512_bf16_supported"),
            ("AMX", "_is_amx_tile_supported"),
        )
        if getattr(torch.cpu, probe, lambda: False)()
    ]
    RESULTS.write_text(
        f"{_cpu()} ({', '.join(flags) or 'no bf16 instructions'}), torch {torch.__version__}, "
        f"random-init ViT-B-32-quickgelu image tower, batch {args.batch_size}, best of "
        f"{args.rounds}:\n\n| fp32 | bf16 | bf16 / fp32 | min cosine |\n|---|---|---|---|\n"
        f"| {speed['fp32']:.1f} img/s | {speed['bf16']:.1f} img/s | "
        f"**{speed['bf16'] / speed['fp32']:.1f}x** | {cosine:.5f} |\n",
        encoding="utf-8",
    )
    print(RESULTS.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
