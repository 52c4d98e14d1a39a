"""``embed``: exactly the file it reports, or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip import synthetic
from tests.helpers import run_cli


def test_embed_writes_exactly_the_file_it_reports(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    synthetic.write_folder(photos, 24, seed=6)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, _ = run_cli(
        "embed", "-m", "demo", photos, "-t", "a red circle", "-o", out_dir / "v.npz", "--json"
    )
    assert code == 0 and json.loads(out)["output"] == str(out_dir / "v.npz")
    with np.load(out_dir / "v.npz") as saved:
        assert saved["embeddings"].shape == (25, 64)
        assert str(saved["inputs"][-1]) == "text:a red circle"
    code, out, _ = run_cli("embed", "-m", "demo", "-t", "a red circle", "-o", out_dir / "v.npy")
    assert code == 0 and out.strip().endswith(f"-> {out_dir / 'v.npy'}")
    assert np.load(out_dir / "v.npy").shape == (1, 64)
    code, _, err = run_cli("embed", "-m", "demo", "-t", "x", "-o", out_dir / "v.txt")
    assert code == 2 and "-o" in err and ".npy" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["v.npy", "v.npz"]
    code, out, _ = run_cli("embed", "-m", "demo", "-t", "a blue square", "--json")
    vector = np.array(json.loads(out)["embeddings"][0])
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-4


def test_embed_needs_something_to_embed() -> None:
    code, out, err = run_cli("embed", "-m", "demo")
    assert code == 2 and out == "" and "give images and/or texts" in err


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the kernel's CPU flags")
def test_a_cpu_with_bf16_instructions_gets_a_hint_unless_precision_is_chosen(
    tmp_path: Path,
) -> None:
    synthetic.make_image("red", "circle").save(tmp_path / "a.png")
    flags = set(Path("/proc/cpuinfo").read_text().split())
    has_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    code, _, err = run_cli("embed", "-m", "demo", "--device", "cpu", tmp_path / "a.png")
    assert code == 0
    assert ("hint: this CPU has bf16 instructions" in err) == has_bf16, err
    assert "--precision bf16" in err or not has_bf16
    code, _, err = run_cli("embed", "-m", "demo", "--precision", "fp32", tmp_path / "a.png")
    assert code == 0 and "hint:" not in err
