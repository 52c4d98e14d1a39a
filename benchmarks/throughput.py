"""Labelling throughput against other ways of running the same model, memory, bf16 and
large-photo decoding, measured in one run.

    python -m benchmarks.throughput [--images 256] [--device cpu] [--out benchmarks/results]
                                    [--rounds 3] [--quick]

On the same 640x480 JPEGs, the same random-init ViT-B-32-quickgelu weights and a 10-prompt
ontology, fp32, every image decoded exactly (no JPEG draft mode), batch ``--batch-size``:

(a) bare model: open_clip's ``encode_image`` on tensors decoded and preprocessed beforehand;
(b) our ``label()`` end to end: listing, decoding, preprocessing, encoding, scoring, copying,
    manifest (``confidence=0``, so every image is copied into the dataset);
(c) a per-image loop like autodistill-metaclip 0.1.3: batch 1, every prompt re-encoded per image;
(d) Hugging Face ``transformers``' ``pipeline("zero-shot-image-classification")`` on the file
    paths (it decodes them itself), with a ``CLIPModel`` converted from the same open_clip
    weights and the same 10 prompts (``hypothesis_template="{}"``). Tokenizer and image
    processor are built offline (``benchmarks/hf_clip.py``); the conversion is checked first:
    image and text embeddings must match open_clip's to cosine >= 0.9999, or the run stops;
(e) a plain open_clip + ``torch.utils.data.DataLoader`` loop (2 worker processes: PIL open,
    ``convert("RGB")``, open_clip's preprocess), prompt embeddings computed once, softmax of
    ``logit_scale * image @ text.T``.

(a), (b), (d) and (e) alternate for ``--rounds`` rounds after a warm-up round, so that all see
the same machine load; the medians are reported, with (b)/(a), (b)/(c), (b)/(d) and (b)/(e).

Unless ``--quick``: the peak RSS while ``label()`` runs on 2,000 vs 200 images (each in a fresh
process); on 12-megapixel JPEGs, ``embed_image`` time per image with ``draft_decoding=False``
vs ``True`` and the agreement of embeddings and ``predict`` probabilities; and, on CPU, bf16
against fp32 (speed, embedding cosine, probability drift, top-1 agreement on the demo model).
Writes ``throughput.json`` and ``throughput.md`` into ``--out``. Needs ``transformers``:
``pip install -e ".[worldwide]"``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import supervision as sv
import torch
import torch.nn.functional as F
from autodistill.detection import CaptionOntology
from PIL import Image
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from autodistill_metaclip import MetaCLIP, synthetic
from benchmarks import hf_clip

ARCHITECTURE = "ViT-B-32-quickgelu"
ONTOLOGY = {f"a photo of a {name}": name for name in synthetic.class_names()[:10]}
MIN_CONVERSION_COSINE = 0.9999


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


def open_clip_model(
    weights: Path, device: str, precision: str = "fp32"
) -> tuple[open_clip.CLIP, Callable[[Image.Image], torch.Tensor]]:
    """open_clip's own model (eval mode) and preprocessing transform for ``weights``."""
    model, _, preprocess = open_clip.create_model_and_transforms(
        ARCHITECTURE, pretrained=str(weights), device=device, precision=precision
    )
    return model.eval(), preprocess


def decoded(preprocess: Callable[[Image.Image], torch.Tensor], photos: list[Path]) -> torch.Tensor:
    return torch.stack([preprocess(Image.open(p).convert("RGB")) for p in photos])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_model(model: open_clip.CLIP, pixels: torch.Tensor, batch_size: int) -> float:
    """(a) Images/s of open_clip's encode_image alone on pre-decoded, pre-processed tensors."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            model.encode_image(pixels[i : i + batch_size].to(device))
    _sync(device)
    return len(pixels) / (time.perf_counter() - start)


def ours(model: MetaCLIP, folder: Path, output: Path) -> float:
    """(b) Images/s of label() end to end."""
    start = time.perf_counter()
    model.label(folder, ".jpg", output, confidence=0.0, overwrite=True, progress=False)
    return len(list(folder.glob("*.jpg"))) / (time.perf_counter() - start)


def hf_pipeline(pipe: Any, photos: list[Path], batch_size: int, workers: int) -> float:
    """(d) Images/s of transformers' zero-shot pipeline on file paths (it decodes them)."""
    start = time.perf_counter()
    results = pipe(
        [str(p) for p in photos],
        candidate_labels=list(ONTOLOGY),
        hypothesis_template="{}",  # the prompts are already full sentences, as in ours
        batch_size=batch_size,
        num_workers=workers,
    )
    elapsed = time.perf_counter() - start
    if len(results) != len(photos) or len(results[0]) != len(ONTOLOGY):
        raise RuntimeError(f"transformers pipeline: unexpected output {results[:1]!r}")
    return len(photos) / elapsed


class PhotoDataset(Dataset):
    """What a user would write: open each file with PIL and apply open_clip's preprocess."""

    def __init__(self, paths: list[Path], preprocess: Callable[[Image.Image], torch.Tensor]):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(Image.open(self.paths[i]).convert("RGB"))


def prompt_embeddings(model: open_clip.CLIP) -> torch.Tensor:
    device = next(model.parameters()).device
    tokens = open_clip.get_tokenizer(ARCHITECTURE)(list(ONTOLOGY)).to(device)
    with torch.no_grad():
        return F.normalize(model.encode_text(tokens), dim=-1)


def dataloader_loop(
    model: open_clip.CLIP,
    preprocess: Callable[[Image.Image], torch.Tensor],
    text: torch.Tensor,
    photos: list[Path],
    batch_size: int,
    workers: int,
) -> float:
    """(e) Images/s of a plain open_clip + DataLoader loop, decoding included."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    loader = DataLoader(
        PhotoDataset(photos, preprocess), batch_size=batch_size, num_workers=workers
    )
    with torch.no_grad():
        for images in loader:
            features = F.normalize(model.encode_image(images.to(device)), dim=-1)
            probs = (model.logit_scale.exp() * features @ text.T).softmax(dim=-1)
            probs.cpu().numpy()
    return len(photos) / (time.perf_counter() - start)


def seed_package_loop(weights: Path, photos: list[Path], device: str) -> float:
    """(c) Images/s of autodistill-metaclip 0.1.3's approach: one image at a time, every prompt
    tokenized and encoded again for each image (its confidence maths is not reproduced)."""
    model, preprocess = open_clip_model(weights, device)
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


def build_hf_pipeline(
    model: open_clip.CLIP,
    preprocess: Callable[[Image.Image], torch.Tensor],
    work: Path,
    photos: list[Path],
) -> tuple[Any, dict[str, float]]:
    """transformers' zero-shot pipeline around ``model``'s converted weights, and the check of
    the conversion; exits if the embeddings do not match open_clip's."""
    transformers = hf_clip.require_transformers()
    hf = hf_clip.hf_clip(model, ARCHITECTURE)
    tokenizer = hf_clip.hf_tokenizer(work / "hf_tokenizer")
    processor = hf_clip.hf_image_processor(ARCHITECTURE)
    texts = [*ONTOLOGY, "A dog's 2 toys, on the grass."]
    check = hf_clip.check_conversion(
        model, preprocess, hf, tokenizer, processor, ARCHITECTURE, photos, texts
    )
    worst = min(check["image_cosine"], check["text_cosine"])
    if worst < MIN_CONVERSION_COSINE or check["token_ids_equal"] != 1.0:
        raise SystemExit(
            f"benchmarks: the transformers CLIPModel does not match open_clip ({check}); "
            f"need embedding cosine >= {MIN_CONVERSION_COSINE} and the same token ids"
        )
    pipe = transformers.pipeline(
        "zero-shot-image-classification",
        model=hf,
        tokenizer=tokenizer,
        image_processor=processor,
        device=next(model.parameters()).device,
    )
    return pipe, check


def alternating(runners: dict[str, Callable[[], float]], rounds: int = 3) -> dict[str, list[float]]:
    """Images/s of every runner, one after another in each round, so that all see the same
    machine load; the first round is a warm-up (``median_rounds`` leaves it out)."""
    measured: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds + 1):
        for name, run in runners.items():
            measured[name].append(run())
        round_name = "warm-up" if r == 0 else f"round {r}/{rounds}"
        print(
            f"{round_name}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in measured.items()),
            "img/s",
            file=sys.stderr,
        )
    return measured


def median_rounds(values: list[float]) -> float:
    return float(statistics.median(values[1:]))


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


def probabilities(results: list[sv.Classifications], classes: int) -> np.ndarray:
    """``predict(..., confidence=0)`` results -> an ``(N, classes)`` probability matrix."""
    out = np.zeros((len(results), classes), np.float32)
    for row, result in zip(out, results, strict=True):
        row[result.class_id] = result.confidence
    return out


def cpu_bf16(weights: Path, photos: list[Path], batch_size: int) -> dict[str, float]:
    """bf16 against fp32 on CPU: speed of open_clip's model with weights and inputs in each
    precision (what ``MetaCLIP(precision="bf16")`` runs on CPU), and, through ``MetaCLIP``,
    embedding cosine, probability drift and demo-model agreement."""
    out: dict[str, float] = {}
    embeddings, probs = {}, {}
    inputs: list[Any] = list(photos)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, preprocess = open_clip_model(weights, "cpu", precision)
        pixels = decoded(preprocess, photos).to(dtype)
        bare_model(model, pixels[:batch_size], batch_size)  # warm-up
        out[f"{precision}_img_s"] = bare_model(model, pixels, batch_size)
        del model
        metaclip = MetaCLIP(
            CaptionOntology(ONTOLOGY),
            ARCHITECTURE,
            weights=weights,
            device="cpu",
            precision=precision,
            batch_size=batch_size,
        )
        embeddings[precision] = metaclip.embed_image(inputs)
        probs[precision] = probabilities(metaclip.predict(inputs, confidence=0.0), len(ONTOLOGY))
    out["speedup"] = out["bf16_img_s"] / out["fp32_img_s"]
    out["min_cosine"] = float((embeddings["fp32"] * embeddings["bf16"]).sum(1).min())
    out["max_probability_drift"] = float(np.abs(probs["fp32"] - probs["bf16"]).max())
    held_out = list(synthetic.samples(240, seed=2024))
    names = synthetic.class_names()
    tops = {}
    for precision in ("fp32", "bf16"):
        demo = MetaCLIP(
            CaptionOntology(synthetic.caption_ontology()), "demo", device="cpu", precision=precision
        )
        p = probabilities(demo.predict([s.image for s in held_out], confidence=0.0), len(names))
        tops[precision], probs[precision] = p.argmax(1), p
        out[f"demo_{precision}_accuracy"] = float(
            np.mean([names[i] == s.label for i, s in zip(tops[precision], held_out, strict=True)])
        )
    out["demo_top1_agreement"] = float((tops["fp32"] == tops["bf16"]).mean())
    out["demo_max_probability_drift"] = float(np.abs(probs["fp32"] - probs["bf16"]).max())
    return out


def large_photos(
    ontology: dict[str, str],
    checkpoint: str,
    weights: Path | None,
    device: str,
    work: Path,
    n: int = 24,
) -> dict[str, float]:
    """12 MP JPEGs: ``embed_image`` time per image with ``draft_decoding`` off and on, and the
    agreement of the embeddings and of ``predict``'s probabilities."""
    folder = work / "large"
    if not folder.is_dir():
        synthetic.write_folder(folder, n, size=(4000, 3000), suffix=".jpg", seed=3)
    photos: list[Any] = sorted(folder.glob("*.jpg"))
    timings, embeddings, probs = {}, {}, {}
    for name, draft in (("full", False), ("draft", True)):
        model = MetaCLIP(
            CaptionOntology(ontology),
            checkpoint,
            weights=weights,
            device=device,
            precision="fp32",
            draft_decoding=draft,
        )
        model.embed_image(photos[:2])  # warm-up
        start = time.perf_counter()
        embeddings[name] = model.embed_image(photos)
        timings[name] = (time.perf_counter() - start) / len(photos)
        probs[name] = probabilities(
            model.predict(photos, confidence=0.0), len(set(ontology.values()))
        )
    return {
        "embed_full_ms": 1000 * timings["full"],
        "embed_draft_ms": 1000 * timings["draft"],
        "speedup": timings["full"] / timings["draft"],
        "min_cosine": float((embeddings["full"] * embeddings["draft"]).sum(1).min()),
        "max_probability_drift": float(np.abs(probs["full"] - probs["draft"]).max()),
        "top1_agreement": float((probs["full"].argmax(1) == probs["draft"].argmax(1)).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--loop-images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds after a warm-up")
    parser.add_argument(
        "--loader-workers", type=int, default=2, help="DataLoader worker processes of (e)"
    )
    parser.add_argument(
        "--hf-workers",
        type=int,
        default=0,
        help="num_workers of the transformers pipeline (d); 0 is its default",
    )
    parser.add_argument("--skip-rss", action="store_true", help="skip the RSS measurement")
    parser.add_argument(
        "--quick", action="store_true", help="only (a)-(e): no RSS, large photos or bf16"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.rounds < 1 or args.images < 1:
        parser.error("--rounds and --images: expected at least 1")
    transformers = hf_clip.require_transformers()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = make_weights(work / "b32.safetensors")
        photos = make_photos(work / "photos", args.images)
        device = torch.device(args.device)
        model = MetaCLIP(
            CaptionOntology(ONTOLOGY),
            ARCHITECTURE,
            weights=weights,
            device=args.device,
            precision="fp32",
            batch_size=args.batch_size,
        )
        plain, preprocess = open_clip_model(weights, args.device)
        pipe, conversion = build_hf_pipeline(plain, preprocess, work, photos[:4])
        results: dict[str, Any] = {
            "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"threads, {args.device} fp32",
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "transformers": transformers.__version__,
            "images": args.images,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "loader_workers": args.loader_workers,
            "hf_workers": args.hf_workers,
            "hf_conversion": conversion,
        }
        if device.type == "cuda":
            results["gpu"] = torch.cuda.get_device_name(device)
        pixels = decoded(preprocess, photos)
        text = prompt_embeddings(plain)
        measured = alternating(
            {
                "bare": lambda: bare_model(plain, pixels, args.batch_size),
                "label": lambda: ours(model, photos[0].parent, work / "labelled"),
                "hf_pipeline": lambda: hf_pipeline(pipe, photos, args.batch_size, args.hf_workers),
                "dataloader": lambda: dataloader_loop(
                    plain, preprocess, text, photos, args.batch_size, args.loader_workers
                ),
            },
            args.rounds,
        )
        loop = seed_package_loop(weights, photos[: args.loop_images], args.device)
        speed = {name: median_rounds(values) for name, values in measured.items()}
        label = speed["label"]
        results.update(
            bare_model_img_s=speed["bare"],
            label_img_s=label,
            hf_pipeline_img_s=speed["hf_pipeline"],
            dataloader_img_s=speed["dataloader"],
            seed_loop_img_s=loop,
            label_over_bare=label / speed["bare"],
            label_over_hf_pipeline=label / speed["hf_pipeline"],
            label_over_dataloader=label / speed["dataloader"],
            label_over_seed_loop=label / loop,
            rounds_img_s=measured,
        )
        if not (args.skip_rss or args.quick):
            for n in (200, 2000):
                make_photos(work / f"rss{n}", n)
                before, peak = label_rss_mb(weights, work / f"rss{n}", work / f"o{n}")
                results[f"rss_loaded_{n}_mb"], results[f"rss_peak_{n}_mb"] = before, peak
        if not args.quick:
            results["large_photos"] = large_photos(
                ONTOLOGY, ARCHITECTURE, weights, args.device, work
            )
            results["large_photos_demo"] = large_photos(
                synthetic.caption_ontology(), "demo", None, args.device, work
            )
            if device.type == "cpu":
                results["cpu_bf16"] = cpu_bf16(weights, photos[:128], args.batch_size)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"-{args.device.replace(':', '')}"
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
    c = r["hf_conversion"]
    lines = [
        f"Machine: {r['machine']}, torch {r['torch']}, open_clip {r['open_clip']}, transformers "
        f"{r['transformers']}" + (f", {r['gpu']}" if "gpu" in r else "") + f"; {r['images']} "
        f"JPEGs of 640x480 decoded exactly, random-init {ARCHITECTURE}, 10 prompts, batch "
        f"{r['batch_size']}; (a), (b), (d), (e): medians of {r['rounds']} alternating rounds "
        "after a warm-up.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| (a) bare model: open_clip `encode_image`, pre-decoded tensors | "
        f"{r['bare_model_img_s']:.1f} img/s |",
        f"| (b) `label()` end to end | {r['label_img_s']:.1f} img/s |",
        f"| (c) per-image loop (0.1.3 style) | {r['seed_loop_img_s']:.1f} img/s |",
        f"| (d) transformers `zero-shot-image-classification` pipeline, same weights "
        f"(num_workers={r['hf_workers']}) | {r['hf_pipeline_img_s']:.1f} img/s |",
        f"| (e) open_clip + `DataLoader` ({r['loader_workers']} workers) | "
        f"{r['dataloader_img_s']:.1f} img/s |",
        f"| (b)/(a) | **{r['label_over_bare']:.2f}** (target >= 0.9) |",
        f"| (b)/(d) | **{r['label_over_hf_pipeline']:.2f}x** (target >= 1.2) |",
        f"| (b)/(e) | **{r['label_over_dataloader']:.2f}x** (target >= 1.5) |",
        f"| (b)/(c) | **{r['label_over_seed_loop']:.1f}x** (target >= 5) |",
        f"| (d)'s weights converted from open_clip: embedding cosine, same pixels and tokens | "
        f"image >= {c['image_cosine']:.7f}, text >= {c['text_cosine']:.7f} "
        f"({c['images']:.0f} images, {c['texts']:.0f} texts; required >= "
        f"{MIN_CONVERSION_COSINE}); each library's own preprocessing: image >= "
        f"{c['own_preprocessing_image_cosine']:.7f} |",
    ]
    if "rss_peak_2000_mb" in r:
        small, large = r["rss_peak_200_mb"], r["rss_peak_2000_mb"]
        lines.append(
            f"| peak RSS during `label()`, 200 vs 2,000 images | {small:.0f} MB vs {large:.0f} MB "
            f"(**{large - small:+.0f} MB**, target <= +150; model loaded: "
            f"{r['rss_loaded_200_mb']:.0f} MB) |"
        )
    for key, model in (("large_photos", ARCHITECTURE), ("large_photos_demo", "demo model")):
        if key not in r:
            continue
        large = r[key]
        lines.append(
            f"| 12 MP JPEGs, `embed_image` per image, `draft_decoding` off vs on ({model}) | "
            f"{large['embed_full_ms']:.0f} ms vs {large['embed_draft_ms']:.0f} ms "
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
