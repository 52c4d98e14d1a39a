"""Ray Data labelling and embedding on a local Ray instance, against the single-machine path."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.distributed import (
    embed_with_ray,
    label_with_ray,
    read_results,
    store_from_results,
)
from tests.helpers import manifest, run_cli

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray") / "photos"
    synthetic.write_folder(root, 90, seed=12)
    synthetic.write_folder(root / "nested", 6, seed=13, suffix=".jpg")
    (root / "broken.png").write_text("not an image")
    (root / "empty.jpg").write_bytes(b"")
    return root


def test_same_answers_as_label(demo_model: MetaCLIP, photos: Path, tmp_path: Path) -> None:
    run = label_with_ray(
        demo_model,
        str(photos),
        str(tmp_path / "shards"),
        actors=2,
        cpus_per_actor=0.5,
        batch_size=16,
        embeddings=True,
        dataset_folder=tmp_path / "ray-dataset",
        recursive=True,
    )
    demo_model.label(photos, None, tmp_path / "local", recursive=True, progress=False)
    local, remote = manifest(tmp_path / "local"), manifest(tmp_path / "ray-dataset")
    assert local.keys() == remote.keys() and len(local) == 98
    for key, row in local.items():
        assert {k: remote[key][k] for k in ("status", "class", "split")} == {
            k: row[k] for k in ("status", "class", "split")
        }, key
    assert run.counts == dict(Counter(r["status"] for r in local.values()))
    assert "not an image file" in remote["broken.png"]["error"]
    assert "empty" in remote["empty.jpg"]["error"]

    table = read_results(str(tmp_path / "shards")).to_pylist()
    assert sorted(r["key"] for r in table) == sorted(local)
    good = [r for r in table if r["status"] != "failed"]
    paths = [r["path"] for r in good]
    expected = demo_model.predict(paths, confidence=0.0)
    for row, result in zip(good, expected, strict=True):
        assert row["class"] == demo_model.classes[result.class_id[0]]
        assert abs(row["confidence"] - float(result.confidence[0])) < 1e-5
    np.testing.assert_allclose(
        np.array([r["embedding"] for r in good]), demo_model.embed_image(paths), atol=1e-5
    )
    assert sorted(Path(p).name for p in run.dataset.image_paths) == sorted(
        Path(k).name for k, r in local.items() if r["status"] == "labeled"
    )


def test_embed_from_a_uri_source(demo_model: MetaCLIP, photos: Path, tmp_path: Path) -> None:
    """A file:// URI is listed as the local folder it is (the output can be kept out of it)."""
    run = embed_with_ray(
        MetaCLIP(None, "demo"),
        photos.as_uri(),
        str(tmp_path / "vectors"),
        cpus_per_actor=1,
        batch_size=32,
    )
    table = read_results(str(tmp_path / "vectors")).to_pylist()
    assert run.counts == {"embedded": 96, "failed": 2}
    failed = {r["key"]: r["error"] for r in table if r["status"] == "failed"}
    assert set(failed) == {"broken.png", "empty.jpg"}
    assert failed["broken.png"].startswith(f"'{photos / 'broken.png'}': not an image file")
    rows = [r for r in table if r["status"] == "embedded"]
    np.testing.assert_allclose(
        np.array([r["embedding"] for r in rows]),
        demo_model.embed_image([photos / r["key"] for r in rows]),
        atol=1e-5,
    )
    # the shards become an embedding store that opens as an index, nothing embedded again
    store_from_results(str(tmp_path / "vectors"), tmp_path / "store")
    index = EmbeddingIndex.open(tmp_path / "store", demo_model)
    assert index.keys == sorted(r["key"] for r in rows)
    hit = index.search(demo_model, photos / rows[0]["key"], k=1)[0]
    assert hit.path == photos / rows[0]["key"] and hit.score > 0.999
    # under their stamps: only the two unreadable files are tried again
    assert index.update(demo_model, progress=False) == {
        "added": 0, "changed": 0, "removed": 0, "failed": 2
    }  # fmt: skip


def test_refusals(demo_model: MetaCLIP, photos: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "old.parquet").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        label_with_ray(demo_model, str(photos), str(tmp_path / "taken"))
    with pytest.raises(FileExistsError, match=r"output_folder: .*taken.* is not empty"):
        label_with_ray(
            demo_model, str(photos), str(tmp_path / "shards"), dataset_folder=tmp_path / "taken"
        )
    assert not (tmp_path / "shards").exists()  # refused before any work
    with pytest.raises(ValueError, match="leave no CPU for Ray's other tasks"):
        label_with_ray(demo_model, str(photos), str(tmp_path / "out"), actors=2)
    for never in (0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="stall_timeout: expected seconds > 0"):
            embed_with_ray(demo_model, str(photos), str(tmp_path / "out"), stall_timeout=never)
    with pytest.raises(ValueError, match="needs one"):
        label_with_ray(MetaCLIP(None, "demo"), str(photos), str(tmp_path / "out"))


def test_cli_ray(photos: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(
        "label", "-m", "demo", photos, tmp_path / "ds", "-c", "red circle", "-c", "blue square",
        "--ray", "--json",
    )  # fmt: skip
    assert code == 3, out  # done, with two unreadable images
    data = json.loads(out)
    assert data["labeled"] + data["unlabeled"] == 90 and data["failed"] == 2
    assert (tmp_path / "ds-shards").is_dir() and (tmp_path / "ds" / "manifest.csv").is_file()
    code, out, _ = run_cli("embed", "-m", "demo", photos, "--ray", "-o", tmp_path / "emb", "--json")
    assert code == 3 and json.loads(out)["embedded"] == 96  # recursive
    code, _, err = run_cli("embed", photos, "--ray", "-o", tmp_path / "x", "--stall-timeout", "inf")
    assert code == 2  # refused before any work
    assert "--stall-timeout: expected seconds > 0, but got inf" in err


def _scorers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if "_Scorer" in " ".join(p.info["cmdline"] or [])
    ]


def _busy_scorer(ignore: set[int]) -> psutil.Process | None:
    """A model actor process of this run that has done some work (0.5 s of CPU)."""
    for process in _scorers():
        with contextlib.suppress(psutil.Error):
            if process.pid not in ignore and sum(process.cpu_times()[:2]) > 0.5:
                return process
    return None


def test_killed_actor_is_replaced_and_every_image_is_written_once(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    synthetic.write_folder(folder, 2000, seed=21)
    model = MetaCLIP(synthetic.caption_ontology(), "demo")
    killed: list[int] = []
    survivors: set[int] = set()
    done = threading.Event()
    earlier = {p.pid for p in _scorers()}  # none are left by earlier runs, but be sure

    def kill_one_actor() -> None:
        while not done.is_set():
            process = _busy_scorer(earlier)
            if process is not None and not killed:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signal.SIGKILL)
                    killed.append(process.pid)
            elif process is not None and process.pid not in killed:
                survivors.add(process.pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    try:
        run = label_with_ray(model, str(folder), str(tmp_path / "shards"), batch_size=4)
    finally:
        done.set()
        killer.join()
    assert killed, "no actor was running to be killed"
    assert survivors, "no replacement actor did any work"
    keys = read_results(str(tmp_path / "shards"), ["key"]).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 2000
    assert sum(run.counts.values()) == 2000
