"""How large the review page of a 20,000-image dataset is, and how fast Chromium opens it.

    python -m benchmarks.review_page [--images 20000]

Labels synthetic 64x64 demo images with the demo model, writes the page, then opens it from
disk in the system's Chromium (Playwright) and times: load until the summary is drawn, opening
the largest class (its least confident images first), and turning a page. Writes
``benchmarks/results/review_page.md``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from autodistill.detection import CaptionOntology
from playwright.sync_api import sync_playwright

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.review import write_review

RESULTS = Path(__file__).parent / "results" / "review_page.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    try:
        synthetic.write_folder(work / "in", args.images, suffix=".png", seed=1)
        model = MetaCLIP(CaptionOntology(synthetic.caption_ontology()), checkpoint="demo")
        started = time.perf_counter()
        model.label(work / "in", ".png", work / "out", review=False, progress=False)
        labelled = time.perf_counter() - started
        started = time.perf_counter()
        page = write_review(work / "out")
        written = time.perf_counter() - started
        timings = _browser_timings(page)
        size = page.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Review page of {args.images:,} images (64x64 PNGs, demo model), opened from disk in "
        "Chromium (Playwright), 2-core AMD EPYC:",
        "",
        "| step | value |",
        "|---|---|",
        f"| label() without the page | {labelled:.1f} s |",
        f"| write_review() (thumbnails, data, HTML) | {written:.1f} s |",
        f"| page size | {size / 2**20:.1f} MiB ({size / args.images / 1024:.1f} KiB an image) |",
        *(f"| {name} | {seconds * 1000:.0f} ms |" for name, seconds in timings.items()),
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _browser_timings(page: Path) -> dict[str, float]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        started = time.perf_counter()
        tab.goto(page.as_uri(), wait_until="load")
        tab.wait_for_selector("#counts")
        opened = time.perf_counter() - started
        largest = tab.locator("nav button[data-view=class]").evaluate_all(
            "bs => bs.sort((a, b) => parseInt(b.textContent.split('(')[1]) -"
            " parseInt(a.textContent.split('(')[1]))[0].textContent"
        )
        started = time.perf_counter()
        tab.get_by_role("button", name=largest, exact=True).click()
        tab.wait_for_selector(".card img")
        class_view = time.perf_counter() - started
        started = time.perf_counter()
        tab.keyboard.press("n")
        tab.wait_for_selector(".card img")
        next_page = time.perf_counter() - started
        browser.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {
        "open the page (load + summary drawn)": opened,
        "open the largest class (60 cards)": class_view,
        "next page (key n)": next_page,
    }


if __name__ == "__main__":
    main()
