"""The review page in a real browser (Chromium from the system's packages, driven by
Playwright), opened from disk: it loads with no console error, shows the least confident images
first, keyboard and mouse reassignments export the expected corrections file, and ``fix``
applies it; its data loads a view at a time, its pages turn across data chunks, unlabeled
images can be given a class, names are text, and 5,000 classes keep a key press fast.

The tests wait on the page's own signal: ``#view`` gets ``data-ready`` once a page of cards and
its thumbnails are shown (``"error"`` if its data files are missing).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling import review
from autodistill_metaclip.labeling.corrections import FORMAT, SCHEMA, apply_corrections
from autodistill_metaclip.labeling.manifest import MANIFEST, new_row, write_rows
from autodistill_metaclip.labeling.review import write_review
from autodistill_metaclip.labeling.state import RUN, STATE
from tests.helpers import manifest, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if os.environ.get("METACLIP_REQUIRE_BROWSER") and CHROMIUM is None:  # CI: never skipped
    raise RuntimeError("the browser test needs Chromium: apt-get install chromium")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")
READY = "#view[data-ready='1']"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Review:
    """One review page open in the browser; ``problems``: console errors and warnings, page
    errors and dialogs."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.tab = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        self.problems: list[str] = []
        self.requested: list[str] = []
        self.tab.on("request", lambda r: self.requested.append(r.url))
        self.tab.on("console", lambda m: self.problems.append(m.text)
                    if m.type in ("error", "warning") else None)  # fmt: skip
        self.tab.on("pageerror", lambda e: self.problems.append(str(e)))
        self.tab.on("dialog", lambda d: self.problems.append(d.message))
        self.tab.goto(path.as_uri())
        self.tab.wait_for_selector(READY)

    def view(self, name: str, exact: bool = False) -> None:
        """Open a view by its nav button's name (a class: ``"red circle ("``)."""
        self.tab.locator("nav").get_by_role("button", name=name, exact=exact).click()
        self.tab.wait_for_selector(READY)

    def press(self, key: str) -> None:
        self.tab.keyboard.press(key)
        self.tab.wait_for_selector(READY)

    def keys(self) -> list[str]:
        """The keys of the cards shown, in order."""
        return self.tab.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.key)")

    def choose(self, key: str, item: str) -> None:
        """Open a card's menu with the mouse and click an item."""
        self.tab.locator(f'.card[data-key="{key}"] .choose').click()
        self.tab.locator("#menu").get_by_role("menuitem", name=item, exact=True).click()

    def export(self, path: Path) -> dict[str, Any]:
        with self.tab.expect_download() as download:
            self.tab.keyboard.press("e")
        download.value.save_as(path)
        exported = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validate(exported, json.loads(SCHEMA.read_text()))  # as documented
        return exported

    def scripts(self) -> set[str]:
        """The data scripts requested so far (file names)."""
        return {url.rsplit("/", 1)[1] for url in self.requested if url.endswith(".js")}


def test_review_fix_and_report_in_a_browser(demo_model: MetaCLIP, browser, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 72, suffix=".png", seed=11)
    (tmp_path / "in" / "broken.png").write_bytes(b"<html>not an image</html>")
    dataset = tmp_path / "dataset"
    demo_model.label(tmp_path / "in", ".png", dataset, progress=False)
    rows = manifest(dataset)

    page = Review(browser, dataset / "review.html")
    assert page.tab.locator("#counts tr").count() == len(demo_model.classes) + 1
    assert len(page.scripts()) == 1  # the summary only: a view's data loads when it opens

    # The largest class: its cards, least confident first, each with its thumbnail.
    largest = max(demo_model.classes, key=lambda c: sum(r["class"] == c for r in rows.values()
                                                          if r["status"] == "labeled"))  # fmt: skip
    page.view(f"{largest} (")
    keys = page.keys()
    assert len(keys) >= 3 and all(rows[k]["class"] == largest for k in keys)
    confidences = [float(rows[k]["confidence"]) for k in keys]
    assert confidences == sorted(confidences)
    assert page.tab.locator(".card .thumb").count() == len(keys)

    # Three fixes: with the mouse, then with the keyboard (move, exclude; move, class 2).
    other = json.loads(rows[keys[0]]["top"])[1][0]  # the model's second guess
    second = next(c for c in demo_model.classes[1:] if c != largest)
    page.choose(keys[0], other)
    page.tab.keyboard.press("ArrowRight")
    page.tab.keyboard.press("x")
    page.tab.keyboard.press("ArrowRight")
    page.tab.keyboard.press(str(demo_model.classes.index(second) + 1))
    assert page.tab.locator("#changes").inner_text() == "3"
    page.view("Failed (1)")
    assert "not an image file" in page.tab.locator(".card").inner_text()
    page.view(f"{largest} (")
    assert page.tab.locator(".card.changed").count() == 2  # the page keeps the choices
    assert page.tab.locator(".card.excluded").count() == 1
    page.tab.screenshot(path=tmp_path / "review.png")
    if os.environ.get("METACLIP_SCREENSHOTS"):  # to look at it, or refresh the README's
        shutil.copy(tmp_path / "review.png", os.environ["METACLIP_SCREENSHOTS"])
    corrections = page.export(tmp_path / "corrections.json")
    assert page.problems == []

    assert corrections["format"] == FORMAT
    assert {(c["image"], c["from"], c["to"]) for c in corrections["corrections"]} == {
        (keys[0], largest, other),
        (keys[1], largest, None),
        (keys[2], largest, second),
    }
    code, out, _ = run_cli("fix", dataset, tmp_path / "corrections.json")
    assert code == 0 and "reassigned 2, excluded 1" in out
    fixed = manifest(dataset)
    assert [fixed[k]["decided"] for k in keys[:3]] == ["human", "excluded", "human"]
    assert (dataset / rows[keys[0]]["split"] / other / keys[0]).is_file()
    code, out, _ = run_cli("evaluate", dataset, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["classes"][largest]["reassigned"] == 2
    assert report["classes"][largest]["excluded"] == 1

    # The page written by fix shows the decisions; an excluded image can be brought back.
    page.tab.goto((dataset / "review.html").as_uri())
    page.tab.wait_for_selector(READY)
    page.view(f"{other} (")
    assert keys[0] in page.keys()
    page.view("Excluded (1)")
    assert page.keys() == [keys[1]]
    page.choose(keys[1], largest)
    again = page.export(tmp_path / "again.json")
    assert again["corrections"] == [{"image": keys[1], "from": largest, "to": largest}]
    assert page.problems == []
    page.tab.close()


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
    page = Review(browser, tmp_path / "out" / "review.html")
    page.tab.locator("nav button[data-view=class]").first.click()
    page.tab.wait_for_selector(READY)
    assert page.tab.title() == "Review" and page.problems == []
    assert page.tab.locator("b").count() == 0
    assert "<b>bold.png" in page.tab.locator(".card").inner_text()
    assert hostile in page.tab.locator("nav").inner_text()
    page.tab.locator(".card .choose").click()
    assert hostile in page.tab.locator("#menu").inner_text()
    assert page.tab.locator("img").count() == 0
    page.tab.close()


def test_a_class_named_like_the_exclude_choice_is_a_class(browser, tmp_path: Path) -> None:
    """``exclude`` and ``\\x00exclude`` are classes like any other: choosing them moves the
    image there; only the menu's own item (or ``x``) excludes."""
    model = MetaCLIP(
        {"a photo of a red circle": "\x00exclude", "a photo of a blue square": "exclude",
         "a photo of a green triangle": "green"},
        checkpoint="demo",
    )  # fmt: skip
    synthetic.write_folder(tmp_path / "in", 36, seed=2)
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    page = Review(browser, tmp_path / "out" / "review.html")
    page.view("green (")
    keys = page.keys()[:4]
    page.tab.keyboard.press("1")  # the first class: "\x00exclude"
    page.choose(keys[1], "Exclude from the dataset")
    page.choose(keys[2], "exclude")
    page.tab.locator(f'.card[data-key="{keys[3]}"] .key').click()
    page.tab.keyboard.press("x")
    exported = page.export(tmp_path / "c.json")
    assert [(c["image"], c["from"], c["to"]) for c in exported["corrections"]] == [
        (keys[0], "green", "\x00exclude"),
        (keys[1], "green", None),
        (keys[2], "green", "exclude"),
        (keys[3], "green", None),
    ]
    assert page.problems == []
    apply_corrections(tmp_path / "out", tmp_path / "c.json")
    rows = manifest(tmp_path / "out")
    assert [(rows[k]["class"], rows[k]["decided"]) for k in keys] == [
        ("\x00exclude", "human"), ("green", "excluded"), ("exclude", "human"),
        ("green", "excluded"),
    ]  # fmt: skip
    page.tab.close()


def test_unlabeled_images_can_be_given_a_class(
    demo_model: MetaCLIP, browser, tmp_path: Path
) -> None:
    synthetic.write_folder(tmp_path / "in", 48, seed=6)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.995, progress=False)
    rows = manifest(tmp_path / "out")
    unlabeled = [k for k, r in rows.items() if r["status"] == "unlabeled"]
    assert len(unlabeled) >= 3
    page = Review(browser, tmp_path / "out" / "review.html")
    page.view(f"Unlabeled ({len(unlabeled)})")
    keys = page.keys()
    assert sorted(keys) == sorted(unlabeled)
    confidences = [float(rows[k]["confidence"]) for k in keys]
    assert confidences == sorted(confidences)
    page.tab.keyboard.press("x")  # an unlabeled image is not in the dataset: nothing to exclude
    assert page.tab.locator("#changes").inner_text() == "0"
    page.tab.keyboard.press("2")
    page.choose(keys[1], "blue square")
    page.choose(keys[2], "red circle")
    page.choose(keys[2], "Undo this change")
    assert page.tab.locator("#changes").inner_text() == "2"
    assert page.tab.locator(".card.changed").count() == 2
    exported = page.export(tmp_path / "c.json")
    assert exported["corrections"] == [
        {"image": keys[0], "from": None, "to": demo_model.classes[1]},
        {"image": keys[1], "from": None, "to": "blue square"},
    ]
    assert page.problems == []
    page.tab.close()


def test_confusions_and_near_duplicates_are_shown_group_by_group(browser, tmp_path: Path) -> None:
    model = MetaCLIP(
        {"a photo of a red circle": "red circle", "a photo of a red circle.": "round red thing",
         "a photo of a blue square": "blue square"},
        checkpoint="demo",
    )  # fmt: skip
    synthetic.write_folder(tmp_path / "in", 24, seed=5)
    shutil.copy(tmp_path / "in" / "00000_red_circle.png", tmp_path / "in" / "00000_copy.png")
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    data = review.review_data(tmp_path / "out")
    keys = [image["key"] for image in data["images"]]
    page = Review(browser, tmp_path / "out" / "review.html")

    page.view(f"Likely confusions ({len(data['confusions'])})")
    groups = page.tab.locator(".group").evaluate_all(
        "gs => gs.map(g => [g.querySelector('strong').textContent,"
        " [...g.querySelectorAll('.card')].map(c => c.dataset.key)])"
    )
    assert groups == [
        [f"{' / '.join(g['pair'])}: {len(g['images'])} images", [keys[n] for n in g["images"]]]
        for g in data["confusions"]
    ]
    cross = sum(g["cross"] for g in data["duplicates"])
    page.view(f"Near-duplicates ({len(data['duplicates'])}, {cross} across splits)")
    shown = page.tab.locator(".group").evaluate_all(
        "gs => gs.map(g => [g.classList.contains('cross'),"
        " [...g.querySelectorAll('.card')].map(c => c.dataset.key)])"
    )
    assert shown == [[g["cross"], [keys[n] for n in g["images"]]] for g in data["duplicates"]]
    assert any({"00000_copy.png", "00000_red_circle.png"} <= set(k) for _, k in shown)
    first = shown[0][1][0]
    page.tab.keyboard.press("x")  # the first card of the first group
    exported = page.export(tmp_path / "c.json")
    rows = manifest(tmp_path / "out")
    assert exported["corrections"] == [{"image": first, "from": rows[first]["class"], "to": None}]
    assert page.problems == []
    page.tab.close()


def test_pages_turn_across_data_chunks_loaded_on_demand(
    browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of a few cards (instead of about 200): a page of 60 cards spans many of them,
    and only the chunks of the page opened (and of the next) are loaded."""
    monkeypatch.setattr(review, "CHUNK_MIN", 3)
    monkeypatch.setattr(review, "CHUNK_CUT", 4)
    monkeypatch.setattr(review, "CHUNK_MAX", 8)
    model = MetaCLIP({"a photo of a red circle": "red", "a photo of a blue square": "blue"},
                     checkpoint="demo")  # fmt: skip
    synthetic.write_folder(tmp_path / "in", 300, seed=1)
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    rows = manifest(tmp_path / "out")
    order = list(rows)
    expected = {
        name: sorted((k for k, r in rows.items() if r["class"] == name),
                     key=lambda k: (float(rows[k]["confidence"]), order.index(k)))
        for name in ("red", "blue")
    }  # fmt: skip
    name = max(expected, key=lambda n: len(expected[n]))
    other = "blue" if name == "red" else "red"
    pages = -(-len(expected[name]) // 60)
    assert pages >= 3

    page = Review(browser, tmp_path / "out" / "review.html")
    (summary,) = page.scripts()
    page.view(f"{name} (")
    chunks = chunks_of(tmp_path / "out", name)
    loaded = page.scripts() - {summary}
    assert chunks_between(chunks, 0, 60) <= loaded <= chunks_between(chunks, 0, 120)
    seen = page.keys()
    sheets = page.tab.locator(".thumb").evaluate_all(
        "ts => new Set(ts.map(t => t.style.backgroundImage)).size"
    )
    assert sheets <= 2  # thumbnails are packed in the order the views show them
    page.press("n")
    assert page.tab.locator("#pager").inner_text().endswith(f"page 2 of {pages}")
    second = page.keys()
    page.tab.keyboard.press("x")  # the first card of page 2
    seen += second
    for _ in range(pages - 2):
        page.press("n")
        seen += page.keys()
    assert seen == expected[name]
    for _ in range(pages - 2):
        page.press("p")
    assert page.tab.locator("#view").get_attribute("data-page") == "1"
    assert page.keys() == second and page.tab.locator(".card.excluded").count() == 1
    assert not page.scripts() & chunks_between(chunks_of(tmp_path / "out", other), 0, 10**6)
    assert page.problems == []
    page.tab.close()


def chunks_of(dataset: Path, class_name: str) -> list[tuple[str, int]]:
    """The data chunks of a class's view (file name, cards), from the page's summary."""
    html = (dataset / "review.html").read_text(encoding="utf-8")
    config = json.loads(html.split('id="config">')[1].split("</script>")[0])
    text = (dataset / STATE / "review" / f"{config['summary']}.js").read_text()
    summary = json.loads(text[text.index(",") + 1 : -3])
    index = summary["classes"].index(class_name)
    (view,) = [v for v in summary["views"] if v.get("class") == index]
    return [(f"{name}.js", count) for name, count in view["chunks"]]


def chunks_between(chunks: list[tuple[str, int]], start: int, stop: int) -> set[str]:
    """The chunks that hold cards ``start`` to ``stop`` of a view."""
    found, first = set(), 0
    for name, count in chunks:
        if first < stop and first + count > start:
            found.add(name)
        first += count
    return found


def write_dataset(folder: Path, classes: list[str], images: int) -> None:
    """A dataset as ``label()`` leaves it (run settings, manifest; no copies: the thumbnails
    come from the input folder), without a model: image ``n`` is in class ``n % 20``, more
    confident as ``n`` grows."""
    (folder / STATE).mkdir(parents=True)
    (folder / "in").mkdir()
    rows = []
    for n, sample in enumerate(synthetic.samples(images, seed=3)):
        key = f"{n:05d}.png"
        sample.image.save(folder / "in" / key)
        top = [[classes[n % 20], 0.5 + n / images / 4], [classes[(n + 1) % 20], 0.2]]
        cells = {"class": classes[n % 20], "confidence": f"{top[0][1]:.6f}"}
        rows.append(new_row(key, f"{n}:1", status="labeled", top=json.dumps(top), split="train",
                            **cells))  # fmt: skip
    write_rows(folder / MANIFEST, rows)
    settings = {"layout": "valid", "input_folder": str(folder / "in"), "near_duplicates": None}
    run = {"tool": "autodistill-metaclip", "settings": settings, "classes": classes}
    (folder / STATE / RUN).write_text(json.dumps(run))
    write_review(folder)


def test_five_thousand_classes_keep_a_key_press_fast(browser, tmp_path: Path) -> None:
    """The nav is built once (a draw changes only what changed), the class list and the card
    menus filter, and 1-9 still pick the first nine classes."""
    classes = [f"class {n:04d}" for n in range(5000)]
    write_dataset(tmp_path / "d", classes, 200)
    page = Review(browser, tmp_path / "d" / "review.html")
    assert page.tab.locator("#counts tr").count() == 201  # the summary: 200 classes a page
    assert page.tab.locator("#pager").inner_text() == "5000 classes, page 1 of 25"
    page.press("n")
    assert page.tab.locator("#counts td").first.inner_text() == "class 0200"
    buttons = page.tab.locator("#classes button")
    assert buttons.count() == 5000
    buttons.first.evaluate("b => { b.marked = true; }")  # gone if the nav were rebuilt
    page.tab.locator("#filter").fill("class 49")
    assert page.tab.locator("#classes button:visible").count() == 100
    page.tab.locator("#filter").fill("")
    page.view("class 0003 (")
    assert len(page.keys()) == 10
    started = time.perf_counter()
    for key in ("2", "ArrowRight", "9", "ArrowRight", "x"):
        page.tab.keyboard.press(key)
    assert page.tab.locator("#changes").inner_text() == "3"
    assert (time.perf_counter() - started) / 5 < 0.25  # was 3 s a key at 5,000 classes
    assert buttons.first.evaluate("b => b.marked") is True
    page.choose(page.keys()[3], "class 0003")  # its own class: nothing to change
    page.tab.locator(f'.card[data-key="{page.keys()[4]}"] .choose').click()
    assert page.tab.locator("#menu [role=menuitem]").count() == 200  # and "4801 more"
    page.tab.locator("#menu-filter").fill("4321")
    page.tab.locator("#menu").get_by_role("menuitem", name="class 4321").click()
    exported = page.export(tmp_path / "c.json")
    keys = page.keys()
    assert [(c["image"], c["to"]) for c in exported["corrections"]] == [
        (keys[0], "class 0001"), (keys[1], "class 0008"), (keys[2], None), (keys[4], "class 4321"),
    ]  # fmt: skip
    assert page.problems == []
    page.tab.close()


def test_a_page_written_elsewhere_opens_with_its_files(
    demo_dataset: Path, browser, tmp_path: Path
) -> None:
    target = write_review(demo_dataset, tmp_path / "my page #1.html")
    page = Review(browser, target)
    page.tab.locator("nav button[data-view=class]").first.click()
    page.tab.wait_for_selector(READY)
    width = page.tab.locator(".thumb").first.evaluate(
        """async (t) => { const i = new Image();
        i.src = getComputedStyle(t).backgroundImage.slice(5, -2); await i.decode();
        return i.naturalWidth; }"""
    )
    assert width == 10 * review.THUMBNAIL and page.problems == []
    page.tab.close()

    shutil.rmtree(tmp_path / "my page #1_files")  # the page without its files says so
    tab = browser.new_page()
    tab.goto(target.as_uri())
    tab.wait_for_selector("#view[data-ready='error']")
    assert "data files are missing" in tab.locator("#view").inner_text()
    tab.close()
