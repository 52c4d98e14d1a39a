"""Writing files safely: every file this package writes appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PARTIAL_PREFIX = ".partial-"
"""Temporary files start with this, in the target's folder, until renamed into place."""


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    On any error (or interruption) the temporary file is removed and an earlier file at
    ``path`` is left as it was. The new file gets the usual permissions (umask), like ``open``.

    Example:
        >>> with atomic_write("out.csv", "w") as f:  # doctest: +SKIP
        ...     f.write("a,b\\n")
    """
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=PARTIAL_PREFIX)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(descriptor, 0o666 & ~umask)
        encoding = None if "b" in mode else "utf-8"
        newline = None if "b" in mode else ""
        with os.fdopen(descriptor, mode, encoding=encoding, newline=newline) as file:
            yield file
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
