"""The review page at 20,000 and 200,000 images: its size, how long it takes to write (first,
and again after 10 rows changed), and how fast Chromium opens it; and a key press with 5,000
classes.

    python -m benchmarks.review_page [--sizes 20000 200000] [--classes 5000]

The datasets are synthetic and made without the model (a manifest, ``run.json``, the journal
of copies, and 64x64 PNG copies from :mod:`autodistill_metaclip.synthetic`, hard links to the
inputs): 12 classes, 90% labelled with a random top 3 (some within 0.15: likely confusions),
8% unlabeled, 2% failed; no embeddings, so no near-duplicate view. The page is opened from disk
in the system's Chromium (Playwright); each browser time is the median of three, until the
page says it has drawn (``#view[data-ready]``: cards shown and their thumbnail sheets decoded).
Writes ``benchmarks/results/review_page.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Page, sync_playwright

from autodistill_metaclip import synthetic
from autodistill_metaclip.labeling.layout import class_folders
from autodistill_metaclip.labeling.manifest import MANIFEST, new_row, read_manifest, write_rows
from autodistill_metaclip.labeling.review import REVIEW_FOLDER, write_review
from autodistill_metaclip.labeling.state import RUN, STATE, save_journal

RESULTS = Path(__file__).parent / "results" / "review_page.md"
READY = "#view[data-ready='1']"
SPLITS = ("train", "valid", "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--classes", type=int, default=5_000, help="for the key press")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    columns: dict[int, dict[str, str]] = {}
    try:
        for size in args.sizes:
            columns[size] = _measure(work, size)
            print(size, columns[size], flush=True)
        many = _many_classes(work, args.classes, min(10_000, max(args.sizes)))
        print(many, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    heads = " | ".join(f"{size:,} images" for size in columns)
    lines = [
        "Review page of synthetic datasets (64x64 PNGs, 12 classes; made without the model), "
        "opened from disk in Chromium (Playwright), 2-core AMD EPYC:",
        "",
        f"| | {heads} |",
        "|---" * (len(columns) + 1) + "|",
        *(
            f"| {step} | " + " | ".join(column[step] for column in columns.values()) + " |"
            for step in next(iter(columns.values()))
        ),
        "",
        f"With {args.classes:,} classes ({many['images']:,} images): the page opens in "
        f"{many['open']}, and a key press that reassigns an image takes {many['key']} "
        f"(until the next frame is drawn; median of 20); filtering the class list, "
        f"{many['filter']}.",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _measure(work: Path, size: int) -> dict[str, str]:
    """Make a dataset of ``size`` images, write its page twice, open it in Chromium."""
    started = time.perf_counter()
    inputs = _write_inputs(work / f"in-{size}", size)
    dataset = work / f"dataset-{size}"
    _write_dataset(dataset, inputs, size, synthetic.class_names())
    made = time.perf_counter() - started
    page, first = _timed(lambda: write_review(dataset))
    assets = dataset / STATE / REVIEW_FOLDER
    files = {p.name: p.stat().st_size for p in assets.iterdir()}
    sheets = sum(n for name, n in files.items() if name.endswith(".jpg"))
    data = sum(n for name, n in files.items() if name.endswith(".js"))
    _, again = _timed(lambda: write_review(dataset))
    unchanged = {p.name for p in assets.iterdir()} == set(files)
    _change_rows(dataset, 10)
    _, changed = _timed(lambda: write_review(dataset))
    after = {p.name: p.stat().st_size for p in assets.iterdir()}
    written = {name: n for name, n in after.items() if name not in files}
    browser = _browser_timings(page)
    shell = page.stat().st_size
    return {
        "make the dataset (not part of the page)": f"{made:.0f} s",
        "write_review(), first (thumbnails, data, shell)": f"{first:.1f} s",
        "review.html (the shell)": f"{shell / 1024:.0f} KiB",
        "files beside it": f"{len(files):,}: {sheets / 2**20:.0f} MiB of thumbnail sheets, "
        f"{data / 2**20:.1f} MiB of data",
        "write_review() again, nothing changed": f"{again:.1f} s"
        + (", nothing written" if unchanged else ", files written!"),
        "write_review() after 10 rows changed": f"{changed:.1f} s, {len(written)} files "
        f"written ({sum(written.values()) / 1024:.0f} KiB)",
        **browser,
    }


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _write_inputs(folder: Path, size: int) -> Path:
    """``size`` synthetic 64x64 PNGs (two processes), image ``n`` of class ``n % 12``."""
    folder.mkdir(parents=True)
    parts = [(folder, n, min(n + 5000, size)) for n in range(0, size, 5000)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_some, parts))
    return folder


def _write_some(part: tuple[Path, int, int]) -> None:
    folder, start, stop = part
    kinds = list(itertools.product(synthetic.COLOURS, synthetic.SHAPES))
    for n in range(start, stop):
        colour, shape = kinds[n % len(kinds)]
        image = synthetic.make_image(colour, shape, seed=np.random.default_rng([1, n]))
        image.save(folder / f"{n:06d}.png")


def _write_dataset(dataset: Path, inputs: Path, size: int, classes: list[str]) -> None:
    """A dataset of the first ``size`` inputs as ``label()`` leaves it: image ``n`` of class
    ``n % len(classes)``; every 50th failed, every 12th unlabeled."""
    rng = np.random.default_rng(0)
    folders = class_folders(classes)
    for split in SPLITS:
        for name in folders.values():
            (dataset / split / name).mkdir(parents=True)
    (dataset / STATE).mkdir()
    rows, journal = [], {}
    for n in range(size):
        key = f"{n:06d}.png"
        info = (inputs / key).stat()
        stamp = f"{info.st_size}:{info.st_mtime_ns}"
        if n % 50 == 49:
            rows.append(new_row(key, stamp, status="failed", error=f"{key!r}: not an image file"))
            continue
        if n % 7:
            first = float(rng.uniform(0.4, 0.99))
            second = float(rng.uniform(0.0, 1 - first))
        else:  # a likely confusion: the top two within 0.15
            first = float(rng.uniform(0.4, 0.5))
            second = first - float(rng.uniform(0.0, 0.1))
        others = rng.choice(len(classes) - 1, 2, replace=False) + 1
        names = [classes[n % len(classes)]] + [classes[(n + o) % len(classes)] for o in others]
        top = [[c, round(p, 6)] for c, p in zip(names, [first, second, 0.0], strict=True)]
        labeled = n % 12 != 11
        split = SPLITS[0 if n % 10 < 7 else 1 if n % 10 < 9 else 2] if labeled else ""
        cells = {"class": names[0], "confidence": f"{first:.6f}"}
        rows.append(new_row(key, stamp, status="labeled" if labeled else "unlabeled",
                            split=split, top=json.dumps(top), **cells))  # fmt: skip
        if labeled:
            relative = f"{split}/{folders[names[0]]}/{key}"
            os.link(inputs / key, dataset / relative)
            journal[relative] = [key, stamp]
    write_rows(dataset / MANIFEST, rows)
    save_journal(dataset, journal)
    settings = {"layout": "valid", "input_folder": str(inputs), "near_duplicates": None}
    run = {"tool": "autodistill-metaclip", "settings": settings, "classes": classes}
    (dataset / STATE / RUN).write_text(json.dumps(run), encoding="utf-8")


def _change_rows(dataset: Path, count: int) -> None:
    """Reassign ``count`` labelled rows, spread over the manifest, as ``fix`` would."""
    rows = read_manifest(dataset / MANIFEST)
    labelled = [k for k, r in rows.items() if r["status"] == "labeled"]
    classes = synthetic.class_names()
    for key in labelled[:: len(labelled) // count][:count]:
        row = rows[key]
        row["class"] = classes[(classes.index(row["class"]) + 1) % len(classes)]
        row["decided"] = "human"
    write_rows(dataset / MANIFEST, rows.values())


def _launch(p: Any) -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    return p.chromium.launch(
        executable_path=chromium, args=["--no-sandbox", "--enable-precise-memory-info"]
    )


def _open(browser: Any, page: Path, errors: list[str]) -> tuple[Page, float]:
    tab = browser.new_page(viewport={"width": 1280, "height": 800})
    tab.on("pageerror", lambda e: errors.append(str(e)))
    started = time.perf_counter()
    tab.goto(page.as_uri())
    tab.wait_for_selector(READY)
    return tab, time.perf_counter() - started


def _browser_timings(page: Path) -> dict[str, str]:
    errors: list[str] = []
    with sync_playwright() as p:
        browser = _launch(p)
        opened, classes, turns = [], [], []
        for _ in range(3):
            tab, seconds = _open(browser, page, errors)
            opened.append(seconds)
            tab.close()
        tab, _ = _open(browser, page, errors)
        for n in range(3):
            started = time.perf_counter()
            tab.locator("#classes button").nth(n).click()
            tab.wait_for_selector(READY)
            classes.append(time.perf_counter() - started)
        for _ in range(3):
            started = time.perf_counter()
            tab.keyboard.press("n")
            tab.wait_for_selector(READY)
            turns.append(time.perf_counter() - started)
        heap = tab.evaluate("performance.memory.usedJSHeapSize")
        browser.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {
        "open the page (load + summary drawn)": f"{statistics.median(opened) * 1000:.0f} ms",
        "a class's first page (60 cards with thumbnails)": (
            f"{statistics.median(classes) * 1000:.0f} ms"
        ),
        "next page (key n)": f"{statistics.median(turns) * 1000:.0f} ms",
        "JavaScript heap after these": f"{heap / 2**20:.0f} MiB",
    }


KEY_PRESS = """async (key) => {
  const started = performance.now();
  document.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done)));
  return performance.now() - started;
}"""


def _many_classes(work: Path, classes: int, size: int) -> dict[str, Any]:
    """A page with ``classes`` classes: open it, then time key presses that reassign."""
    inputs = work / f"in-{size}"
    if not inputs.is_dir() or len(os.listdir(inputs)) < size:
        inputs = _write_inputs(work / "in-classes", size)
    dataset = work / "dataset-classes"
    _write_dataset(dataset, inputs, size, [f"class {n:04d}" for n in range(classes)])
    page = write_review(dataset)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = _launch(p)
        tab, opened = _open(browser, page, errors)
        tab.locator("#classes button").first.click()
        tab.wait_for_selector(READY)
        presses = [tab.evaluate(KEY_PRESS, key) for key in ["2", "0"] * 10]
        started = time.perf_counter()
        tab.locator("#filter").fill("class 49")
        tab.wait_for_function("document.querySelectorAll('#classes button:not([hidden])')"
                              ".length === 100")  # fmt: skip
        filtered = time.perf_counter() - started
        browser.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {
        "images": size,
        "open": f"{opened * 1000:.0f} ms",
        "key": f"{statistics.median(presses):.0f} ms",
        "filter": f"{filtered * 1000:.0f} ms",
    }


if __name__ == "__main__":
    main()
