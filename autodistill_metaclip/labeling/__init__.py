"""``label()``: a folder of images -> a classification dataset every trainer reads, with its
review page and human corrections. ``label_folder`` is imported on first use."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={"run": ["label_folder"]})
