"""Whole jobs: each refuses bad arguments when it is made, before any model is loaded or file
written (a checkpoint that does not exist shows that nothing was loaded); run() does the work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.distributed import RayOptions
from autodistill_metaclip.errors import CheckpointError
from autodistill_metaclip.jobs import EmbedJob, EvaluateJob, LabelJob, write_embeddings
from autodistill_metaclip.labeling.options import LabelOptions
from autodistill_metaclip.model import ModelSpec
from tests.helpers import hand_labelled, manifest

CLASSES = {"a photo of a red circle": "red circle", "a photo of a blue square": "blue square"}
NOWHERE = ModelSpec(ontology=CLASSES, checkpoint="no-such-checkpoint")
"""A spec that cannot be built: a job made from it has loaded nothing."""


def test_a_label_job_is_checked_when_made(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    with pytest.raises(ValueError, match="ontology: label\\(\\) needs one, but none was given"):
        LabelJob(ModelSpec(checkpoint="no-such-checkpoint"), source, out)
    with pytest.raises(
        ValueError, match="resume: not available on Ray; run again with overwrite=True"
    ):
        LabelJob(NOWHERE, source, out, options=LabelOptions(resume=True), ray=RayOptions())
    with pytest.raises(ValueError, match=r"input_folder: '.*nothing' does not exist"):
        LabelJob(NOWHERE, str(tmp_path / "nothing"), out)
    job = LabelJob(NOWHERE, source, out)  # fine: nothing loaded yet
    assert job.options == LabelOptions() and job.ray is None
    with pytest.raises(CheckpointError, match="no-such-checkpoint"):
        job.run()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_a_label_job_labels_here(tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 6, seed=3)
    options = LabelOptions(confidence=0.0, progress=False, review=False)
    spec = ModelSpec(ontology=CLASSES, checkpoint="demo")
    run = LabelJob(spec, str(tmp_path / "in"), str(tmp_path / "out"), options=options).run()
    assert run.summary["labeled"] == 6 and len(run.dataset) == 6
    assert len(manifest(tmp_path / "out")) == 6 and not (tmp_path / "out" / "review.html").exists()


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({}, "images: give images and/or texts to embed"),
        ({"images": ["a.png"], "output": "vectors.txt"}, r"output: expected .*\.npy or \.npz"),
        ({"images": ["a.png"], "output": "vectors"}, r"output: expected .*\.npy or \.npz"),
        ({"images": ["a", "b"], "output": "o", "ray": RayOptions()}, "ray: embeds one folder"),
        ({"images": ["a"], "ray": RayOptions()}, "ray: embeds one folder"),
        ({"images": ["a"], "texts": ["t"], "output": "o", "ray": RayOptions()}, "ray: embeds"),
    ],
)
def test_an_embed_job_is_checked_when_made(arguments: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmbedJob(NOWHERE, **arguments)


def test_an_embed_job_writes_the_file_it_is_given(demo_model: MetaCLIP, tmp_path: Path) -> None:
    images = [str(p) for p in synthetic.write_folder(tmp_path / "in", 3, seed=1)]
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    spec = ModelSpec(checkpoint="demo")
    inputs = [*images, str(tmp_path / "in" / "broken.png")]
    done = EmbedJob(spec, inputs, ["a red circle"], output=str(tmp_path / "v.npz")).run()
    assert done.output == str(tmp_path / "v.npz") and done.dim == 64
    assert done.inputs == [*images, "text:a red circle"]
    assert [path for path, _ in done.errors] == [str(tmp_path / "in" / "broken.png")]
    assert "not an image file" in done.errors[0][1]
    with np.load(tmp_path / "v.npz") as saved:
        assert sorted(saved.files) == ["embeddings", "inputs"]
        assert saved["inputs"].tolist() == done.inputs
        np.testing.assert_allclose(
            saved["embeddings"][:3], demo_model.embed_image(images), atol=1e-6
        )
        np.testing.assert_allclose(
            saved["embeddings"][3], demo_model.embed_text("a red circle"), atol=1e-6
        )
    only_text = EmbedJob(spec, texts=["a", "b"], output=str(tmp_path / "t.NPY")).run()
    assert only_text.errors == [] and np.load(tmp_path / "t.NPY").shape == (2, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "t.NPY", "v.npz"]
    returned = EmbedJob(spec, texts=["a"]).run()
    assert returned.output is None and returned.vectors.shape == (1, 64)


def test_write_embeddings_replaces_a_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "v.npy"
    path.write_bytes(b"an older file")
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert write_embeddings(path, ["a", "b"], vectors) == path
    np.testing.assert_array_equal(np.load(path), vectors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]  # no temporary file left


def test_an_evaluate_job_is_checked_when_made(tmp_path: Path) -> None:
    hand_labelled(tmp_path / "truth", 4, seed=1)
    with pytest.raises(
        ValueError, match="ontology: scoring a hand-labelled folder needs the classes"
    ):
        EvaluateJob(str(tmp_path / "truth"))
    with pytest.raises(ValueError, match="ontology: scoring"):
        EvaluateJob(str(tmp_path / "truth"), ModelSpec(checkpoint="no-such-checkpoint"))
    with pytest.raises(ValueError, match="against: an ontology may not be named 'classes'"):
        EvaluateJob(str(tmp_path / "truth"), NOWHERE, against={"classes": CLASSES})
    job = EvaluateJob(str(tmp_path / "truth"), NOWHERE, against={"other": CLASSES})
    assert not job.is_dataset
    with pytest.raises(CheckpointError, match="no-such-checkpoint"):
        job.run()


def test_an_evaluate_job_scores_a_folder_or_reports_on_a_dataset(
    demo_dataset: Path, tmp_path: Path
) -> None:
    truth = tmp_path / "truth"
    for name in CLASSES.values():
        (truth / name).mkdir(parents=True)
        for seed in range(2):
            synthetic.make_image(*name.split(), seed=seed).save(truth / name / f"{seed}.png")
    spec = ModelSpec(ontology=CLASSES, checkpoint="demo")
    other = {"a red circle": "red circle", "a blue square": "blue square"}
    first, second = EvaluateJob(str(truth), spec, against={"plain": other}).run()
    assert (first.name, second.name) == ("demo", "plain")  # the classes given, by checkpoint
    assert first.accuracy == 1.0 and int(first.confusion.sum()) == 4

    job = EvaluateJob(str(demo_dataset))  # a dataset written by label(): no classes needed
    assert job.is_dataset
    report = job.run()
    labelled = sum(r["status"] == "labeled" for r in manifest(demo_dataset).values())
    assert report["total"] == {"labeled": labelled, "reassigned": 0, "excluded": 0, "kept": 1.0}
