"""Deprecated alias of :mod:`autodistill_metaclip.labeling.corrections`; removed in 0.4."""

import warnings

from autodistill_metaclip.labeling.corrections import *  # noqa: F403

warnings.warn(
    f"{__name__} is now autodistill_metaclip.labeling.corrections (the alias goes in 0.4)",
    DeprecationWarning,
    stacklevel=2,
)
