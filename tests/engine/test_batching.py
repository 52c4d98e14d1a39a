"""The streaming engine behind every batch API: order, errors as values, laziness, bounds."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autodistill_metaclip import ImageLoadError, MetaCLIP, synthetic
from autodistill_metaclip.engine.batching import prefetch


def test_stream_yields_one_result_per_input_in_order(demo_model: MetaCLIP, tmp_path: Path) -> None:
    samples = list(synthetic.samples(10, seed=3))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    inputs: list = [s.image for s in samples[:4]] + [broken] + [s.image for s in samples[4:]]
    inputs.insert(2, str(tmp_path / "missing.png"))
    predictions = list(demo_model.iter_predictions(inputs, confidence=0.5))
    assert [p.index for p in predictions] == list(range(12))
    assert [p.source is i for p, i in zip(predictions, inputs, strict=True)] == [True] * 12
    assert [p.status for p in predictions].count("failed") == 2
    assert isinstance(predictions[2].error, ImageLoadError)
    assert "missing.png" in str(predictions[2].error) and "broken.jpg" in str(predictions[5].error)
    good = [p for p in predictions if p.error is None]
    truth = [s.label for s in samples]
    assert [p.best[0] for p in good] == truth  # the demo model knows these shapes
    for p in good:
        assert p.classes == demo_model.classes and p.probabilities.sum() == pytest.approx(
            1, abs=1e-5
        )
        assert p.status == ("labeled" if p.probabilities[0] >= 0.5 else "unlabeled")
    with pytest.raises(ValueError, match=r"input\[2\] has no prediction"):
        _ = predictions[2].best


def test_strict_apis_are_the_stream_raising_at_the_first_error(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    images = [s.image for s in synthetic.samples(5, seed=9)]
    vectors = np.stack([e.vector for e in demo_model.iter_embeddings(images)])
    np.testing.assert_allclose(demo_model.embed_image(images), vectors, atol=1e-6)
    with pytest.raises(ImageLoadError, match=r"input\[3\]: .*nothing\.png"):
        demo_model.embed_image([*images[:3], tmp_path / "nothing.png"])
    with pytest.raises(ImageLoadError, match=r"^'[^']*nothing\.png': file not found"):
        demo_model.predict(tmp_path / "nothing.png")


def test_stream_reads_lazily_and_at_most_two_batches_ahead(demo_model: MetaCLIP) -> None:
    demo_model.batch_size = 4
    pulled = itertools.count()

    def endless() -> Iterator[Image.Image]:
        for sample in synthetic.samples(10**9, seed=1):  # a generator with no end
            next(pulled)
            yield sample.image

    try:
        stream = demo_model.iter_embeddings(endless())
        first = [next(stream) for _ in range(5)]
        assert [e.index for e in first] == [0, 1, 2, 3, 4]
        # Read so far: the two batches encoded to yield five results, and two batches ahead.
        assert next(pulled) <= 2 * 4 + 2 * 4
        stream.close()
    finally:
        demo_model.batch_size = 32


def test_prefetch_keeps_order_and_stops_when_closed() -> None:
    started: list[int] = []

    def slow_square(x: int) -> int:
        started.append(x)
        return x * x

    results = prefetch(slow_square, range(100), workers=3, depth=5)
    assert [next(results) for _ in range(4)] == [(0, 0), (1, 1), (2, 4), (3, 9)]
    results.close()
    assert len(started) <= 4 + 5  # nothing beyond the read-ahead was started
    assert list(prefetch(slow_square, [], workers=2, depth=4)) == []


def test_an_input_of_the_wrong_type_is_one_error_not_the_end(demo_model: MetaCLIP) -> None:
    images = [s.image for s in synthetic.samples(2, seed=5)]
    results = list(demo_model.iter_predictions([images[0], None, images[1]]))
    assert [r.status for r in results] == ["labeled", "failed", "labeled"]
    assert isinstance(results[1].error, TypeError) and "NoneType" in str(results[1].error)
    with pytest.raises(TypeError, match=r"input\[1\]: .*NoneType"):
        demo_model.predict([images[0], None])


def test_bad_inputs_come_out_without_waiting_for_a_full_batch(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    pulled = itertools.count()

    def inputs() -> Iterator[object]:
        for i in itertools.count():
            next(pulled)
            yield tmp_path / f"missing-{i}.png"  # nothing readable, ever

    stream = demo_model.iter_embeddings(inputs())
    first = [next(stream) for _ in range(3)]
    assert all(isinstance(e.error, ImageLoadError) for e in first)
    assert next(pulled) <= 3 + 2 * demo_model.batch_size + 1
    stream.close()


def test_a_failing_strict_call_leaves_no_thread_decoding(demo_model: MetaCLIP, tmp_path: Path):
    images = [s.image for s in synthetic.samples(40, seed=2)]
    with pytest.raises(ImageLoadError):
        demo_model.embed_image([tmp_path / "missing.png", *images])
    assert not [t for t in threading.enumerate() if t.name.startswith("metaclip-load")]
