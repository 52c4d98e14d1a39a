"""The examples run as shipped: the notebook top to bottom (in a kernel), and the scripts
(in-process, as ``python script.py`` would run them: a new process would add nothing)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_notebook_runs_offline_top_to_bottom(tmp_path: Path) -> None:
    notebook = nbformat.read(EXAMPLES / "metaclip.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 4  # probabilities, labelled grid, search grid, cluster sheet
    printed = "".join(o.get("text", "") for o in outputs)
    ari = float(re.search(r"adjusted Rand index against the 12 true classes: ([\d.]+)", printed)[1])
    assert ari > 0.9
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings in the notebook"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run an example script as ``__main__`` in ``tmp_path``; return what it printed."""

    def run_script(script: str) -> str:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script)])
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        return capsys.readouterr().out

    return run_script


def test_label_folder_example(run) -> None:
    out = run("label_folder.py")
    assert "60 images labelled" in out and "status: {'labeled': 60}" in out


def test_search_example(run) -> None:
    out = run("search.py")
    top = re.findall(r"^\s+[\d.]+\s+(\S+)$", out, re.MULTILINE)[:5]
    assert all("yellow_triangle" in name for name in top)
    assert Path(re.search(r"result grid: (.+)", out)[1]).is_file()
