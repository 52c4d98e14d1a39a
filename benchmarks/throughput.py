"""Labelling throughput, memory and large-photo decoding, measured in one run.

    python -m benchmarks.throughput [--images 256] [--device cpu] [--out benchmarks/results]

On the same 640x480 JPEGs, a random-init ViT-B-32-quickgelu and a 10-prompt ontology:

(a) bare model: ``encode_image`` on tensors decoded and preprocessed beforehand, same batch size;
(b) ``label()`` end to end: listing, decoding, preprocessing, encoding, scoring, copying, manifest;
(c) a per-image loop like autodistill-metaclip 0.1.3: batch 1, every prompt re-encoded per image.

``label()`` runs with ``confidence=0`` so that every image is copied into the dataset. (a) and
(b) alternate for three rounds after a warm-up; the medians are reported.

Also: the peak RSS while ``label()`` runs on 2,000 vs 200 images (each in a fresh process);
the speed-up and agreement of draft-mode decoding of 12-megapixel JPEGs; and, on CPU, bf16
against fp32 (speed, embedding cosine, probability drift, top-1 agreement on the demo model).
Writes ``throughput.json`` and ``throughput.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from autodistill.detection import CaptionOntology
from PIL import Image
from safetensors.torch import save_file

from autodistill_metaclip import MetaCLIP, load_image, synthetic

ARCHITECTURE = "ViT-B-32-quickgelu"
ONTOLOGY = {f"a photo of a {name}": name for name in synthetic.class_names()[:10]}


def make_weights(path: Path) -> Path:
    torch.manual_seed(0)
    model = open_clip.create_model(ARCHITECTURE)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def make_photos(folder: Path, n: int, distinct: int = 100) -> list[Path]:
    """``n`` 640x480 JPEGs: ``distinct`` drawn ones, copied to reach ``n`` files."""
    drawn = synthetic.write_folder(folder, min(n, distinct), size=(640, 480), suffix=".jpg")
    sources = list(drawn)
    for i in range(len(sources), n):
        shutil.copyfile(sources[i % len(sources)], folder / f"copy_{i:05d}.jpg")
    return sorted(folder.glob("*.jpg"))


def bare_model(model: MetaCLIP, pixels: torch.Tensor, batch_size: int) -> float:
    """Images/s of encode_image alone on pre-decoded, pre-processed tensors."""
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        model.encoder.encode_pixels(pixels[i : i + batch_size])
    return len(pixels) / (time.perf_counter() - start)


def decoded(model: MetaCLIP, photos: list[Path]) -> torch.Tensor:
    return torch.stack(
        [model.encoder.preprocessor.transform(Image.open(p).convert("RGB")) for p in photos]
    )


def ours(model: MetaCLIP, folder: Path, output: Path) -> float:
    """Images/s of label() end to end."""
    start = time.perf_counter()
    model.label(folder, ".jpg", output, confidence=0.0, overwrite=True, progress=False)
    return len(list(folder.glob("*.jpg"))) / (time.perf_counter() - start)


def alternating(
    model: MetaCLIP, photos: list[Path], work: Path, batch_size: int, rounds: int = 3
) -> tuple[float, float]:
    """Median images/s of (a) and (b), measured in alternation so that both see the same
    machine load; the first, warm-up pass of each is not counted."""
    pixels = decoded(model, photos)
    bare, label = [], []
    for _ in range(rounds + 1):
        bare.append(bare_model(model, pixels, batch_size))
        label.append(ours(model, photos[0].parent, work / "labelled"))
    return float(np.median(bare[1:])), float(np.median(label[1:]))


def seed_package_loop(weights: Path, photos: list[Path], device: str) -> float:
    """Images/s of autodistill-metaclip 0.1.3's approach: one image at a time, every prompt
    tokenized and encoded again for each image (its confidence maths is not reproduced)."""
    model, _, preprocess = open_clip.create_model_and_transforms(
        ARCHITECTURE, pretrained=str(weights), device=device
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(ARCHITECTURE)
    start = time.perf_counter()
    with torch.no_grad():
        for path in photos:
            image = preprocess(Image.open(path)).unsqueeze(0).to(device)
            text = tokenizer(list(ONTOLOGY)).to(device)
            image_features = model.encode_image(image)
            text_features = model.encode_text(text)
            (image_features @ text_features.T).softmax(dim=-1).cpu().numpy()
    return len(photos) / (time.perf_counter() - start)


def label_rss_mb(weights: Path, folder: Path, output: Path) -> tuple[float, float]:
    """RSS of a fresh process with the model loaded, and its peak while labelling ``folder``."""
    code = (
        "import os, sys, threading\n"
        "from autodistill.detection import CaptionOntology\n"
        "from autodistill_metaclip import MetaCLIP\n"
        "def rss():\n"
        "    pages = int(open('/proc/self/statm').read().split()[1])\n"
        "    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        f"m = MetaCLIP(CaptionOntology({ONTOLOGY!r}), {ARCHITECTURE!r}, weights=sys.argv[1],"
        " device='cpu')\n"
        "before = peak = rss()\n"
        "done = threading.Event()\n"
        "def sample():\n"
        "    global peak\n"
        "    while not done.wait(0.01):\n"
        "        peak = max(peak, rss())\n"
        "sampler = threading.Thread(target=sample)\n"
        "sampler.start()\n"
        "m.label(sys.argv[2], '.jpg', sys.argv[3], confidence=0.0, progress=False)\n"
        "done.set()\n"
        "sampler.join()\n"
        "print(before, max(peak, rss()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(weights), str(folder), str(output)],
        capture_output=True,
        text=True,
        check=True,
    )
    before, peak = done.stdout.split()[-2:]
    return float(before), float(peak)


def cpu_bf16(weights: Path, photos: list[Path], batch_size: int) -> dict[str, float]:
    """bf16 against fp32 on CPU: speed, embedding cosine, probability drift, demo agreement."""
    out: dict[str, float] = {}
    embeddings, probabilities = {}, {}
    for precision in ("fp32", "bf16"):
        model = MetaCLIP(
            CaptionOntology(ONTOLOGY),
            ARCHITECTURE,
            weights=weights,
            device="cpu",
            precision=precision,
            batch_size=batch_size,
        )
        pixels = decoded(model, photos)
        bare_model(model, pixels[:batch_size], batch_size)  # warm-up
        out[f"{precision}_img_s"] = bare_model(model, pixels, batch_size)
        embeddings[precision] = model.embed_image(photos)
        assert model.head is not None
        probabilities[precision] = model.head.probabilities(embeddings[precision])
    out["speedup"] = out["bf16_img_s"] / out["fp32_img_s"]
    out["min_cosine"] = float((embeddings["fp32"] * embeddings["bf16"]).sum(1).min())
    out["max_probability_drift"] = float(
        np.abs(probabilities["fp32"] - probabilities["bf16"]).max()
    )
    held_out = list(synthetic.samples(240, seed=2024))
    tops = {}
    for precision in ("fp32", "bf16"):
        demo = MetaCLIP(
            CaptionOntology(synthetic.caption_ontology()), "demo", device="cpu", precision=precision
        )
        assert demo.head is not None
        p = demo.head.probabilities(demo.embed_image([s.image for s in held_out]))
        tops[precision], probabilities[precision] = p.argmax(1), p
        names = [demo.head.classes[i] for i in tops[precision]]
        out[f"demo_{precision}_accuracy"] = float(
            np.mean([n == s.label for n, s in zip(names, held_out, strict=True)])
        )
    out["demo_top1_agreement"] = float((tops["fp32"] == tops["bf16"]).mean())
    out["demo_max_probability_drift"] = float(
        np.abs(probabilities["fp32"] - probabilities["bf16"]).max()
    )
    return out


def large_photos(model: MetaCLIP, work: Path, n: int = 24) -> dict[str, float]:
    """Full vs draft decoding of 12 MP JPEGs: time per image and agreement of the results."""
    folder = work / "large"
    if not folder.is_dir():
        synthetic.write_folder(folder, n, size=(4000, 3000), suffix=".jpg", seed=3)
    photos = sorted(folder.glob("*.jpg"))
    encoder = model.encoder
    timings = {}
    embeddings = {}
    for name, draft in (("full", None), ("draft", encoder.preprocessor.draft_size)):
        start = time.perf_counter()
        pixels = [encoder.preprocessor.transform(load_image(p, draft_size=draft)) for p in photos]
        timings[name] = (time.perf_counter() - start) / n
        embeddings[name] = encoder.encode_pixels(torch.stack(pixels))
    head = model.head
    assert head is not None
    full, draft = (head.probabilities(embeddings[k]) for k in ("full", "draft"))
    return {
        "decode_full_ms": 1000 * timings["full"],
        "decode_draft_ms": 1000 * timings["draft"],
        "speedup": timings["full"] / timings["draft"],
        "min_cosine": float((embeddings["full"] * embeddings["draft"]).sum(1).min()),
        "max_probability_drift": float(np.abs(full - draft).max()),
        "top1_agreement": float((full.argmax(1) == draft.argmax(1)).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--loop-images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = make_weights(work / "b32.safetensors")
        photos = make_photos(work / "photos", args.images)
        model = MetaCLIP(
            CaptionOntology(ONTOLOGY),
            ARCHITECTURE,
            weights=weights,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
        results: dict[str, object] = {
            "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"threads, {args.device} {model.encoder.precision}",
            "torch": torch.__version__,
            "images": args.images,
            "batch_size": args.batch_size,
        }
        if args.device.startswith("cuda"):
            results["gpu"] = torch.cuda.get_device_name()
        bare, end_to_end = alternating(model, photos, work, args.batch_size)
        loop = seed_package_loop(weights, photos[: args.loop_images], args.device)
        results.update(
            bare_model_img_s=bare,
            label_img_s=end_to_end,
            seed_loop_img_s=loop,
            label_over_bare=end_to_end / bare,
            label_over_seed_loop=end_to_end / loop,
        )
        if not args.skip_rss:
            for n in (200, 2000):
                make_photos(work / f"rss{n}", n)
                before, peak = label_rss_mb(weights, work / f"rss{n}", work / f"o{n}")
                results[f"rss_loaded_{n}_mb"], results[f"rss_peak_{n}_mb"] = before, peak
        demo = MetaCLIP(CaptionOntology(synthetic.caption_ontology()), "demo", device=args.device)
        results["large_photos"] = large_photos(model, work)
        results["large_photos_demo"] = large_photos(demo, work)
        if args.device == "cpu":
            results["cpu_bf16"] = cpu_bf16(weights, photos[:128], args.batch_size)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"-{args.device.replace(':', '')}"
    (args.out / f"throughput{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"throughput{suffix}.md").write_text(to_markdown(results))
    print(to_markdown(results))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def to_markdown(r: dict) -> str:
    lines = [
        f"Machine: {r['machine']}, torch {r['torch']}"
        + (f", {r['gpu']}" if "gpu" in r else "")
        + f"; {r['images']} JPEGs of 640x480, random-init {ARCHITECTURE}, 10 prompts, "
        f"batch {r['batch_size']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| (a) bare model, pre-decoded tensors | {r['bare_model_img_s']:.1f} img/s |",
        f"| (b) `label()` end to end | {r['label_img_s']:.1f} img/s |",
        f"| (c) per-image loop (0.1.3 style) | {r['seed_loop_img_s']:.1f} img/s |",
        f"| (b)/(a) | **{r['label_over_bare']:.2f}** (target >= 0.85) |",
        f"| (b)/(c) | **{r['label_over_seed_loop']:.1f}x** (target >= 5) |",
    ]
    if "rss_peak_2000_mb" in r:
        small, large = r["rss_peak_200_mb"], r["rss_peak_2000_mb"]
        lines.append(
            f"| peak RSS during `label()`, 200 vs 2,000 images | {small:.0f} MB vs {large:.0f} MB "
            f"(**{large - small:+.0f} MB**, target <= +150; model loaded: "
            f"{r['rss_loaded_200_mb']:.0f} MB) |"
        )
    for key, model in (("large_photos", ARCHITECTURE), ("large_photos_demo", "demo model")):
        large = r[key]
        lines.append(
            f"| 12 MP JPEG decode + preprocess, full vs draft ({model}) | "
            f"{large['decode_full_ms']:.0f} ms vs {large['decode_draft_ms']:.0f} ms "
            f"(**{large['speedup']:.1f}x**); min cosine {large['min_cosine']:.5f}, max "
            f"probability drift {large['max_probability_drift']:.4f}, top-1 agreement "
            f"{large['top1_agreement']:.0%} |"
        )
    if "cpu_bf16" in r:
        b = r["cpu_bf16"]
        lines += [
            f"| CPU bf16 vs fp32, bare model | {b['bf16_img_s']:.1f} vs {b['fp32_img_s']:.1f} "
            "img/s "
            f"(**{b['speedup']:.1f}x**); min cosine {b['min_cosine']:.5f}, max probability "
            f"drift {b['max_probability_drift']:.4f} |",
            f"| CPU bf16 vs fp32, demo model (240 held-out) | top-1 agreement "
            f"{b['demo_top1_agreement']:.1%}, accuracy {b['demo_bf16_accuracy']:.1%} vs "
            f"{b['demo_fp32_accuracy']:.1%}, max probability drift "
            f"{b['demo_max_probability_drift']:.4f} |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
