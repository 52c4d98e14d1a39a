"""A review page for a labelled dataset: opens from disk, offline, at any dataset size.

It shows the class counts per split; each class's images least confident first; the unlabeled
and failed files with their reasons; likely confusions (images whose top two classes are
close, by class pair); near-duplicate groups, those that cross splits first; the excluded
images. Each image has a small thumbnail (made here, never the original), its path, class,
confidence, split and top 3. The user reassigns images, marks them "exclude" or gives an
unlabeled image a class (mouse or keyboard), and exports the corrections as JSON for
:func:`autodistill_metaclip.labeling.corrections.apply_corrections`.

``review.html`` is a small shell (HTML, style and script; no server, no CDN). Its data is in
files beside it (:mod:`.review_assets`): a summary (classes, counts, the views) and, per view,
chunks of about 200 cards, each a script that hands its JSON to the shell (a page opened from
disk cannot ``fetch()``, but it can add ``<script src>``); thumbnails are JPEG sprite sheets.
The shell loads the summary, then a view's chunks as its pages are opened. Every file is named
by a hash of its content and written only if missing, so a fix or a resume writes only what
changed; chunk boundaries depend on the keys, not on positions, so one image more or less in a
view changes one chunk, not every chunk after it. Untrusted names are inserted as text, never
as HTML.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import (
    UnreadableFile,
    atomic_write,
    make_folders,
    read_capped,
    refuse_link,
)
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling.manifest import MANIFEST, Decision, read_manifest, top_classes
from autodistill_metaclip.labeling.options import LAYOUTS
from autodistill_metaclip.labeling.review_assets import (
    AssetFolder,
    Cell,
    content_name,
    place_thumbnails,
)
from autodistill_metaclip.labeling.state import (
    REVIEW_FILE,
    STATE,
    group_leaders,
    open_store,
    read_journal,
    read_run,
)
from autodistill_metaclip.results import Status

THUMBNAIL = 96
"""Longest side of a thumbnail, in pixels."""
CLOSE = 0.15
"""Images whose top two probabilities are closer than this are listed as likely confusions."""
REVIEW_FOLDER = "review"
"""The dataset's page keeps its files in ``<dataset>/.autodistill-metaclip/review/``."""
CHUNK_MIN, CHUNK_CUT, CHUNK_MAX = 50, 150, 600
"""A data chunk ends after a card whose key hashes to a multiple of ``CHUNK_CUT`` once it has
``CHUNK_MIN`` cards, or at ``CHUNK_MAX``: about 200 cards."""
_CARD_FIELDS = ("key", "status", "class", "confidence", "split", "error", "top", "decided")
_MAX_SHELL_BYTES = 1 << 20

Member = tuple[int, dict[str, Any] | None]
"""An image of a view: its index in the data's ``images``, and the group it is shown in."""
View = tuple[dict[str, Any], list[Member]]
"""A view of the page: what the nav says of it, and its images in order."""


def write_review(
    dataset_folder: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    thumbnail: int = THUMBNAIL,
) -> Path:
    """Write the review page of a dataset written by ``label()``, and its files.

    The dataset's page (``<dataset_folder>/review.html``) keeps its files in
    ``<dataset_folder>/.autodistill-metaclip/review/``; a page written elsewhere keeps them in
    a folder beside it, ``<name>_files/`` (move the two together). Only the files that are
    missing are written; those the page no longer uses are removed.

    Args:
        dataset_folder: The dataset (its ``manifest.csv`` and ``.autodistill-metaclip``).
        output: Where to write the page (default: ``<dataset_folder>/review.html``).
        thumbnail: Longest side of the thumbnails, in pixels.

    Returns:
        The page's path.
    """
    folder = Path(dataset_folder)
    target = Path(output) if output is not None else folder / REVIEW_FILE
    data = review_data(folder)
    settings = read_run(folder)["settings"]
    if target.parent.resolve() / target.name == folder.resolve() / REVIEW_FILE:
        place, url = make_folders(folder / STATE, REVIEW_FOLDER), f"{quote(STATE)}/{REVIEW_FOLDER}/"
    else:
        name = f"{target.stem}_files"
        place, url = make_folders(target.parent, name), f"{quote(name)}/"
    assets = AssetFolder(place)
    views = _views(data)
    # New thumbnails fill sheets in the order the views show them: a page of a class's cards
    # is on one or two sheets, not on sixty.
    images = [data["images"][n] for n in dict.fromkeys(n for _, m in views for n, _ in m)]
    source = _thumbnail_sources(folder, settings)
    readable = [image for image in images if image["status"] != Status.FAILED]
    idents = {image["key"]: _ident(settings, image) for image in readable}
    cells = place_thumbnails(assets, {idents[i["key"]]: source(i) for i in readable}, thumbnail)
    thumbs = {key: cells.get(ident) for key, ident in idents.items()}
    summary = _write_chunks(assets, data, views, thumbs, thumbnail)
    template = (
        resources.files("autodistill_metaclip.labeling").joinpath("review.html").read_text("utf-8")
    )
    page = template.replace("/*CONFIG*/null", _script_json({"assets": url, "summary": summary}))
    _write_if_changed(target, page.encode("utf-8"))
    assets.prune()
    return target


def review_data(folder: Path) -> dict[str, Any]:
    """Everything the page shows, as JSON data: ``images`` (one per manifest row, with its
    ``copy`` in the dataset if any), ``confusions`` and ``duplicates`` (groups of indices into
    ``images``), and the ``counts`` of labelled images per split and class."""
    run = read_run(folder)
    settings, classes = run["settings"], list(run["classes"])
    split_names = LAYOUTS[settings["layout"]]
    rows = list(read_manifest(folder / MANIFEST).values())
    copies = {key: relative for relative, (key, _) in read_journal(folder).items()}
    images = []
    for row in rows:
        top = top_classes(row)
        model = (top[0][0] if top else row["class"]) if row["status"] == Status.LABELED else ""
        images.append(
            {
                "key": row["image"],
                "status": row["status"],
                "class": row["class"],
                "model": model,  # the model's class (``class`` may be a human's)
                "confidence": float(row["confidence"]) if row["confidence"] else None,
                "split": row["split"],
                "error": row["error"],
                "top": top,
                "decided": row["decided"],
                "stamp": row["stamp"],
                "copy": copies.get(row["image"], ""),
            }
        )
    counts = {s: {c: 0 for c in classes} for s in split_names}
    for image in images:
        if image["split"] in counts and image["class"] in counts[image["split"]]:
            counts[image["split"]][image["class"]] += 1
    return {
        "title": folder.resolve().name,
        "classes": classes,
        "splits": list(split_names),
        "counts": counts,
        "images": images,
        "confusions": _confusions(images),
        "duplicates": _duplicates(folder, run, images),
    }


def _ident(settings: dict[str, Any], image: dict[str, Any]) -> str:
    """What a thumbnail shows: the input folder's file ``key`` at ``stamp``."""
    text = f"{settings['input_folder']}\x00{image['key']}\x00{image['stamp']}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _thumbnail_sources(
    folder: Path, settings: dict[str, Any]
) -> Callable[[dict[str, Any]], SourceFile | None]:
    """What to make an image's thumbnail from: the dataset's copy, else the local input; or
    nothing. Links leading out of the dataset (or the input folder) are not followed."""
    dataset, real_dataset = str(folder), os.path.realpath(folder)
    root = sources.local_path(settings["input_folder"])
    real_root = os.path.realpath(root) if root is not None else None

    def source(image: dict[str, Any]) -> SourceFile | None:
        if image["copy"]:
            return SourceFile(image["key"], os.path.join(dataset, image["copy"]), "", real_dataset)
        if root is None:
            return None
        location = os.path.join(root, sources.unescape_key(image["key"]))
        return SourceFile(image["key"], location, "", real_root)

    return source


def _views(data: dict[str, Any]) -> list[View]:
    """Each class's labelled images least confident first, the unlabeled ones (least confident
    first), the failed ones; the likely confusions and the near-duplicates, group by group;
    the excluded images."""
    images = data["images"]

    def least_confident(members: list[int]) -> list[Member]:
        return [(n, None) for n in sorted(members, key=lambda n: images[n]["confidence"] or 0.0)]

    by_status: dict[str, list[int]] = defaultdict(list)
    by_class: dict[str, list[int]] = defaultdict(list)
    excluded: list[Member] = []
    for n, image in enumerate(images):
        by_status[image["status"]].append(n)
        if image["decided"] == Decision.EXCLUDED:
            excluded.append((n, None))
        elif image["status"] == Status.LABELED:
            by_class[image["class"]].append(n)
    views: list[View] = [
        ({"kind": "class", "class": i}, least_confident(by_class[name]))
        for i, name in enumerate(data["classes"])
    ]
    views.append(({"kind": "unlabeled"}, least_confident(by_status[Status.UNLABELED])))
    failed: list[Member] = [(n, None) for n in by_status[Status.FAILED]]
    views.append(({"kind": "failed"}, failed))
    confused: list[Member] = []
    for g in data["confusions"]:
        title = f"{g['pair'][0]} / {g['pair'][1]}: {len(g['images'])} images"
        group = {"id": "\x00".join(g["pair"]), "title": title, "cross": False}
        confused += [(n, group) for n in g["images"]]
    views.append(({"kind": "confusions", "groups": len(data["confusions"])}, confused))
    duplicated: list[Member] = []
    for g in data["duplicates"]:
        where = sorted({images[n]["split"] for n in g["images"] if images[n]["split"]})
        title = (
            f"{'crosses splits' if g['cross'] else 'one split'}: "
            f"{', '.join(where) or 'none'} ({len(g['images'])} images)"
        )
        group = {"id": images[g["images"][0]]["key"], "title": title, "cross": g["cross"]}
        duplicated += [(n, group) for n in g["images"]]
    crossing = sum(g["cross"] for g in data["duplicates"])
    kind = {"kind": "duplicates", "groups": len(data["duplicates"]), "cross": crossing}
    views.append((kind, duplicated))
    views.append(({"kind": "excluded"}, excluded))
    return views


def _write_chunks(
    assets: AssetFolder,
    data: dict[str, Any],
    views: list[View],
    thumbs: dict[str, Cell | None],
    size: int,
) -> str:
    """Write each view's chunks and the summary that lists them; the summary's name."""
    images, classes = data["images"], data["classes"]
    listed = []
    for view, members in views:
        cards = []
        for n, group in members:
            card = {name: images[n][name] for name in _CARD_FIELDS}
            card["thumb"] = thumbs.get(images[n]["key"])
            cards.append(card if group is None else {**card, "group": group})
        chunks = [[_put_script(assets, {"cards": c}), len(c)] for c in chunk_cards(cards)]
        listed.append({**view, "count": len(cards), "chunks": chunks})
    counts = {s: [data["counts"][s][c] for c in classes] for s in data["splits"]}
    statuses = Counter(image["status"] for image in images)
    totals = {str(s): statuses[s] for s in (Status.LABELED, Status.UNLABELED, Status.FAILED)}
    summary = {"title": data["title"], "classes": classes, "splits": data["splits"],
               "counts": counts, "totals": totals, "thumbnail": size, "views": listed}  # fmt: skip
    return _put_script(assets, summary)


def chunk_cards(cards: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive chunks of ``cards``, cut after the cards whose keys hash to a multiple of
    ``CHUNK_CUT``: inserting or removing a card changes its chunk, not every chunk after it."""
    chunks: list[list[dict[str, Any]]] = [[]]
    for card in cards:
        chunks[-1].append(card)
        size = len(chunks[-1])
        cut = zlib.crc32(card["key"].encode("utf-8", "surrogatepass")) % CHUNK_CUT == 0
        if size >= CHUNK_MAX or (size >= CHUNK_MIN and cut):
            chunks.append([])
    return [c for c in chunks if c]


def _script_json(value: Any) -> str:
    """JSON that is safe inside a script (no ``<``, ``>``, ``&``, nothing but ASCII), so no
    name can close the element or be read in another encoding."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _put_script(assets: AssetFolder, value: Any) -> str:
    """A data chunk: a script handing ``value`` to the page, named by its content."""
    text = _script_json(value)
    name = content_name(text.encode("ascii"))
    assets.put(f"{name}.js", f'reviewChunk("{name}",{text});\n'.encode("ascii"))
    return name


def _write_if_changed(target: Path, page: bytes) -> None:
    refuse_link(target)
    try:
        if read_capped(target, _MAX_SHELL_BYTES) == page:
            return
    except UnreadableFile:
        pass
    with atomic_write(target) as f:
        f.write(page)


def _confusions(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Images whose top two classes are within :data:`CLOSE`, grouped by class pair, the
    largest group first; inside a group, the closest first."""
    pairs: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for n, image in enumerate(images):
        top = image["top"]
        if image["status"] != Status.FAILED and len(top) > 1 and top[0][1] - top[1][1] < CLOSE:
            pair = sorted((top[0][0], top[1][0]))
            pairs[pair[0], pair[1]].append((top[0][1] - top[1][1], n))
    groups = [
        {"pair": list(pair), "images": [n for _, n in sorted(members)]}
        for pair, members in pairs.items()
    ]
    return sorted(groups, key=lambda g: (-len(g["images"]), g["pair"]))


def _duplicates(folder: Path, run: dict[str, Any], images: list[dict[str, Any]]) -> list[Any]:
    """Near-duplicate groups of the readable images (the run's threshold), those whose labelled
    members cross splits first."""
    if run["settings"].get("near_duplicates") is None:
        return []
    try:
        store = open_store(folder, run)
    except ValueError:
        return []  # a dataset without embeddings to group
    files = [SourceFile(i["key"], "", i["stamp"]) for i in images if i["status"] != Status.FAILED]
    leaders = group_leaders(store, files, run["settings"]["near_duplicates"])
    number = {image["key"]: n for n, image in enumerate(images)}
    groups: dict[str, list[int]] = defaultdict(list)
    for key, leader in leaders.items():
        groups[leader].append(number[key])
    found = []
    for members in groups.values():
        if len(members) > 1:
            members.sort()
            crossing = len({images[n]["split"] for n in members if images[n]["split"]}) > 1
            found.append({"images": members, "cross": crossing})
    return sorted(found, key=lambda g: (not g["cross"], -len(g["images"]), g["images"][0]))
