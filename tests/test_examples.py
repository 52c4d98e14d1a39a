"""The examples run as shipped: the notebook top to bottom, and the scripts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat

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


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_label_folder_example() -> None:
    out = _run("label_folder.py")
    assert "60 images labelled" in out and "status: {'labeled': 60}" in out


def test_search_example() -> None:
    out = _run("search.py")
    top = re.findall(r"^\s+[\d.]+\s+(\S+)$", out, re.MULTILINE)[:5]
    assert all("yellow_triangle" in name for name in top)
    assert Path(re.search(r"result grid: (.+)", out)[1]).is_file()
