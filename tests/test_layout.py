"""The tree shows the architecture: every module is short and listed, with its role, on the
docs' architecture page (the layers themselves are import-linter's contract, run by CI)."""

from __future__ import annotations

import re
from pathlib import Path

import autodistill_metaclip

PACKAGE = Path(autodistill_metaclip.__file__).parent
PAGE = Path(__file__).parents[1] / "docs" / "architecture.md"
MAX_LINES = 450


def _modules() -> list[str]:
    return sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if not path.name.startswith("__")
    )


def _listed() -> set[str]:
    """The modules named in the page's tree: indentation gives the package of each name."""
    tree = re.search(r"^autodistill_metaclip/\n(.*?)^```", PAGE.read_text(), re.S | re.M)
    assert tree is not None, "docs/architecture.md lost its tree"
    listed, packages = set(), {}
    for line in tree[1].splitlines():
        depth = (len(line) - len(line.lstrip())) // 2
        names = line.strip().split("  ")[0]  # the role follows after two spaces or more
        if names.endswith("/"):
            packages[depth] = names
        elif ".py" in names:
            prefix = "".join(packages[d] for d in range(1, depth))
            listed |= {prefix + name for name in re.findall(r"\w+\.py", names)}
    return listed


def test_every_module_is_listed_on_the_architecture_page() -> None:
    modules = _modules()
    assert len(modules) > 40
    assert sorted(_listed()) == modules


def test_no_module_is_longer_than_450_lines() -> None:
    lengths = {m: len((PACKAGE / m).read_text().splitlines()) for m in _modules()}
    assert {m: n for m, n in lengths.items() if n > MAX_LINES} == {}
