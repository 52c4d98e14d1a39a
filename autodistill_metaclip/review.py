"""Deprecated alias of :mod:`autodistill_metaclip.labeling.review`; removed in 0.4."""

import warnings

from autodistill_metaclip.labeling.review import *  # noqa: F403

warnings.warn(
    f"{__name__} is now autodistill_metaclip.labeling.review (the alias goes in 0.4)",
    DeprecationWarning,
    stacklevel=2,
)
