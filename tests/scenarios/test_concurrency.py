"""Threads sharing one model (one of them changing its ontology), and label() runs stopped
midway (Ctrl-C, SIGKILL) at a chosen image, then resumed to exactly a fresh run's dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP, synthetic
from tests.helpers import (
    COUNTS,
    ONTOLOGY,
    copies,
    embedded,
    names_in,
    opened_files,
    resume_run,
    same_as_fresh,
    write_inputs,
)


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


def test_a_result_names_the_classes_its_ids_refer_to(demo_model, demo_ontology) -> None:
    """One thread changes the ontology's order back and forth while others predict: each
    result's ids, read through its own ``classes``, give the same names as without the race."""
    images = [s.image for s in synthetic.samples(32, seed=12)]
    expected = [p.best[0] for p in demo_model.iter_predictions(images, 0.0)]
    model = MetaCLIP(demo_ontology, checkpoint="demo", batch_size=4)
    classes = dict(zip(demo_ontology.prompts(), demo_ontology.classes(), strict=True))
    reordered = CaptionOntology(dict(reversed(classes.items())))
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            model.set_ontology(reordered)
            model.set_ontology(demo_ontology)

    flipper = threading.Thread(target=flip)
    flipper.start()
    got = []
    try:  # each call races the flips; its result keeps the classes it was scored against
        for image in images:
            (prediction,) = model.iter_predictions([image], 0.0)
            got.append(prediction)
    finally:
        stop.set()
        flipper.join()
    assert [p.best[0] for p in got] == expected
    orders = {tuple(p.classes) for p in got}
    assert orders <= {tuple(demo_ontology.classes()), tuple(reordered.classes())}


STOP_AT = """
import os, signal, sys
from autodistill_metaclip import MetaCLIP
# Stop this process with {signal} when the {count}th image of the input folder is opened
# (read for decoding): the signal lands wherever the run is (encoding, copying, writing).
folder, output, how, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if how == "SIGINT":
    # A pytest started in the background (as CI or `cmd &` does) passes SIGINT on as ignored,
    # and Python then installs no handler: restore Ctrl-C's behaviour whatever started this.
    signal.signal(signal.SIGINT, signal.default_int_handler)
opened = []
def watch(event, args):
    if event == "open" and isinstance(args[0], str) and os.path.dirname(args[0]) == folder:
        opened.append(args[0])
        if len(opened) == count:
            os.kill(os.getpid(), getattr(signal, how))
sys.addaudithook(watch)
ontology = dict(arg.split("=") for arg in sys.argv[5:])
model = MetaCLIP(ontology, checkpoint="demo", batch_size=8)
model.label(folder, ".png", output, near_duplicates=0.995, progress=False)
"""


def _stop_at(how: str, count: int, source: Path, output: Path) -> subprocess.Popen:
    args = [f"{prompt}={name}" for prompt, name in ONTOLOGY.items()]
    return subprocess.Popen(
        [sys.executable, "-c", STOP_AT, str(source), str(output), how, str(count), *args],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_interrupted_label_leaves_no_partial_file_and_resumes(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    """Ctrl-C at the 300th image of 800: the embeddings made so far are kept, no copy is made
    yet (copies come after every image is embedded); the resumed run reads only the rest."""
    source = tmp_path / "in"
    write_inputs(source, {label: 200 for label in COUNTS})
    process = _stop_at("SIGINT", 300, source, tmp_path / "out")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr
    done = embedded(tmp_path / "out")
    assert 200 < len(done) < 300, "the run was not interrupted where it was stopped"
    assert not (tmp_path / "out" / "manifest.csv").exists()  # written once all is embedded
    assert copies(tmp_path / "out") == []
    # A temporary file the interrupt left can only be in this tool's own state folder ...
    left = [p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob(".partial-*")]
    assert all(p.parts[0] == ".autodistill-metaclip" for p in left), left

    with opened_files() as opened:
        resume_run(shapes_model, tmp_path)
    read = names_in(opened, source)
    assert not read & done  # nothing already labelled was read or encoded again
    assert read | done == {p.name for p in source.glob("*.png")}
    same_as_fresh(shapes_model, tmp_path)
    assert not list((tmp_path / "out").rglob(".partial-*"))  # ... and resuming removes it


def test_a_run_killed_with_sigkill_resumes_to_the_same_dataset(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    """SIGKILL (no handler runs) when the 500th of 720 images is opened: the store holds the
    embeddings kept before (in chunks of 256); resuming gives a fresh run's dataset."""
    write_inputs(tmp_path / "in", {label: 180 for label in COUNTS})
    process = _stop_at("SIGKILL", 500, tmp_path / "in", tmp_path / "out")
    process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL
    done = len(embedded(tmp_path / "out"))
    assert 256 <= done < 500, "the run was not killed where it was stopped"
    resume_run(shapes_model, tmp_path)
    same_as_fresh(shapes_model, tmp_path)
    assert not [p for p in (tmp_path / "out").rglob(".partial-*")]
    assert os.path.isfile(tmp_path / "out" / "classes.txt")
