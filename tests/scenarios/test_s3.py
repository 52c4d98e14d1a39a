"""s3:// sources against a real S3-compatible server (moto's, on 127.0.0.1, started here),
configured exactly as the recipe in docs/inputs.md says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from tests.helpers import manifest

pytest.importorskip("s3fs")
server_module = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A bucket ``photos`` holding six demo images under ``shots/``; the variables to reach it."""
    import boto3

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"KEY_ID": "test-key", "SECRET_KEY": "test-secret", "ENDPOINT": f"http://{host}:{port}"}
    client = boto3.client(
        "s3", endpoint_url=env["ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=env["KEY_ID"], aws_secret_access_key=env["SECRET_KEY"],
    )  # fmt: skip
    client.create_bucket(Bucket="photos")
    for name in ("red circle", "blue square"):
        for n in range(3):
            image = synthetic.make_image(*name.split(), seed=n)
            path = tmp_path_factory.mktemp("upload") / "image.png"
            image.save(path)
            client.upload_file(str(path), "photos", f"shots/{name.replace(' ', '_')}_{n}.png")
    yield env
    server.stop()


def _recipe() -> list[str]:
    root = next(p for p in Path(__file__).parents if (p / "mkdocs.yml").is_file())
    page = (root / "docs" / "inputs.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- s3 recipe.*?-->\n```bash\n(.*?)```", page, re.S)
    assert block, "the S3 recipe of docs/inputs.md is missing"
    return block[1].strip().splitlines()


def test_the_readme_recipe_works_as_written(bucket: dict[str, str], tmp_path: Path) -> None:
    lines = _recipe()
    assert lines[0].startswith("pip install")  # installed here already: the dev extras have s3fs
    script = "set -euo pipefail\n" + "\n".join(lines[1:])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    path = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env={**clean, **bucket, "PATH": path},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = manifest(tmp_path / "dataset")
    assert len(rows) == 6 and all(r["status"] == "labeled" for r in rows.values())
    assert {r["class"] for r in rows.values()} == {"red circle", "blue square"}
    assert all(r["class"].replace(" ", "_") in k for k, r in rows.items())


def test_label_and_index_from_s3_in_python(bucket, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bucket["KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bucket["SECRET_KEY"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", bucket["ENDPOINT"])
    model = MetaCLIP(
        {"a photo of a red circle": "red circle", "a photo of a blue square": "blue square"},
        checkpoint="demo",
    )
    dataset = model.label("s3://photos/shots", ".png", tmp_path / "out", progress=False)
    assert len(dataset) == 6
    index = EmbeddingIndex.build(model, "s3://photos/shots", progress=False)
    (hit, *_) = index.search(model, "s3://photos/shots/red_circle_1.png", k=1)
    assert hit.path == "s3://photos/shots/red_circle_1.png" and hit.score > 0.999
    prediction = model.predict("s3://photos/shots/blue_square_0.png", confidence=0.5)
    assert model.classes[int(prediction.class_id[0])] == "blue square"
