"""The docs say what the code does: every ```python block of every page in docs/ runs, page by
page and in order, offline, on the bundled demo model; the quick start is the example; the
tables are what the benchmarks measured and what the checkpoint data say."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import runpy
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autodistill_metaclip.engine.checkpoints import markdown_table

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:(.*?)-->\s*")
SNIPPET = re.compile(r'^--8<-- "([^"]+)"[ \t]*$', re.M)
TABLES = sorted((ROOT / "benchmarks" / "results").glob("*.md"))


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # the reason given in <!-- not run: REASON --> just above, if any


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]  # the line just above
        marker = NOT_RUN.fullmatch(above)
        line = text.count("\n", 0, match.start()) + 1
        reason = None if marker is None else marker[1].strip()
        found.append(Block(page, line, match[1], match[2], reason))
    return found


def python_pages() -> list[Path]:
    return [p for p in PAGES if any(b.language == "python" for b in blocks(p))]


def name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def resolved(page: Path) -> str:
    """The page as the docs build shows it: pymdownx.snippets lines replaced by the files."""
    return SNIPPET.sub(
        lambda m: (ROOT / m[1]).read_text(encoding="utf-8"), page.read_text(encoding="utf-8")
    )


# --- what each page's examples promise, checked after they ran (cwd: where they ran) ------


def _index(ns: dict[str, Any], out: str) -> None:
    assert Path("image.png").is_file()
    assert "missing.png failed:" in out and "image.png labeled red circle" in out
    assert ns["by_example"].classes[ns["by_example"].predict("image.png").class_id[0]] == (
        "red circle"
    )


def _labelling(ns: dict[str, Any], out: str) -> None:
    from autodistill_metaclip.labeling.manifest import read_manifest

    rows = read_manifest("dataset/manifest.csv")
    assert len(rows) == 60 and len(ns["dataset"]) > 0
    for name in ("classes.txt", "review.html", "train", "valid", "test", ".autodistill-metaclip"):
        assert (Path("dataset") / name).exists(), name
    assert (Path("dataset-val") / "val").is_dir() and not (Path("dataset-val") / "valid").exists()
    assert len(read_manifest("dataset-val/manifest.csv")) == 66  # resumed with 6 new images
    assert "did you mean 'confidence'?" in out


def _review(ns: dict[str, Any], out: str) -> None:
    from autodistill_metaclip.labeling.manifest import read_manifest

    decided = {k: r["decided"] for k, r in read_manifest("dataset/manifest.csv").items()}
    assert sorted(v for v in decided.values() if v) == ["excluded", "human"]
    assert Path("dataset/review.html").is_file()
    assert "accuracy" in out and "recall per class" in out


def _inputs(ns: dict[str, Any], out: str) -> None:
    assert "input[1]: 'missing.png': file not found" in out
    assert Path("from-memory/manifest.csv").is_file()


def _checkpoints(ns: dict[str, Any], out: str) -> None:
    assert "['b32-400m', 'b32-fullcc']" in out and "ViT-B-32-quickgelu" in out


def _search(ns: dict[str, Any], out: str) -> None:
    for path in ("photos.npz", "photos.parquet", "duplicates/moves.csv", "search.png"):
        assert Path(path).is_file(), path
    assert Path("clusters.png").is_file() and Path("db").is_dir()
    assert "yellow_triangle" in out.split("\n", 1)[0]


def _ray(ns: dict[str, Any], out: str) -> None:
    from autodistill_metaclip.distributed import read_results

    assert ns["run"].counts == {"labeled": 24}
    assert read_results("shards").num_rows == 24 and Path("dataset/manifest.csv").is_file()


def _speed(ns: dict[str, Any], out: str) -> None:
    assert 0.99 < float(out.split()[0]) < 1.0  # close to the exact decoding, not equal


def _troubleshooting(ns: dict[str, Any], out: str) -> None:
    assert out.startswith("ontology ontology: iter_predictions() needs one")


PROMISES: dict[str, Callable[[dict[str, Any], str], None]] = {
    "index.md": _index,
    "labelling.md": _labelling,
    "review.md": _review,
    "inputs.md": _inputs,
    "checkpoints.md": _checkpoints,
    "search.md": _search,
    "ray.md": _ray,
    "speed.md": _speed,
    "troubleshooting.md": _troubleshooting,
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No name lookups but of this machine's own names: nothing can reach the internet."""
    lookup = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(text)
            return lookup(host, *args, **kwargs)
        if text in ("", "None", "localhost", socket.gethostname()):
            return lookup(host, *args, **kwargs)
        raise OSError(f"the docs examples must run offline, but one looked up {text!r}")

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(variable, "1")


@contextlib.contextmanager
def ray_stopped() -> Iterator[None]:
    """A page that starts a local Ray (``address=None``) leaves none behind for other tests."""
    try:
        yield
    finally:
        ray = __import__("sys").modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


@pytest.mark.parametrize("page", python_pages(), ids=name)
def test_every_python_block_of_the_page_runs(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    offline: None,
) -> None:
    assert name(page) in PROMISES, f"say what the examples of {name(page)} promise"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with ray_stopped():
        for block in blocks(page):
            if block.language != "python" or block.not_run is not None:
                continue
            # blank lines first: a traceback names the page's own line numbers
            source = "\n" * block.line + block.code
            exec(compile(source, f"{page}", "exec"), namespace)
        out = capsys.readouterr().out
        PROMISES[name(page)](namespace, out)


def test_blocks_that_do_not_run_say_why() -> None:
    skipped = [b for p in PAGES for b in blocks(p) if b.not_run is not None]
    for block in skipped:
        assert block.not_run, f"{name(block.page)}:{block.line}: <!-- not run: --> needs a reason"
        assert block.language == "python", f"{name(block.page)}:{block.line}: only python runs"
    for page in PAGES:  # a marker with no block after it would hide nothing
        text = page.read_text(encoding="utf-8")
        assert text.count("<!-- not run:") == sum(1 for b in blocks(page) if b.not_run), page


def test_every_page_is_in_the_site_and_the_api_pages_render_objects() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES:
        assert f" {name(page)}" in config, f"{name(page)} is not in mkdocs.yml's nav"
    for page in (DOCS / "api").glob("*.md"):
        assert "::: autodistill_metaclip." in page.read_text(encoding="utf-8"), page


def test_quick_start_is_the_example_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    body = example.split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text(encoding="utf-8")
    assert body in (DOCS / "index.md").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert (tmp_path / "image.png").is_file()
    assert out[0].endswith(" red circle")
    assert float(out[1]) > 0.3


def test_docs_show_the_latest_benchmark_tables() -> None:
    where = {
        "throughput.md": ["speed.md"],
        "cpu_bf16.md": ["speed.md"],
        "label_scale.md": ["speed.md", "labelling.md"],
        "ray_throughput.md": ["speed.md", "ray.md"],
        "review_page.md": ["speed.md", "review.md"],
        "index_scale.md": ["speed.md", "search.md"],
        "split_stats.md": ["speed.md", "labelling.md"],
    }
    assert sorted(where) == [t.name for t in TABLES], "say where a new table is shown"
    for table in TABLES:
        measured = table.read_text(encoding="utf-8").strip()
        for page in where[table.name]:
            assert measured in resolved(DOCS / page), f"{table.name} is not in {page}"
    for page in PAGES:  # included, never copied: a copy would not follow a new measurement
        text = page.read_text(encoding="utf-8")
        for table in TABLES:
            header = table.read_text(encoding="utf-8").strip().splitlines()[0]
            assert header not in text, f"{name(page)} copies {table.name}; include it"


def test_the_checkpoints_page_holds_the_table_from_the_data() -> None:
    assert markdown_table() in (DOCS / "checkpoints.md").read_text(encoding="utf-8")
