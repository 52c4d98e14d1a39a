"""What the streaming API yields: statuses, one prediction's views of itself, a gathered
embedding stream. Built by hand here, so every expected value is written out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv

from autodistill_metaclip.results import Embedding, Prediction, Status, gather

CLASSES = ["cat", "dog", "bird", "fish"]


def _prediction(threshold: float = 0.5, error: Exception | None = None) -> Prediction:
    if error is not None:
        empty = np.zeros(0, np.int64)
        return Prediction(
            3, "x.png", CLASSES, empty, empty.astype(np.float32), threshold, error=error
        )
    return Prediction(
        3, "x.png", CLASSES, np.array([1, 0, 3, 2]),
        np.array([0.5, 0.25, 0.125, 0.125], np.float32), threshold,
    )  # fmt: skip


def test_status_values() -> None:
    assert [s.value for s in Status] == ["labeled", "unlabeled", "failed", "embedded"]
    assert str(Status.LABELED) == "labeled" and f"{Status.FAILED}" == "failed"
    assert Status("unlabeled") is Status.UNLABELED
    assert Status.EMBEDDED == "embedded"  # a str: compares with the manifest's cells
    assert json.dumps({"status": Status.LABELED}) == '{"status": "labeled"}'


@pytest.mark.parametrize(
    ("threshold", "status", "kept"),
    [
        (0.0, Status.LABELED, [1, 0, 3, 2]),
        (0.125, Status.LABELED, [1, 0, 3, 2]),  # at or above: the threshold itself is kept
        (0.25, Status.LABELED, [1, 0]),
        (0.5, Status.LABELED, [1]),
        (0.75, Status.UNLABELED, []),
        (1.0, Status.UNLABELED, []),
    ],
)
def test_status_and_classifications_follow_the_threshold(threshold, status, kept) -> None:
    prediction = _prediction(threshold)
    assert prediction.status is status
    classifications = prediction.classifications
    assert isinstance(classifications, sv.Classifications)
    assert classifications.class_id.tolist() == kept
    assert classifications.confidence.tolist() == [0.5, 0.25, 0.125, 0.125][: len(kept)]


def test_best_and_top_ignore_the_threshold() -> None:
    prediction = _prediction(threshold=0.9)
    assert prediction.best == ("dog", 0.5)
    assert prediction.top() == [("dog", 0.5), ("cat", 0.25), ("fish", 0.125)]
    assert prediction.top(1) == [("dog", 0.5)]
    assert prediction.top(10) == [("dog", 0.5), ("cat", 0.25), ("fish", 0.125), ("bird", 0.125)]


def test_to_dict() -> None:
    assert _prediction(0.25).to_dict() == {
        "image": "x.png",
        "status": "labeled",
        "predictions": [
            {"class": "dog", "confidence": 0.5, "passed": True},
            {"class": "cat", "confidence": 0.25, "passed": True},
        ],
        "top": [
            {"class": "dog", "confidence": 0.5, "passed": True},
            {"class": "cat", "confidence": 0.25, "passed": True},
            {"class": "fish", "confidence": 0.125, "passed": False},
        ],
        "threshold": 0.25,
    }
    unlabeled = _prediction(0.75).to_dict(top=2)
    assert unlabeled["status"] == "unlabeled" and unlabeled["predictions"] == []
    assert [t["class"] for t in unlabeled["top"]] == ["dog", "cat"]
    assert json.loads(json.dumps(unlabeled)) == unlabeled  # plain JSON data


def test_a_failed_prediction() -> None:
    prediction = _prediction(error=ValueError("'x.png': empty (0 bytes)"))
    assert prediction.status is Status.FAILED
    with pytest.raises(ValueError, match=r"input\[3\] has no prediction: 'x.png': empty"):
        _ = prediction.best
    assert prediction.top() == []
    assert len(prediction.classifications) == 0
    assert prediction.to_dict() == {
        "image": "x.png",
        "status": "failed",
        "error": "'x.png': empty (0 bytes)",
    }


def test_gather_splits_a_stream_into_vectors_and_failures() -> None:
    unit = np.eye(3, dtype=np.float32)
    stream = [
        Embedding(0, "a", unit[0]),
        Embedding(1, "b", error=ValueError("broken")),
        Embedding(2, "c", unit[2]),
        Embedding(3, "d"),  # neither a vector nor an error
    ]
    gathered = gather(iter(stream), 3)
    assert gathered.indices == [0, 2]
    np.testing.assert_array_equal(gathered.vectors, [[1, 0, 0], [0, 0, 1]])
    assert gathered.vectors.dtype == np.float32
    assert list(gathered.failures) == [1, 3]
    assert str(gathered.failures[1]) == "broken" and str(gathered.failures[3]) == "no embedding"
    empty = gather([], 64)
    assert empty.indices == [] and empty.vectors.shape == (0, 64) and empty.failures == {}
