"""A review page for a labelled dataset: one HTML file that opens from disk, offline.

It shows the class counts per split; each class's images least confident first; the unlabeled
and failed files with their reasons; likely confusions (images whose top two classes are
close, by class pair); near-duplicate groups, flagging those that cross splits. Each image has
a small thumbnail (made here, never the original inlined), its path, class, confidence and
top 3. The user reassigns images or marks them "exclude" (mouse or keyboard) and exports the
corrections as JSON for :func:`autodistill_metaclip.labeling.corrections.apply_corrections`.

Everything is in the file (data as JSON, script, style; no server, no CDN); cards are drawn a
page at a time, so a 20,000-image dataset opens fast. Untrusted names are inserted as text,
never as HTML.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import atomic_write
from autodistill_metaclip.inputs.images import load_image
from autodistill_metaclip.inputs.sources import SourceFile
from autodistill_metaclip.labeling.manifest import MANIFEST, model_class, read_manifest, top_classes
from autodistill_metaclip.labeling.options import LAYOUTS
from autodistill_metaclip.labeling.state import (
    REVIEW_FILE,
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
_WORKERS = min(4, os.cpu_count() or 1)


def write_review(
    dataset_folder: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    thumbnail: int = THUMBNAIL,
) -> Path:
    """Write the review page of a dataset written by ``label()``.

    Args:
        dataset_folder: The dataset (its ``manifest.csv`` and ``.autodistill-metaclip``).
        output: Where to write the page (default: ``<dataset_folder>/review.html``).
        thumbnail: Longest side of the thumbnails, in pixels.

    Returns:
        The page's path.
    """
    folder = Path(dataset_folder)
    data = review_data(folder, thumbnail=thumbnail)
    template = (
        resources.files("autodistill_metaclip.labeling").joinpath("review.html").read_text("utf-8")
    )
    # JSON inside <script>: "<", ">" and "&" escaped, so no name can close the element.
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = template.replace("/*DATA*/null", payload)
    target = Path(output) if output is not None else folder / REVIEW_FILE
    with atomic_write(target, "w") as f:
        f.write(page)
    return target


def review_data(folder: Path, *, thumbnail: int = THUMBNAIL) -> dict[str, Any]:
    """Everything the page shows, as JSON data."""
    run = read_run(folder)
    settings, classes = run["settings"], list(run["classes"])
    split_names = LAYOUTS[settings["layout"]]
    rows = list(read_manifest(folder / MANIFEST).values())
    copies = {key: relative for relative, (key, _) in read_journal(folder).items()}
    images = []
    for row in rows:
        top = top_classes(row)
        images.append(
            {
                "key": row["image"],
                "status": row["status"],
                "class": row["class"],
                "model": model_class(row) if row["status"] == Status.LABELED else "",
                "confidence": float(row["confidence"]) if row["confidence"] else None,
                "split": row["split"],
                "error": row["error"],
                "top": top,
                "decided": row["decided"],
                "stamp": row["stamp"],
                "copy": copies.get(row["image"], ""),
            }
        )
    places = [_thumbnail_source(folder, settings, image) for image in images]
    with ThreadPoolExecutor(_WORKERS) as pool:
        thumbs = list(pool.map(lambda p: _thumbnail(p, thumbnail), places))
    for image, thumb in zip(images, thumbs, strict=True):
        image["thumb"] = thumb
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


def _thumbnail_source(folder: Path, settings: dict[str, Any], image: dict[str, Any]) -> Any:
    """What to make a thumbnail from: the dataset's copy, else the local input; or nothing."""
    if image["copy"]:
        return sources.SourceFile(image["key"], str(folder / image["copy"]), "", None)
    root = sources.local_path(settings["input_folder"])
    if image["status"] == Status.FAILED or root is None:
        return None
    location = os.path.join(root, sources.unescape_key(image["key"]))
    return sources.SourceFile(image["key"], location, "", os.path.realpath(root))


def _thumbnail(source: Any, size: int) -> str:
    if source is None:
        return ""
    try:
        picture = load_image(source, draft_size=size)
    except (ImageLoadError, OSError):
        return ""
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
