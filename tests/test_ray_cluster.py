"""Ray on a real cluster: a head and a second node started by ``ray start`` as separate
processes, each run driven by a separate process, the second node's raylet killed mid-run."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.distributed import read_results

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
IMAGES = 600
RUN_BOUND = 300  # seconds: a run that cannot finish by then has stalled


class Cluster:
    """A head node and extra nodes, each started by ``ray start`` in its own session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.sessions: list[int] = []
        self.address = ""

    def start_head(self) -> None:
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self._start("--head", f"--port={port}", "--include-dashboard=false")

    def add_node(self, cpus: int = 2) -> int:
        """Start another node; its node-manager port names it."""
        port = _free_port()
        self._start(f"--address={self.address}", f"--node-manager-port={port}", cpus=cpus)
        return port

    def kill_raylet(self, port: int) -> None:
        raylet = self.raylet(port)
        raylet.send_signal(signal.SIGKILL)
        raylet.wait(30)

    def raylet(self, port: int) -> psutil.Process:
        for process in psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] == "raylet" and any(
                a == f"--node_manager_port={port}" for a in process.info["cmdline"] or []
            ):
                return process
        raise LookupError(f"no raylet with node manager port {port}")

    def stop(self) -> None:
        """Kill every process of every node (each node's processes share its session)."""
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(process.pid) in self.sessions:
                    process.kill()

    def _start(self, *args: str, cpus: int = 2) -> None:
        log = self.root / f"node-{len(self.sessions)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    RAY,
                    "start",
                    *args,
                    f"--num-cpus={cpus}",
                    f"--temp-dir={self.root}",
                    "--disable-usage-stats",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sessions.append(process.pid)
        assert process.wait(120) == 0, log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths live under it
    cluster = Cluster(root)
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cluster") / "photos"
    synthetic.write_folder(root, IMAGES - 1, seed=31)
    (root / "broken.png").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def expected(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """``label()``'s manifest rows on one machine, by image."""
    folder = tmp_path_factory.mktemp("local") / "dataset"
    MetaCLIP(synthetic.caption_ontology(), "demo").label(photos, None, folder, progress=False)
    return _manifest(folder)


def _manifest(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "manifest.csv", encoding="utf-8", newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


DRIVER = """
import json, sys
from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.distributed import embed_with_ray, label_with_ray
what, address, photos, output, more = sys.argv[1:6]
options = {"actors": 2, "cpus_per_actor": 1, "batch_size": 8, "address": address}
options.update(json.loads(more))
if what == "label":
    model = MetaCLIP(synthetic.caption_ontology(), "demo")
    run = label_with_ray(model, photos, output + "-shards", dataset_folder=output, **options)
else:
    run = embed_with_ray(MetaCLIP(None, "demo"), photos, output + "-shards", **options)
print(json.dumps(run.counts))
"""


def _driver(cluster: Cluster, how: str, photos: Path, output: Path, **options: Any) -> list[str]:
    if how == "cli":
        return [
            str(Path(sys.executable).with_name("autodistill-metaclip")),
            "label", "-m", "demo", str(photos), str(output), "--shards", f"{output}-shards",
            *[a for name in synthetic.class_names() for a in ("-c", name)],
            "--ray", cluster.address, "--actors", "2", "--batch-size", "8", "--json",
        ]  # fmt: skip
    options = json.dumps(options)
    return [sys.executable, "-c", DRIVER, how, cluster.address, str(photos), str(output), options]


def _start_and_lose(
    cluster: Cluster, node: int, command: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], float]:
    """Start a driver; once a model actor on ``node`` has worked, kill that node's raylet.
    The driver and the seconds from its start to the kill."""
    with open(log, "wb") as out:
        driver = subprocess.Popen(command, env=cluster.env, stdout=out, stderr=subprocess.PIPE)
    started = time.monotonic()
    raylet = cluster.raylet(node)
    while not _busy_scorer_on(raylet):
        if driver.poll() is not None:
            error = driver.communicate()[1].decode()[-3000:]
            pytest.fail(f"the run ended before the node was lost: {log.read_text()}{error}")
        assert time.monotonic() - started < 120, "no model actor worked on the second node"
        time.sleep(0.05)
    cluster.kill_raylet(node)
    return driver, time.monotonic() - started


def _busy_scorer_on(raylet: psutil.Process) -> bool:
    """Whether a model actor under this raylet has done some work (1 s of CPU)."""
    for child in raylet.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "_Scorer" in " ".join(child.cmdline()) and sum(child.cpu_times()[:2]) > 1:
                return True
    return False


@pytest.mark.parametrize("how", ["label", "embed", "cli", "label", "cli"])
def test_a_node_lost_mid_run_loses_and_repeats_nothing(
    cluster: Cluster, photos: Path, expected: dict[str, dict[str, str]], tmp_path: Path, how: str
) -> None:
    node = cluster.add_node()
    output, log = tmp_path / "dataset", tmp_path / "driver.log"
    driver, lost_after = _start_and_lose(cluster, node, _driver(cluster, how, photos, output), log)
    killed = time.monotonic()
    try:
        _, stderr = driver.communicate(timeout=RUN_BOUND)
    finally:
        driver.kill()
    print(f"{how}: node lost {lost_after:.0f} s in; done {time.monotonic() - killed:.0f} s later")
    assert driver.returncode == (3 if how == "cli" else 0), stderr.decode()[-3000:]
    stdout = log.read_text()  # the CLI's is only its JSON; Ray's messages are on stderr
    counts = json.loads(stdout if how == "cli" else stdout.splitlines()[-1])

    keys = read_results(f"{output}-shards", ["key"]).column("key").to_pylist()
    assert sorted(keys) == sorted(expected) and len(keys) == IMAGES  # each exactly once
    if how == "embed":
        assert counts == {"embedded": IMAGES - 1, "failed": 1}
        return
    remote = _manifest(output)
    assert remote.keys() == expected.keys()
    for key, row in expected.items():
        assert [remote[key][k] for k in ("status", "class", "split")] == [
            row[k] for k in ("status", "class", "split")
        ], key


def test_a_run_with_nowhere_left_to_run_fails_within_its_stall_timeout(
    cluster: Cluster, photos: Path, tmp_path: Path
) -> None:
    """The only node with CPUs enough for the model actor is lost: the run stops with an error
    naming the stall, not a wait forever."""
    node = cluster.add_node(cpus=4)
    options = {"actors": 1, "cpus_per_actor": 3, "stall_timeout": 15}
    command = _driver(cluster, "label", photos, tmp_path / "dataset", **options)
    driver, _ = _start_and_lose(cluster, node, command, tmp_path / "driver.log")
    killed = time.monotonic()
    try:
        _, stderr = driver.communicate(timeout=RUN_BOUND)
    finally:
        driver.kill()
    waited = time.monotonic() - killed
    print(f"stalled run failed {waited:.0f} s after the node was lost")
    assert driver.returncode == 1
    assert "RuntimeError: stall_timeout: the Ray run finished no batch for 15 s" in stderr.decode()
    assert waited < 15 + 60
