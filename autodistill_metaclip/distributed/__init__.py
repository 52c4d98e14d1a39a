"""Label and embed very large image collections with Ray Data.

``pip install "autodistill-metaclip[ray]"``. The pipeline:

1. list the images of a local folder or filesystem URI (:mod:`autodistill_metaclip.inputs.sources`,
   the same listing as ``label()``);
2. ``map_batches`` into a pool of actors that each build the model once from its
   :class:`~autodistill_metaclip.model.ModelSpec` and run its public streaming API
   (``iter_predictions`` / ``iter_embeddings``: threads decode while the model encodes);
3. write parquet shards: ``key, path, stamp, status, class, confidence, error`` (and
   ``embedding``);
4. optionally, assemble the same folder dataset and ``manifest.csv`` as ``label()``.

Bad images become ``failed`` rows, never a failed job. Ray retries the work of an actor that
dies, or of a node that is lost; the shards are then checked to hold every image exactly once.
A run that makes no progress for ``stall_timeout`` seconds (its work has nowhere left to run)
fails with an error instead of waiting forever (Ray Data's no-progress guard).
"""

from autodistill_metaclip.distributed.pipeline import (
    RayOptions,
    RayRun,
    embed_with_ray,
    label_with_ray,
    ray_session,
)
from autodistill_metaclip.distributed.shards import read_results, store_from_results

__all__ = [
    "RayOptions",
    "RayRun",
    "embed_with_ray",
    "label_with_ray",
    "ray_session",
    "read_results",
    "store_from_results",
]
