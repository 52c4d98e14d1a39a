"""Where things go in an output folder: safe folder names for classes, file names for
images, and the clean-up of what this tool left (never anything else).

Examples:
    >>> class_folders(["cat", "a/b", "CAT"])
    {'cat': 'cat', 'a/b': 'a_b', 'CAT': 'CAT_2'}
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from autodistill_metaclip.inputs.files import PARTIAL_PREFIX
from autodistill_metaclip.labeling.state import STAGED, STATE

_LEFTOVER = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}[0-9a-f]{{16}}-")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def class_folders(classes: Sequence[str]) -> dict[str, str]:
    """A safe, unique folder name for every class name (the manifest keeps the real name)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in dict.fromkeys(classes):
        base = safe_name(name)
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate.lower())
        folders[name] = candidate
    return folders


def safe_name(name: str) -> str:
    """One path component that is valid and harmless on Linux, macOS and Windows, not hidden,
    at most 200 bytes (a long name keeps its extension, e.g. ``.jpg``)."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    if _RESERVED.match(cleaned):
        cleaned = "_" + cleaned
    if len(cleaned.encode("utf-8")) > 200:
        suffix = PurePosixPath(cleaned).suffix
        suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
        stem = cleaned[: len(cleaned) - len(suffix)].encode("utf-8")[: 200 - len(suffix)]
        cleaned = (stem.decode("utf-8", "ignore").strip(" .") or "_") + suffix
    return cleaned or "_"


def file_names(keys: Sequence[str]) -> dict[str, str]:
    """Each input's file name in the dataset: its own where unique (ignoring case), else its
    relative path flattened, numbered if still taken."""
    base = {k: PurePosixPath(k).name for k in keys}
    counts = Counter(name.lower() for name in base.values())
    names = {
        k: safe_name(b if counts[b.lower()] == 1 else k.replace("/", "__")) for k, b in base.items()
    }
    seen: set[str] = set()
    for key, name in names.items():
        stem, suffix, n = PurePosixPath(name).stem, PurePosixPath(name).suffix, 1
        while names[key].lower() in seen:
            n += 1
            names[key] = f"{stem}_{n}{suffix}"
        seen.add(names[key].lower())
    return names


def foreign_entries(output: Path, split: str) -> list[str]:
    """Everything below a split folder that is not a plain folder: files, links (to files or
    folders, not followed), and anything deeper than a class folder; paths relative to output."""
    found = []
    for folder, subfolders, files in os.walk(output / split):
        depth = len(Path(folder).relative_to(output).parts)
        for name in subfolders:
            if os.path.islink(os.path.join(folder, name)) or depth >= 2:
                found.append((Path(folder) / name).relative_to(output).as_posix())
        found += [(Path(folder) / name).relative_to(output).as_posix() for name in files]
    if (output / split).is_symlink():
        found.append(split)
    return sorted(found)


def remove_leftovers(output: Path, split_names: Iterable[str]) -> None:
    """Temporary files of a run that was killed, where this tool writes (never elsewhere)."""
    folders = [output, output / STATE, output / STATE / STAGED]
    for split in dict.fromkeys(split_names):
        if (output / split).is_dir() and not (output / split).is_symlink():
            folders += [p for p in (output / split).iterdir() if p.is_dir() and not p.is_symlink()]
    for folder in folders:
        for path in folder.glob(f"{PARTIAL_PREFIX}*"):
            if _LEFTOVER.match(path.name) and path.is_file() and not path.is_symlink():
                path.unlink()


def remove_ours(path: Path) -> None:
    """Remove a file this tool wrote; never follow a link, never remove a folder."""
    if path.is_symlink() or path.is_file():
        path.unlink()
