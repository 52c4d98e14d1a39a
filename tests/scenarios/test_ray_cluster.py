"""Ray on a real cluster: a head and worker nodes started by ``ray start`` as separate
processes, each run driven by a separate process. The model actor can only run on nodes with
the custom resource ``scorer``: one such node scores until its first results are written (the
run's own signal, not a guess from process titles), then its raylet is killed and a replacement
node takes over. So the loss always lands mid-run, however busy the machine.

Checked under load too: ``for i in 1 2; do (while :; do :; done) & done`` (two busy loops on
the 2 cores) while ``python -m pytest tests/scenarios/test_ray_cluster.py`` runs."""

from __future__ import annotations

import contextlib
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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.distributed import read_results
from tests.helpers import manifest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
IMAGES = 600
RUN_BOUND = 300  # seconds: a run that cannot finish by then has stalled
STALL = 45  # the stall test's timeout: actors starting count as no progress, so not too short
NODE_ALIVE = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print("alive:", any(n["Alive"] for n in ray.nodes() if n["NodeManagerPort"] == int(sys.argv[2])))
"""


class Cluster:
    """A head node and extra nodes, each started by ``ray start`` in its own session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.sessions: list[int] = []
        self.address = ""
        self.since = time.time() - 1  # process start times are rounded

    def start_head(self) -> None:
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self._start("--head", f"--port={port}", "--include-dashboard=false")

    def add_node(self, cpus: int = 2, resources: dict[str, float] | None = None) -> int:
        """Start another node (with these custom resources); its node-manager port names it."""
        port = _free_port()
        extra = [f"--resources={json.dumps(resources)}"] if resources else []
        self._start(f"--address={self.address}", f"--node-manager-port={port}", *extra, cpus=cpus)
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

    def lost(self, port: int) -> bool:
        """Whether Ray has marked the node dead, within a minute."""
        for _ in range(12):
            command = [sys.executable, "-c", NODE_ALIVE, self.address, str(port)]
            answer = subprocess.run(command, env=self.env, capture_output=True, timeout=60)
            if b"alive: False" in answer.stdout:  # Ray may print its own messages too
                return True
            time.sleep(5)
        return False

    def stop(self) -> None:
        """Kill every process of every node (each node's processes share its session)."""
        for _ in range(10):
            left = [p for p in psutil.process_iter() if self._started_here(p)]
            if not left:
                return
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(left, timeout=5)

    def _started_here(self, process: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error, OSError):
            return os.getsid(process.pid) in self.sessions and process.create_time() >= self.since
        return False

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
    return manifest(folder)


DRIVER = """
import contextlib, json, sys
import ray
from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.distributed import embed_with_ray, label_with_ray
what, address, photos, output, more = sys.argv[1:6]
options = {"actors": 1, "cpus_per_actor": 1, "batch_size": 8, "address": address,
           "actor_resources": {"scorer": 1}}
options.update(json.loads(more))
with contextlib.redirect_stdout(sys.stderr):  # Ray prints cluster messages on stdout
    if what == "label":
        model = MetaCLIP(synthetic.caption_ontology(), "demo")
        run = label_with_ray(model, photos, output + "-shards", dataset_folder=output, **options)
    else:
        run = embed_with_ray(MetaCLIP(None, "demo"), photos, output + "-shards", **options)
    ray.shutdown()
print(json.dumps(run.counts))
"""


def _driver(cluster: Cluster, how: str, photos: Path, output: Path, **options: Any) -> list[str]:
    if how == "cli":
        return [
            str(Path(sys.executable).with_name("autodistill-metaclip")),
            "label", "-m", "demo", str(photos), str(output), "--shards", f"{output}-shards",
            *[a for name in synthetic.class_names() for a in ("-c", name)],
            "--ray", cluster.address, "--actors", "1", "--batch-size", "8", "--json",
            "--actor-resource", "scorer=1",
        ]  # fmt: skip
    options = json.dumps(options)
    return [sys.executable, "-c", DRIVER, how, cluster.address, str(photos), str(output), options]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    lost_after: float  # seconds from the driver's start to the node's loss
    done_after: float  # seconds from the loss to the driver's exit


def _lose_node_mid_run(
    cluster: Cluster, node: int, command: list[str], folder: Path, shards: Path, cpus: int = 2
) -> Outcome:
    """Start a driver; once the actor on ``node`` (the only node it can run on) has written its
    first results, kill that node's raylet and start a replacement node; wait for the driver (at
    most ``RUN_BOUND`` seconds)."""
    out, err = folder / "driver.out", folder / "driver.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        driver = subprocess.Popen(command, env=cluster.env, stdout=stdout, stderr=stderr)
    try:
        started = time.monotonic()
        while not (shards.is_dir() and any(shards.glob("*.parquet"))):
            if driver.poll() is not None:
                pytest.fail(f"the run ended before the node was lost: {err.read_text()[-3000:]}")
            assert time.monotonic() - started < RUN_BOUND, "the actor wrote no results"
            time.sleep(0.02)
        cluster.kill_raylet(node)
        lost = time.monotonic()
        cluster.add_node(cpus=cpus, resources={"scorer": 1})  # where the actor runs again
        driver.wait(RUN_BOUND)
    finally:
        driver.kill()
        driver.wait()
    done = time.monotonic()
    return Outcome(driver.returncode, out.read_text(), err.read_text(), lost - started, done - lost)


@pytest.mark.parametrize("how", ["label", "embed", "cli", "label", "cli"])
def test_a_node_lost_mid_run_loses_and_repeats_nothing(
    cluster: Cluster, photos: Path, expected: dict[str, dict[str, str]], tmp_path: Path, how: str
) -> None:
    node = cluster.add_node(resources={"scorer": 1})
    output = tmp_path / "dataset"
    command = _driver(cluster, how, photos, output)
    run = _lose_node_mid_run(cluster, node, command, tmp_path, Path(f"{output}-shards"))
    print(f"{how}: node lost {run.lost_after:.0f} s in; done {run.done_after:.0f} s later")
    assert run.returncode == (3 if how == "cli" else 0), run.stderr[-3000:]
    counts = json.loads(run.stdout)  # stdout is only the result: Ray's messages went to stderr
    assert cluster.lost(node)  # Ray noticed, so the next trial's actors cannot be sent there

    keys = read_results(f"{output}-shards", ["key"]).column("key").to_pylist()
    assert sorted(keys) == sorted(expected) and len(keys) == IMAGES  # each exactly once
    if how == "embed":
        assert counts == {"embedded": IMAGES - 1, "failed": 1}
        return
    if how == "cli":  # its JSON also has the output and the failures
        counts = {k: n for k, n in counts.items() if k in ("labeled", "unlabeled", "failed") and n}
    assert counts == dict(Counter(row["status"] for row in expected.values()))
    remote = manifest(output)
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
    node = cluster.add_node(cpus=4, resources={"scorer": 1})
    options = {"actors": 1, "cpus_per_actor": 3, "stall_timeout": STALL}
    command = _driver(cluster, "label", photos, tmp_path / "dataset", **options)
    shards = tmp_path / "dataset-shards"
    run = _lose_node_mid_run(cluster, node, command, tmp_path, shards, cpus=2)  # too small
    print(f"stalled run failed {run.done_after:.0f} s after the node was lost")
    assert run.returncode == 1
    assert f"RuntimeError: stall_timeout: the Ray run finished no batch for {STALL} s" in run.stderr
    assert run.done_after < STALL + 60
