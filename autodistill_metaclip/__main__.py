"""``python -m autodistill_metaclip``: the command line."""

from autodistill_metaclip.cli import main

main()
