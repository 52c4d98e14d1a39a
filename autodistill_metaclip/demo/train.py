"""Train the bundled demo model: a tiny open_clip CLIP on synthetic coloured shapes.

Run ``python -m autodistill_metaclip.demo.train`` to rebuild ``metaclip-demo.safetensors``
(about 3 minutes on 2 CPU cores). The same seed and thread count give identical weights.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

from autodistill_metaclip import synthetic

DEMO_DIR = Path(__file__).parent
CONFIG = DEMO_DIR / "metaclip-demo.json"
WEIGHTS = DEMO_DIR / "metaclip-demo.safetensors"
ARCHITECTURE = CONFIG.stem

_TEMPLATES = ("a photo of a {}", "a {}", "a picture of a {}", "an image of a {}", "{}")
logger = logging.getLogger(__name__)


def _caption_pool() -> tuple[list[str], dict[tuple[str, str], list[list[int]]]]:
    """All training captions, and for each (colour, shape) the caption indices that fit it.

    Returns ``(captions, groups)`` where ``groups[(c, s)]`` is
    ``[full-caption ids, colour-only ids, shape-only ids]``.
    """
    captions: list[str] = []

    def add(texts: list[str]) -> list[int]:
        start = len(captions)
        captions.extend(texts)
        return list(range(start, len(captions)))

    colour_only = {c: add([t.format(f"{c} thing") for t in _TEMPLATES]) for c in synthetic.COLOURS}
    shape_only = {s: add([t.format(s) for t in _TEMPLATES]) for s in synthetic.SHAPES}
    groups = {
        (c, s): [add([t.format(f"{c} {s}") for t in _TEMPLATES]), colour_only[c], shape_only[s]]
        for c in synthetic.COLOURS
        for s in synthetic.SHAPES
    }
    return captions, groups


def train(
    *,
    steps: int = 2000,
    batch_size: int = 128,
    pool_size: int = 24_000,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int = 2,
) -> dict[str, torch.Tensor]:
    """Train from scratch and return the fp16 state dict, unused token rows zeroed."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    open_clip.add_model_config(CONFIG)
    model, _, preprocess = open_clip.create_model_and_transforms(ARCHITECTURE)
    tokenizer = open_clip.get_tokenizer(ARCHITECTURE)

    started = time.perf_counter()
    pool = list(synthetic.samples(pool_size, seed=seed + 1))
    images = torch.stack([preprocess(s.image) for s in pool])
    keys = [(s.colour, s.shape) for s in pool]
    captions, groups = _caption_pool()
    tokens = tokenizer(captions)
    logger.info(
        "%d images and %d captions ready in %.1fs",
        pool_size,
        len(captions),
        time.perf_counter() - started,
    )

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    warmup = steps // 20

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    loss_fn = open_clip.ClipLoss()
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        index = rng.choice(pool_size, size=batch_size, replace=False)
        # A quarter of captions name only the colour or only the shape.
        kinds = rng.choice(3, size=batch_size, p=(0.75, 0.125, 0.125))
        chosen = [rng.choice(groups[keys[i]][k]) for i, k in zip(index, kinds, strict=True)]
        image_features, text_features, logit_scale = model(images[index], tokens[chosen])
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 200 == 0 or step == steps - 1:
            logger.info(
                "step %4d  loss %.4f  scale %.1f  %.0fs",
                step,
                loss.item(),
                logit_scale.item(),
                time.perf_counter() - started,
            )

    used = torch.unique(tokens)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    unused = torch.ones(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    unused[used] = False
    state["token_embedding.weight"][unused] = 0
    return state


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=WEIGHTS)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    state = train(steps=args.steps, seed=args.seed, threads=args.threads)
    # One key: safetensors keeps metadata in a hash map, so several keys change the byte order.
    metadata = {"trained_with": f"steps={args.steps} seed={args.seed} threads={args.threads}"}
    save_file(state, str(args.output), metadata=metadata)
    logger.info("wrote %s (%.2f MB)", args.output, args.output.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
