"""The README's commands and examples do what the README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quick_start_is_the_example_and_runs(tmp_path: Path) -> None:
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    body = example.split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text(encoding="utf-8")
    out = _run([str(ROOT / "examples" / "quickstart.py")], tmp_path).splitlines()
    assert (tmp_path / "image.png").is_file()
    assert out[0].endswith(" red circle")
    assert float(out[1]) > 0.3


def test_demo_command_labels_offline(tmp_path: Path) -> None:
    out = _run(["-m", "autodistill_metaclip.demo", str(tmp_path)], tmp_path)
    labelled, total, correct = map(
        int, re.search(r"(\d+) of (\d+) images labelled, (\d+) correctly", out).groups()
    )
    assert total == 60 and labelled >= 57 and correct >= 0.95 * labelled
    for split in ("train", "valid", "test"):
        assert any((tmp_path / "labeled" / split).rglob("*.jpg"))
    assert (tmp_path / "labeled" / "manifest.csv").is_file()
    assert "b32-fullcc" in out


def test_readme_shows_the_latest_benchmark_tables() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for table in ("throughput.md", "ray_throughput.md"):
        assert (ROOT / "benchmarks" / "results" / table).read_text(
            encoding="utf-8"
        ).strip() in readme
