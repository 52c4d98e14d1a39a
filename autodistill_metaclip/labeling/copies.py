"""The image copies of a dataset: bytes kept until the layout, then moved into their folders.

While a run embeds, the classified bytes of each image are kept under ``.state/staged/`` (named
by a hash of key and stamp). The layout then journals what it will write (so that only what
this tool wrote is ever removed), moves an earlier copy of the same file rather than writing it
again, moves the kept bytes into ``split/class/name``, and removes the copies and kept bytes no
longer wanted. The bytes of excluded images stay kept, so a correction can bring them back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from autodistill_metaclip.inputs.files import atomic_write, make_folders, refuse_link
from autodistill_metaclip.labeling.layout import remove_ours
from autodistill_metaclip.labeling.manifest import Decision, new_row
from autodistill_metaclip.labeling.state import (
    ALL_SPLITS,
    STAGED,
    STATE,
    read_journal,
    save_journal,
)
from autodistill_metaclip.results import Status

Fetch = Callable[[str], bytes | None]
"""The classified bytes of an image, read again (and checked against the embedded hash)."""


class Copies:
    """The copies and kept bytes of the dataset in ``output``."""

    def __init__(self, output: Path) -> None:
        self.output, self.state = output, output / STATE

    def stage(self, key: str, stamp: str, data: bytes) -> None:
        """Keep the classified bytes of an image until the layout moves them into place."""
        make_folders(self.state, STAGED)
        with atomic_write(self._staged(key, stamp)) as f:
            f.write(data)

    def gather(self, rows: dict[str, dict[str, str]], fetch: Fetch | None) -> None:
        """Have the bytes of every labelled image of ``rows``: kept, or an earlier copy, or read
        again (``fetch``, checked against the embedded hash); an image whose bytes cannot be
        had any more becomes a failed row, saying why."""
        copies = self._earlier(read_journal(self.output))
        for key, row in rows.items():
            if row["status"] != Status.LABELED:
                continue
            stamp = row["stamp"]
            if (key, stamp) in copies or self._staged(key, stamp).is_file():
                continue
            data = fetch(key) if fetch is not None else None
            if data is None:
                row.update(new_row(key, stamp, status=Status.FAILED,
                                   error=f"{key!r}: changed or gone since it was embedded; "
                                   "label() again to embed it"))  # fmt: skip
            else:
                self.stage(key, stamp, data)

    def place(
        self,
        rows: dict[str, dict[str, str]],
        planned: dict[str, str],
        splits: tuple[str, ...],
        folders: dict[str, str],
    ) -> None:
        """Put a copy at each ``planned`` relative path (of its key). Journal first (what this
        tool may have written, and from which file); then move each copy into place: an earlier
        copy of the same file (moved aside first, so no rename can land on a copy still
        needed), or the kept bytes; then forget the rest, and remove the class and split folders
        left empty."""
        written = read_journal(self.output)
        wanted = {relative: [key, rows[key]["stamp"]] for relative, key in planned.items()}
        copies = self._earlier(written)
        moving = {  # not already there: journalled for this key and stamp, a plain file
            relative: key
            for relative, key in planned.items()
            if copies.get((key, wanted[relative][1])) != relative
        }
        aside = {k for k, r in rows.items() if r["decided"] == Decision.EXCLUDED}
        save_journal(self.output, {**written, **wanted})
        for split in splits:
            for folder in folders.values():
                make_folders(self.output, f"{split}/{folder}")
        for key in [*moving.values(), *aside]:
            stamp = rows[key]["stamp"]
            earlier = copies.get((key, stamp))
            if earlier is not None and not self._staged(key, stamp).is_file():
                make_folders(self.state, STAGED)
                os.replace(self.output / earlier, self._staged(key, stamp))
        for relative in written.keys() - wanted.keys():
            remove_ours(self.output / relative)
        for relative, key in moving.items():
            refuse_link(self.output / relative)
            os.replace(self._staged(key, rows[key]["stamp"]), self.output / relative)
        save_journal(self.output, wanted)
        keep = {self._staged(key, rows[key]["stamp"]).name for key in aside}
        staged_folder = self.state / STAGED
        for stale in staged_folder.iterdir() if staged_folder.is_dir() else ():
            if stale.name not in keep:
                remove_ours(stale)  # bytes of images no longer labelled
        self._remove_empty_folders(splits, folders)

    def _remove_empty_folders(self, splits: tuple[str, ...], folders: dict[str, str]) -> None:
        """Empty class folders of classes no longer used, and empty split folders of the other
        layout (a reader would count them as classes)."""
        wanted = {(s, f) for s in splits for f in folders.values()}
        for split in sorted(ALL_SPLITS):
            top = self.output / split
            if not top.is_dir() or top.is_symlink():
                continue
            for folder in top.iterdir():
                if (
                    folder.is_dir()
                    and not folder.is_symlink()
                    and (split, folder.name) not in wanted
                    and not any(folder.iterdir())
                ):
                    folder.rmdir()
            if split not in splits and not any(top.iterdir()):
                top.rmdir()

    def _staged(self, key: str, stamp: str) -> Path:
        """Where the classified bytes of ``key`` (at ``stamp``) wait for the layout."""
        name = hashlib.sha256(f"{key}\x00{stamp}".encode()).hexdigest()[:40]
        return self.state / STAGED / name

    def _earlier(self, written: dict[str, list[str]]) -> dict[tuple[str, str], str]:
        """The copies an earlier layout left (relative paths), by ``(key, stamp)``: plain
        files only (one ``lstat`` each)."""
        copies = {}
        for relative, (key, stamp) in written.items():
            try:
                plain = stat.S_ISREG(os.lstat(self.output / relative).st_mode)
            except OSError:
                plain = False
            if plain:
                copies[key, stamp] = relative
        return copies
