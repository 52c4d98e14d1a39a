"""The README's quick start and tables are what the code and benchmarks say."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_quick_start_is_the_example_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    body = example.split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert (tmp_path / "image.png").is_file()
    assert out[0].endswith(" red circle")
    assert float(out[1]) > 0.3


def test_readme_shows_the_latest_benchmark_tables() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for table in ("throughput.md", "ray_throughput.md", "review_page.md", "index_scale.md"):
        assert (ROOT / "benchmarks" / "results" / table).read_text(
            encoding="utf-8"
        ).strip() in readme
