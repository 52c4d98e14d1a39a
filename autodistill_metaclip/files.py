"""Writing files safely: every file this package writes appears whole or not at all."""

from __future__ import annotations

import os
import secrets
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
    ``path`` is left as it was. The new file gets the usual permissions (0666 less the umask),
    as ``open`` would give it.

    Example:
        >>> with atomic_write("out.csv", "w") as f:  # doctest: +SKIP
        ...     f.write("a,b\\n")
    """
    target = Path(path)
    temporary = target.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(8)}-{target.name}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        text = "b" not in mode
        with os.fdopen(
            descriptor, mode, encoding="utf-8" if text else None, newline="" if text else None
        ) as file:
            yield file
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
