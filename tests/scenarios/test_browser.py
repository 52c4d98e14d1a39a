"""The review page in a real browser (Chromium from the system's packages, driven by
Playwright): it loads from disk with no console error, shows the least confident images first,
keyboard and mouse reassignments export the expected corrections file, and ``fix`` applies it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.corrections import FORMAT
from tests.helpers import manifest, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if os.environ.get("METACLIP_REQUIRE_BROWSER") and CHROMIUM is None:  # CI: never skipped
    raise RuntimeError("the browser test needs Chromium: apt-get install chromium")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_review_fix_and_report_in_a_browser(demo_model: MetaCLIP, browser, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 72, suffix=".png", seed=11)
    (tmp_path / "in" / "broken.png").write_bytes(b"<html>not an image</html>")
    dataset = tmp_path / "dataset"
    demo_model.label(tmp_path / "in", ".png", dataset, progress=False)
    rows = manifest(dataset)

    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((dataset / "review.html").as_uri())
    assert page.locator("#counts tr").count() == len(demo_model.classes) + 1

    # The largest class: its cards, least confident first.
    largest = max(demo_model.classes, key=lambda c: sum(r["class"] == c for r in rows.values()
                                                          if r["status"] == "labeled"))  # fmt: skip
    page.get_by_role("button", name=f"{largest} (").click()
    keys = page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.key)")
    assert len(keys) >= 3 and all(rows[k]["class"] == largest for k in keys)
    confidences = [float(rows[k]["confidence"]) for k in keys]
    assert confidences == sorted(confidences)

    # Three fixes: with the mouse, then with the keyboard (move, exclude; move, class 2).
    other = json.loads(rows[keys[0]]["top"])[1][0]  # the model's second guess
    second = next(c for c in demo_model.classes[1:] if c != largest)
    page.locator(f'.card[data-key="{keys[0]}"] select').select_option(other)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("x")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(str(demo_model.classes.index(second) + 1))
    assert page.locator("#changes").inner_text() == "3"
    page.get_by_role("button", name="Failed (1)").click()
    assert "not an image file" in page.locator(".card").inner_text()
    page.get_by_role("button", name=f"{largest} (").click()
    page.screenshot(path=tmp_path / "review.png")
    if os.environ.get("METACLIP_SCREENSHOTS"):  # to look at it, or refresh the README's
        shutil.copy(tmp_path / "review.png", os.environ["METACLIP_SCREENSHOTS"])
    with page.expect_download() as download:
        page.keyboard.press("e")
    exported = tmp_path / "corrections.json"
    download.value.save_as(exported)
    assert problems == []

    corrections = json.loads(exported.read_text())
    assert corrections["format"] == FORMAT
    assert {(c["image"], c["from"], c["to"]) for c in corrections["corrections"]} == {
        (keys[0], largest, other),
        (keys[1], largest, None),
        (keys[2], largest, second),
    }
    code, out, _ = run_cli("fix", dataset, exported)
    assert code == 0 and "reassigned 2, excluded 1" in out
    fixed = manifest(dataset)
    assert [fixed[k]["decided"] for k in keys[:3]] == ["human", "excluded", "human"]
    assert (dataset / rows[keys[0]]["split"] / other / keys[0]).is_file()
    code, out, _ = run_cli("evaluate", dataset, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["classes"][largest]["reassigned"] == 2
    assert report["classes"][largest]["excluded"] == 1

    # The page written by fix shows the decisions.
    page.goto((dataset / "review.html").as_uri())
    page.get_by_role("button", name=f"{other} (").click()
    assert keys[0] in page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.key)")
    assert problems == []
    page.close()


def test_hostile_names_are_shown_as_text(browser, tmp_path: Path) -> None:
    """Class and file names go into the page as text: markup in them is never run."""
    from autodistill.detection import CaptionOntology

    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    model = MetaCLIP(
        CaptionOntology(
            {"a photo of a red circle": hostile, "a photo of a blue square": "</script>"}
        ),
        checkpoint="demo",
    )
    (tmp_path / "in").mkdir()
    synthetic.make_image("red", "circle").save(tmp_path / "in" / "<b>bold.png")
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: problems.append(d.message))
    page.goto((tmp_path / "out" / "review.html").as_uri())
    page.locator("nav button[data-view=class]").first.click()
    assert page.title() == "Review" and problems == []
    assert page.locator("b").count() == 0 and "<b>bold.png" in page.locator(".card").inner_text()
    assert hostile in page.locator("nav").inner_text()
    page.close()
