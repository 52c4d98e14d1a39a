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
    stored = nbformat.read(EXAMPLES / "metaclip.ipynb", as_version=4)
    assert len(pictures_in(stored)) == 4, "the notebook is stored with its outputs"
    notebook = nbformat.read(EXAMPLES / "metaclip.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert len(pictures_in(notebook)) == 4  # probabilities, labelled grid, search, clusters
    printed = "".join(o.get("text", "") for o in outputs)
    ari = float(re.search(r"adjusted Rand index against the 12 true classes: ([\d.]+)", printed)[1])
    assert ari > 0.9
    warned = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    note = "checkpoint 'demo' is a tiny model trained only on synthetic coloured shapes"
    assert warned.count(note) == 1, warned  # once per process, then never again
    others = [line for line in warned.splitlines() if line.strip() and note not in line]
    assert not [line for line in others if not line.startswith(" ")], warned  # (source lines)


def pictures_in(notebook: nbformat.NotebookNode) -> list[dict]:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]


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
