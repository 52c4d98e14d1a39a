"""``checkpoints``, and ``demo`` (defined with the demo, :mod:`autodistill_metaclip.demo.tour`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from autodistill_metaclip.cli.runner import command
from autodistill_metaclip.demo.tour import demo
from autodistill_metaclip.engine import checkpoints

__all__ = ["demo", "list_checkpoints"]


@click.command("checkpoints")
@click.option("--markdown", is_flag=True, help="The checkpoint table in Markdown.")
@command
def list_checkpoints(markdown: bool) -> Any:
    """List the MetaCLIP checkpoints.

    \b
    Example:
      autodistill-metaclip checkpoints --json
    """
    rows = [asdict(c) for c in checkpoints.CHECKPOINTS]
    if markdown:
        return rows, checkpoints.markdown_table(), 0
    text = "\n".join(
        f"{c.name:22} {c.architecture:30} {c.pretrained:26} "
        f"{'' if c.imagenet_top1 is None else c.imagenet_top1:>5} {c.params_m:>8,.1f}M {c.license}"
        for c in checkpoints.CHECKPOINTS
    )
    return rows, text, 0
