"""The one batched engine behind ``MetaCLIP.iter_embeddings`` (and so every batch API).

Worker threads decode and preprocess images (Pillow and torchvision release the GIL) while the
calling thread runs the model on the previous batch. Results stream out in input order with a
bounded number of images in flight, so memory does not grow with the number of inputs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any, NamedTuple, TypeVar

import torch

from autodistill_metaclip.engine.encoder import Encoder
from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.results import Embedding

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
T = TypeVar("T")
R = TypeVar("R")


def encode_images(
    encoder: Encoder,
    sources: Iterable[Any],
    *,
    batch_size: int,
    workers: int = DEFAULT_WORKERS,
    keep_data: bool = False,
) -> Generator[Embedding, None, None]:
    """Embed images in batches of ``batch_size`` readable images, yielding in input order.

    Inputs that cannot be read (:class:`ImageLoadError`) or are no image at all (``TypeError``)
    are yielded with that error instead of raising. A run of bad inputs with no readable one
    before it is yielded at once, not held until a batch fills. ``keep_data`` keeps each
    image's encoded bytes in its result.
    """

    def prepare(source: Any) -> Prepared | Exception:
        try:
            pixels, data = encoder.prepare(source)
        except (ImageLoadError, TypeError) as e:
            return e
        return Prepared(pixels, data if keep_data else None)

    pending: list[tuple[int, Any, Prepared | Exception]] = []
    readable = 0
    prepared = prefetch(prepare, sources, workers=workers, depth=2 * batch_size)
    with closing(prepared):
        for index, (source, result) in enumerate(prepared):
            pending.append((index, source, result))
            readable += isinstance(result, Prepared)
            if readable == batch_size or not readable:
                yield from _flush(encoder, pending)
                pending, readable = [], 0
        yield from _flush(encoder, pending)


class Prepared(NamedTuple):
    """One image ready for the model: its pixels, and its encoded bytes if kept."""

    pixels: torch.Tensor
    data: bytes | None


def _flush(
    encoder: Encoder, pending: list[tuple[int, Any, Prepared | Exception]]
) -> Iterator[Embedding]:
    tensors = [r.pixels for _, _, r in pending if isinstance(r, Prepared)]
    embeddings = iter(encoder.encode_pixels(torch.stack(tensors)) if tensors else [])
    for index, source, result in pending:
        if isinstance(result, Exception):
            yield Embedding(index, source, error=result)
        else:
            yield Embedding(index, source, vector=next(embeddings), data=result.data)


def prefetch(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int, depth: int
) -> Generator[tuple[T, R], None, None]:
    """``(item, fn(item))`` in order, computed by ``workers`` threads at most ``depth`` ahead.

    Stopping early (an exception, ``KeyboardInterrupt`` or closing the generator) cancels the
    work not yet started.
    """
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="metaclip-load")
    queue: deque[tuple[T, Future[R]]] = deque()

    def submit_next() -> None:
        for item in iterator:
            queue.append((item, pool.submit(fn, item)))
            return

    try:
        for _ in range(max(1, depth)):
            submit_next()
        while queue:
            item, future = queue.popleft()
            submit_next()
            yield item, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
