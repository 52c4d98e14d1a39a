"""Embeddings kept once (``store``, of ``segments`` files) and what is derived from them: an
index of a folder (``core``) with search on faiss (``neighbours``), near-duplicate groups
(``groups``), clusters (``clusters``), saved as one file (``storage``), exported (``export``),
acted on (``dedup``). The names 0.2 had here (``EmbeddingIndex``, ``Hit``, ``Cluster``,
``Clustering``, ``model_info``) are imported on first use."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "core": ["EmbeddingIndex", "Hit", "model_info"],
        "clusters": ["Cluster", "Clustering"],
    },
)
