"""The review page's data and files, checked against the manifest they are made from: counts
per split, each view's cards in order, thumbnails in sprite sheets, likely confusions and
near-duplicate groups; a small shell whatever the size; files written only when missing and
removed only when they are this tool's and unused. (In a browser: tests/scenarios.)"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from PIL import Image, ImageStat

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling import review
from autodistill_metaclip.labeling.corrections import FORMAT, apply_corrections
from autodistill_metaclip.labeling.review import chunk_cards, review_data, write_review
from autodistill_metaclip.labeling.review_assets import INDEX, AssetFolder, place_thumbnails
from tests.helpers import SPLITS, manifest, opened_files

ASSETS = Path(".autodistill-metaclip") / "review"


def read_chunk(folder: Path, name: str) -> Any:
    """A data chunk's JSON, checked to be ASCII, named by its content, and free of ``<``,
    ``>`` and ``&`` (no name can close a script element)."""
    text = (folder / f"{name}.js").read_bytes().decode("ascii")
    found = re.fullmatch(r'reviewChunk\("([0-9a-f]{32})",(.*)\);\n', text, re.DOTALL)
    assert found is not None and found[1] == name
    assert hashlib.sha256(found[2].encode()).hexdigest()[:32] == name
    assert not set("<>&") & set(text)
    return json.loads(found[2])


def read_page(page: Path) -> tuple[Path, dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """A written page's files folder, its summary, and every view's cards in order."""
    html = page.read_text(encoding="utf-8")
    config = json.loads(re.search(r'id="config">(.*?)</script>', html)[1])  # type: ignore[index]
    folder = page.parent / unquote(config["assets"])
    summary = read_chunk(folder, config["summary"])
    views = {}
    for view in summary["views"]:
        cards = []
        for name, count in view["chunks"]:
            chunk = read_chunk(folder, name)["cards"]
            assert len(chunk) == count
            cards += chunk
        assert len(cards) == view["count"]
        named = summary["classes"][view["class"]] if view["kind"] == "class" else view["kind"]
        views[named] = cards
    return folder, summary, views


def cell_of(sheet: Image.Image, n: int, size: int = 96) -> Image.Image:
    """Cell ``n`` of a thumbnail sheet."""
    x, y = n % 10 * size, n // 10 * size
    return sheet.crop((x, y, x + size, y + size))


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """The largest difference of the two images' mean red, green and blue."""
    means = zip(ImageStat.Stat(a).mean, ImageStat.Stat(b).mean, strict=True)
    return max(abs(x - y) for x, y in means)


def listing(folder: Path) -> dict[str, int]:
    """The files of a folder with their modification times (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_review_data_counts_explains_and_groups(demo_dataset: Path) -> None:
    data = review_data(demo_dataset)
    rows = manifest(demo_dataset)
    images = {image["key"]: image for image in data["images"]}
    assert set(images) == set(rows) and list(data["splits"]) == list(SPLITS)
    assert sorted(data["classes"]) == sorted(synthetic.class_names())
    expected_counts = Counter(
        (r["split"], r["class"]) for r in rows.values() if r["status"] == "labeled"
    )
    assert {
        (split, name): n for split, c in data["counts"].items() for name, n in c.items() if n
    } == dict(expected_counts)
    assert images["broken.png"]["status"] == "failed"
    assert "not an image file" in images["broken.png"]["error"]
    for key, image in images.items():
        row = rows[key]
        assert (image["status"], image["class"], image["split"]) == (
            row["status"], row["class"], row["split"],
        )  # fmt: skip
        if image["status"] != "failed":
            assert [[c, p] for c, p in image["top"]] == json.loads(row["top"])
    (pair,) = [
        g for g in data["duplicates"]
        if "00000_copy.png" in {data["images"][n]["key"] for n in g["images"]}
    ]  # fmt: skip
    members = {data["images"][n]["key"] for n in pair["images"]}
    assert members >= {"00000_red_circle.png", "00000_copy.png"}
    assert pair["cross"] == (len({rows[k]["split"] for k in members}) > 1)


def test_confusions_are_the_images_whose_top_two_are_close(
    tmp_path: Path,
) -> None:
    """Two prompts that say nearly the same thing split the red circles' probability between
    them: those images are listed under their class pair, the largest pair first, each group
    closest first; the manifest's top column says which they are."""
    model = MetaCLIP(
        {
            "a photo of a red circle": "red circle",
            "a photo of a red circle.": "round red thing",
            "a photo of a blue square": "blue square",
        },
        checkpoint="demo",
    )
    synthetic.write_folder(tmp_path / "in", 24, seed=5)
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    rows = manifest(tmp_path / "out")

    expected: dict[tuple[str, ...], list[tuple[float, str]]] = defaultdict(list)
    for key, row in rows.items():
        (first, p1), (second, p2), *_ = json.loads(row["top"])
        if p1 - p2 < 0.15:
            expected[tuple(sorted((first, second)))].append((p1 - p2, key))
    assert ("red circle", "round red thing") in expected  # the case this test is about

    data = review_data(tmp_path / "out")
    got = {
        tuple(g["pair"]): [data["images"][n]["key"] for n in g["images"]]
        for g in data["confusions"]
    }
    assert got == {pair: [k for _, k in sorted(members)] for pair, members in expected.items()}
    sizes = [len(g["images"]) for g in data["confusions"]]
    assert sizes == sorted(sizes, reverse=True)

    # the page lists them group by group, each card with its group's title
    _, _, views = read_page(tmp_path / "out" / "review.html")
    assert [c["key"] for c in views["confusions"]] == [k for g in got.values() for k in g]
    pair = ("red circle", "round red thing")
    titles = {c["group"]["title"] for c in views["confusions"] if c["key"] in got[pair]}
    assert titles == {f"red circle / round red thing: {len(got[pair])} images"}


def test_the_page_is_a_small_shell_with_its_views_in_chunks(demo_dataset: Path) -> None:
    page = demo_dataset / "review.html"
    html = page.read_text(encoding="utf-8")
    assert html.lower().startswith("<!doctype html>") and len(html) < 50_000
    assert "00000_copy.png" not in html  # the data is in the files beside it
    assert "http://" not in html and "https://" not in html  # nothing fetched: opens offline
    folder, summary, views = read_page(page)
    assert folder == demo_dataset / ASSETS
    rows = manifest(demo_dataset)
    classes = summary["classes"]
    assert sorted(classes) == sorted(synthetic.class_names()) and summary["splits"] == list(SPLITS)
    expected = Counter((r["split"], r["class"]) for r in rows.values() if r["status"] == "labeled")
    assert summary["counts"] == {
        s: [expected[s, c] for c in classes] for s in SPLITS
    }  # fmt: skip
    statuses = Counter(r["status"] for r in rows.values())
    assert summary["totals"] == {s: statuses[s] for s in ("labeled", "unlabeled", "failed")}

    order = list(rows)  # the manifest's order breaks ties of confidence

    def least_confident(keys: list[str]) -> list[str]:
        return sorted(keys, key=lambda k: (float(rows[k]["confidence"] or 0), order.index(k)))

    for name in classes:
        members = [k for k, r in rows.items() if r["status"] == "labeled" and r["class"] == name]
        assert [c["key"] for c in views[name]] == least_confident(members)
    unlabeled = [k for k, r in rows.items() if r["status"] == "unlabeled"]
    assert [c["key"] for c in views["unlabeled"]] == least_confident(unlabeled)
    (failed,) = views["failed"]
    assert failed["key"] == "broken.png" and "not an image file" in failed["error"]
    assert failed["thumb"] is None and views["excluded"] == []
    for card in [c for name in classes for c in views[name]] + views["unlabeled"]:
        row = rows[card["key"]]
        assert (card["status"], card["class"], card["split"], card["decided"]) == (
            row["status"], row["class"], row["split"], row["decided"]
        )  # fmt: skip
        assert card["confidence"] == float(row["confidence"])
        assert card["top"] == json.loads(row["top"])
    (pair,) = [
        [c for c in views["duplicates"] if c["group"]["id"] == card["group"]["id"]]
        for card in views["duplicates"] if card["key"] == "00000_copy.png"
    ]  # fmt: skip
    assert {"00000_red_circle.png", "00000_copy.png"} <= {c["key"] for c in pair}


def test_each_thumbnail_is_a_cell_of_a_sprite_sheet(demo_dataset: Path) -> None:
    folder, summary, views = read_page(demo_dataset / "review.html")
    size = summary["thumbnail"]
    cards = {c["key"]: c for view in views.values() for c in view}
    sheets = {c["thumb"][0] for c in cards.values() if c["thumb"]}
    index = json.loads((folder / INDEX).read_text())
    assert index["size"] == size and set(index["sheets"]) == sheets
    assert len(sheets) == 1  # 61 readable images: one sheet of 10 x 7 cells
    for key, card in cards.items():
        if card["status"] == "failed":
            continue
        sheet, cell = card["thumb"]
        with Image.open(folder / f"{sheet}.jpg") as picture:
            assert picture.format == "JPEG" and picture.width == 10 * size
            shown = cell_of(picture.convert("RGB"), cell).crop((16, 16, 80, 80))  # 64 px inside
        original = Image.open(demo_dataset.parent / "in" / key).convert("RGB")
        assert mean_difference(shown, original) < 8, key
    # every file beside the page is used by it
    used = {f"{n}.js" for view in summary["views"] for n, _ in view["chunks"]}
    used |= {f"{summary_name(demo_dataset)}.js", INDEX} | {f"{s}.jpg" for s in sheets}
    assert {p.name for p in folder.iterdir()} == used


def summary_name(dataset: Path) -> str:
    html = (dataset / "review.html").read_text(encoding="utf-8")
    return json.loads(re.search(r'id="config">(.*?)</script>', html)[1])["summary"]  # type: ignore[index]


def test_a_fix_writes_only_the_chunks_that_changed(demo_dataset: Path) -> None:
    folder = demo_dataset / ASSETS
    before = listing(folder) | {"review.html": (demo_dataset / "review.html").stat().st_mtime_ns}
    with opened_files() as opened:
        write_review(demo_dataset)  # nothing changed: nothing written
    after = listing(folder) | {"review.html": (demo_dataset / "review.html").stat().st_mtime_ns}
    assert after == before
    assert not [p for p in opened if p.endswith(".png")]  # no thumbnail made again

    rows = manifest(demo_dataset)
    key = next(k for k, r in rows.items() if r["status"] == "labeled")
    other = next(c for c in synthetic.class_names() if c != rows[key]["class"])
    corrections = {"format": FORMAT, "corrections": [{"image": key, "to": other}]}
    with opened_files() as opened:
        apply_corrections(demo_dataset, corrections)  # writes the page again
    assert not [p for p in opened if p.endswith(".png")]  # no thumbnail made again
    now = listing(folder)
    written = {name for name in now if name not in before}
    removed = {name for name in before if name not in now} - {"review.html"}
    assert all(name.endswith(".js") for name in written | removed)
    # the summary, the chunks of the two classes, and of any group view holding the image
    assert 3 <= len(written) <= 5 and len(removed) == len(written)
    _, _, views = read_page(demo_dataset / "review.html")
    (card,) = [c for c in views[other] if c["key"] == key]
    assert (card["class"], card["decided"]) == (other, "human")
    assert key not in {c["key"] for c in views[rows[key]["class"]]}


def test_new_images_fill_a_new_sheet_and_the_old_thumbnails_stay(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    synthetic.write_folder(tmp_path / "in", 30, seed=4)
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    folder = tmp_path / "out" / ASSETS
    (first,) = json.loads((folder / INDEX).read_text())["sheets"]
    for n, sample in enumerate(synthetic.samples(4, seed=9)):
        sample.image.save(tmp_path / "in" / f"new{n}.png")
    demo_model.label(
        tmp_path / "in", ".png", tmp_path / "out",
        confidence=0.0, resume=True, review=False, progress=False,
    )  # fmt: skip
    with opened_files() as opened:
        write_review(tmp_path / "out")
    made_from = {Path(p).name for p in opened if p.endswith(".png")}
    assert made_from == {f"new{n}.png" for n in range(4)}  # from their copies in the dataset
    sheets = json.loads((folder / INDEX).read_text())["sheets"]
    assert first in sheets and len(sheets) == 2
    assert sorted(len(idents) for idents in sheets.values()) == [4, 30]
    _, _, views = read_page(tmp_path / "out" / "review.html")
    new = {c["key"]: c["thumb"] for v in views.values() for c in v if c["key"].startswith("new")}
    assert {sheet for sheet, _ in new.values()} == set(sheets) - {first}


def test_a_sheet_mostly_gone_has_its_cells_moved_not_made_again(tmp_path: Path) -> None:
    sources = {}
    for n, sample in enumerate(synthetic.samples(30, seed=2)):
        sample.image.save(tmp_path / f"{n}.png")
        sources[f"{n:032x}"] = SourceFile(str(n), str(tmp_path / f"{n}.png"), "", None)
    (tmp_path / "assets").mkdir()
    folder = AssetFolder(tmp_path / "assets")
    cells = place_thumbnails(folder, dict(sources), 96)
    (sheet,) = {name for name, _ in cells.values()}
    assert sorted(n for _, n in cells.values()) == list(range(30))
    with Image.open(tmp_path / "assets" / f"{sheet}.jpg") as picture:
        earlier = picture.convert("RGB")

    # 20 of 30 still wanted: the sheet stays as it is; nothing is made or written
    some = dict.fromkeys(list(sources)[:20])  # no source: they could not be made again
    folder = AssetFolder(tmp_path / "assets")
    assert place_thumbnails(folder, dict(some), 96) == {i: cells[i] for i in some}
    assert folder.written == []
    # 10 of 30: their cells are moved into a new sheet, cropped from the old one
    few = dict.fromkeys(list(sources)[:10])
    folder = AssetFolder(tmp_path / "assets")
    moved = place_thumbnails(folder, dict(few), 96)
    assert set(moved) == set(few) and {name for name, _ in moved.values()} != {sheet}
    assert folder.prune() == [f"{sheet}.jpg"]
    (new,) = {name for name, _ in moved.values()}
    with Image.open(tmp_path / "assets" / f"{new}.jpg") as picture:
        later = picture.convert("RGB")
    for ident, (_, cell) in moved.items():
        assert mean_difference(cell_of(later, cell), cell_of(earlier, cells[ident][1])) < 3


def test_only_its_own_unused_files_are_removed(demo_dataset: Path, tmp_path: Path) -> None:
    folder = demo_dataset / ASSETS
    outside = tmp_path / "precious.js"
    outside.write_text("keep me")
    ours_looking = "0" * 32 + ".js"
    (folder / ours_looking).symlink_to(outside)
    (folder / ("1" * 32 + ".jpg")).mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / ".partial-0123456789abcdef-x.js").write_text("a killed write")
    (folder / ("2" * 32 + ".js")).write_text("an unused chunk")
    write_review(demo_dataset)
    names = {p.name for p in folder.iterdir()}
    assert {ours_looking, "1" * 32 + ".jpg", "notes.txt"} <= names
    assert "2" * 32 + ".js" not in names and ".partial-0123456789abcdef-x.js" not in names
    assert outside.read_text() == "keep me" and (folder / ours_looking).is_symlink()


def test_a_linked_files_folder_is_refused(demo_dataset: Path, tmp_path: Path) -> None:
    folder = demo_dataset / ASSETS
    shutil.rmtree(folder)
    (tmp_path / "elsewhere").mkdir()
    folder.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match="symbolic link"):
        write_review(demo_dataset)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_page_elsewhere_keeps_its_files_beside_it(demo_dataset: Path, tmp_path: Path) -> None:
    page = write_review(demo_dataset, tmp_path / "my page #1.html")
    assert page == tmp_path / "my page #1.html"
    assert '"assets":"my%20page%20%231_files/"' in page.read_text(encoding="utf-8")
    folder, _, views = read_page(page)
    assert folder == tmp_path / "my page #1_files"
    assert {c["key"] for v in views.values() for c in v} == set(manifest(demo_dataset))
    # the dataset's own page and files are untouched by it
    assert read_page(demo_dataset / "review.html")[0] == demo_dataset / ASSETS


def test_names_cannot_break_out_of_the_data_scripts(tmp_path: Path) -> None:
    hostile = "</script><script>alert(1)</script>&amp;\u2028"
    model = MetaCLIP({"a photo of a red circle": hostile, "a photo of a blue square": "b"},
                     checkpoint="demo")  # fmt: skip
    (tmp_path / "in").mkdir()
    synthetic.make_image("red", "circle").save(tmp_path / "in" / "<b>bold&amp;.png")
    model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.0, progress=False)
    _, summary, views = read_page(tmp_path / "out" / "review.html")  # checks every chunk
    assert hostile in summary["classes"] and views[hostile][0]["key"] == "<b>bold&amp;.png"
    assert "alert" not in (tmp_path / "out" / "review.html").read_text(encoding="utf-8")


def test_chunks_are_cut_by_key_so_one_card_changes_one_chunk() -> None:
    rng = random.Random(1)
    cards = [{"key": f"{rng.getrandbits(64):x}.jpg"} for _ in range(20_000)]
    chunks = chunk_cards(cards)
    sizes = [len(c) for c in chunks]
    assert sum(sizes) == len(cards) and [c for chunk in chunks for c in chunk] == cards
    assert min(sizes[:-1]) >= review.CHUNK_MIN and max(sizes) <= review.CHUNK_MAX
    assert 150 < len(cards) / len(chunks) < 250
    before = {tuple(c["key"] for c in chunk) for chunk in chunks}
    for changed in (
        [*cards[:7000], {"key": "inserted.jpg"}, *cards[7000:]],
        cards[:7000] + cards[7001:],
    ):
        after = {tuple(c["key"] for c in chunk) for chunk in chunk_cards(changed)}
        assert len(after - before) <= 2 and len(before - after) <= 2


@pytest.mark.skipif(os.name == "nt", reason="symbolic links")
def test_thumbnails_follow_no_link_out_of_the_dataset(demo_dataset: Path, tmp_path: Path) -> None:
    """A copy replaced by a link to a file outside the dataset is not read for a thumbnail."""
    rows = manifest(demo_dataset)
    key = next(k for k, r in rows.items() if r["status"] == "labeled")
    copy = demo_dataset / rows[key]["split"] / rows[key]["class"] / key
    secret = tmp_path / "secret.png"
    synthetic.make_image("green", "square").save(secret)
    copy.unlink()
    copy.symlink_to(secret)
    shutil.rmtree(demo_dataset / ASSETS)
    write_review(demo_dataset)
    _, _, views = read_page(demo_dataset / "review.html")
    assert {str(c["thumb"]) for v in views.values() for c in v if c["key"] == key} == {"None"}
