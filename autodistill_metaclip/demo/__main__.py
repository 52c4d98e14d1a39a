"""``python -m autodistill_metaclip.demo [FOLDER]``: the offline demo (see ``demo --help``)."""

from autodistill_metaclip.demo.tour import demo

demo(prog_name="python -m autodistill_metaclip.demo")
