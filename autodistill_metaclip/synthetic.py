"""Synthetic coloured-shape images: the demo model's world, and test and benchmark data.

Each image holds one shape (circle, square or triangle) in one colour (red, green, blue or
yellow) on a noisy, low-saturation background. The generator is deterministic for a seed.

Examples:
    >>> from autodistill_metaclip.synthetic import make_image
    >>> make_image("red", "circle", seed=1).size
    (64, 64)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from autodistill_metaclip.errors import ArgumentError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (40, 75, 215),
    "yellow": (235, 210, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Sample:
    """One synthetic image and what it shows."""

    image: Image.Image
    colour: str
    shape: str

    @property
    def label(self) -> str:
        """The class name, e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"


def class_names() -> list[str]:
    """All 12 class names, colour-major: ``["red circle", "red square", ...]``."""
    return [f"{c} {s}" for c, s in itertools.product(COLOURS, SHAPES)]


def caption_ontology() -> dict[str, str]:
    """The demo's caption -> class mapping: ``{"a photo of a red circle": "red circle", ...}``."""
    return {f"a photo of a {name}": name for name in class_names()}


def make_image(
    colour: str,
    shape: str,
    *,
    size: int | tuple[int, int] = 64,
    seed: int | np.random.Generator = 0,
) -> Image.Image:
    """Draw one shape of one colour on a noisy background.

    Args:
        colour: One of :data:`COLOURS`.
        shape: One of :data:`SHAPES`.
        size: Side length, or ``(width, height)``.
        seed: Seed or generator for the background, placement and jitter.

    Returns:
        An RGB image.
    """
    if colour not in COLOURS:
        raise ArgumentError("colour", f"expected one of {sorted(COLOURS)}, but got {colour!r}")
    if shape not in SHAPES:
        raise ArgumentError("shape", f"expected one of {list(SHAPES)}, but got {shape!r}")
    rng = np.random.default_rng(seed)
    width, height = (size, size) if isinstance(size, int) else size

    grey = rng.uniform(70, 190)
    tint = rng.uniform(-18, 18, size=3)
    noise = rng.normal(0, 22, size=(height, width, 3))
    background = np.clip(grey + tint + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")

    side = min(width, height)
    radius = rng.uniform(0.18, 0.34) * side
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    fill = tuple(int(v) for v in np.clip(np.add(COLOURS[colour], rng.integers(-20, 21, 3)), 0, 255))
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif shape == "square":
        half = radius * 0.85
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    else:
        draw.regular_polygon((cx, cy, radius), 3, rotation=float(rng.uniform(0, 120)), fill=fill)
    return image


def samples(n: int, *, size: int | tuple[int, int] = 64, seed: int = 0) -> Iterator[Sample]:
    """Yield ``n`` samples cycling through every class, each drawn with its own seed."""
    classes = list(itertools.product(COLOURS, SHAPES))
    for i in range(n):
        colour, shape = classes[i % len(classes)]
        rng = np.random.default_rng([seed, i])
        yield Sample(make_image(colour, shape, size=size, seed=rng), colour, shape)


def write_folder(
    folder: str | Path,
    n: int,
    *,
    size: int | tuple[int, int] = 64,
    seed: int = 0,
    suffix: str = ".png",
    quality: int = 90,
) -> dict[Path, str]:
    """Write ``n`` samples to ``folder`` and return ``{path: class name}``.

    Files are named ``{index:05d}_{colour}_{shape}{suffix}``; JPEGs use ``quality``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[Path, str] = {}
    for i, sample in enumerate(samples(n, size=size, seed=seed)):
        path = folder / f"{i:05d}_{sample.colour}_{sample.shape}{suffix}"
        sample.image.save(path, quality=quality)
        written[path] = sample.label
    return written
