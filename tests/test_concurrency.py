"""Threads sharing one model, and a label() run interrupted with Ctrl-C, then resumed."""

from __future__ import annotations

import csv
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip import MetaCLIP, synthetic


def test_threads_sharing_a_model_get_the_serial_results(demo_model: MetaCLIP) -> None:
    images = [s.image for s in synthetic.samples(48, seed=21)]
    serial = [demo_model.predict(image, confidence=0.0) for image in images]
    chunks = [images[i::6] for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        # Half the threads send single images, half send lists.
        futures = [
            pool.submit(lambda c: [demo_model.predict(i, confidence=0.0) for i in c], chunk)
            if n % 2
            else pool.submit(demo_model.predict, chunk, 0.0)
            for n, chunk in enumerate(chunks)
        ]
        parallel = [f.result() for f in futures]
    for n, chunk_results in enumerate(parallel):
        for k, result in enumerate(chunk_results):
            expected = serial[n + 6 * k]
            assert result.class_id.tolist() == expected.class_id.tolist()
            np.testing.assert_allclose(result.confidence, expected.confidence, atol=1e-5)


LABEL = """
import itertools, os, signal, sys
from autodistill.detection import CaptionOntology
from autodistill_metaclip import MetaCLIP, synthetic
# A pytest started in the background (as CI or `cmd &` does) passes SIGINT on as ignored, and
# Python then installs no handler: restore Ctrl-C's behaviour whatever started this process.
signal.signal(signal.SIGINT, signal.default_int_handler)
model = MetaCLIP(CaptionOntology(synthetic.caption_ontology()), checkpoint="demo", batch_size=8)
# A real SIGINT, as Ctrl-C sends, raised when the 300th image is being decoded: it lands in the
# main thread wherever it happens to be (encoding, copying, writing the manifest).
loaded = itertools.count()
decode = model._encoder.prepare
def prepare(source):
    if next(loaded) == 300:
        os.kill(os.getpid(), signal.SIGINT)
    return decode(source)
model._encoder.prepare = prepare
model.label(sys.argv[1], ".png", sys.argv[2], progress=False)
"""


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_interrupted_label_leaves_no_partial_file_and_resumes(
    demo_model: MetaCLIP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in"
    synthetic.write_folder(source, 800, suffix=".png", seed=8)
    output = tmp_path / "out"
    process = subprocess.run(
        [sys.executable, "-c", LABEL, str(source), str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode != 0 and "KeyboardInterrupt" in process.stderr
    manifest = output / "manifest.csv"

    done = {row["image"] for row in _rows(manifest)}
    assert 200 < len(done) < 800, "the run was not interrupted midway"
    splits = ("train", "valid", "test")
    written = [p for s in splits for p in (output / s).rglob("*") if p.is_file()]
    assert not written  # copies are made after every image is predicted (phase 3)
    assert not [p for p in written if p.name.startswith(".partial-")]
    for path in written:  # every image file present is complete
        assert path.read_bytes() == (source / path.name).read_bytes()

    loaded: list[str] = []
    original = demo_model._encoder.prepare

    def recording(image):
        loaded.append(Path(image.location).name)
        return original(image)

    monkeypatch.setattr(demo_model._encoder, "prepare", recording)
    dataset = demo_model.label(source, ".png", output, resume=True, progress=False)
    assert not set(loaded) & done  # nothing already labelled was read or encoded again
    assert set(loaded) | done == {p.name for p in source.glob("*.png")}

    rows = _rows(manifest)
    assert sorted(r["image"] for r in rows) == sorted(p.name for p in source.glob("*.png"))
    monkeypatch.undo()
    fresh = demo_model.label(source, ".png", tmp_path / "fresh", progress=False)
    assert {(r["image"], r["status"], r["class"], r["split"]) for r in rows} == {
        (r["image"], r["status"], r["class"], r["split"])
        for r in _rows(tmp_path / "fresh" / "manifest.csv")
    }
    assert len(dataset) == len(fresh)
