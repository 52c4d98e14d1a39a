"""The ``autodistill-metaclip`` command (also ``python -m autodistill_metaclip``): one module
per command group, each command a library call plus rendering (:mod:`.runner`).

Every command runs offline on the bundled demo model with ``-m demo``.
"""

import click

from autodistill_metaclip.cli.embed import embed
from autodistill_metaclip.cli.index import cluster, dedup, index, search
from autodistill_metaclip.cli.info import demo, list_checkpoints
from autodistill_metaclip.cli.label import label
from autodistill_metaclip.cli.predict import predict
from autodistill_metaclip.cli.review import evaluate, fix, review
from autodistill_metaclip.cli.runner import PARTIAL

__all__ = ["PARTIAL", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="autodistill-metaclip")
def main() -> None:
    """MetaCLIP for zero-shot classification, embeddings, search and dataset labelling.

    Every command runs offline on the bundled demo model with -m demo. Exit codes: 0 done,
    1 error, 2 bad usage, 3 done but some inputs could not be read (listed).
    """


for _command in (
    predict, label, embed, index, search, dedup, cluster, review, fix, evaluate, list_checkpoints,
    demo,
):  # fmt: skip
    main.add_command(_command)
