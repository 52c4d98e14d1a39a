"""MetaCLIP for Autodistill: zero-shot classification, embeddings and dataset labelling.

The public names are listed once, in ``__init__.pyi``, and imported on first use
(``lazy_loader``), so ``import autodistill_metaclip`` (and the command line's ``--help``) does
not load torch.
"""

from importlib.metadata import PackageNotFoundError, version

import lazy_loader

try:
    __version__ = version("autodistill-metaclip")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__getattr__, __dir__, _lazy = lazy_loader.attach_stub(__name__, __file__)
__all__ = [*_lazy, "__version__"]
