"""An embedding index of a folder: search, near-duplicates, clusters (``core``), saved as one
file (``storage``), exported (``export``), on faiss (``neighbours``), acted on (``dedup``).
``EmbeddingIndex`` is imported on first use."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__, submod_attrs={"core": ["EmbeddingIndex"]}
)
