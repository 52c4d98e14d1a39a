"""Deprecated alias of :mod:`autodistill_metaclip.index.neighbours`; removed in 0.4."""

import warnings

from autodistill_metaclip.index.neighbours import *  # noqa: F403

warnings.warn(
    f"{__name__} is now autodistill_metaclip.index.neighbours (the alias goes in 0.4)",
    DeprecationWarning,
    stacklevel=2,
)
