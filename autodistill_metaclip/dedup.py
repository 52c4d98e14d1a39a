"""Deprecated alias of :mod:`autodistill_metaclip.index.dedup`; removed in 0.4."""

import warnings

from autodistill_metaclip.index.dedup import *  # noqa: F403

warnings.warn(
    f"{__name__} is now autodistill_metaclip.index.dedup (the alias goes in 0.4)",
    DeprecationWarning,
    stacklevel=2,
)
