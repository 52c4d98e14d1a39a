"""Label a folder of images into a classification dataset.

python examples/label_folder.py                 # offline: synthetic shapes, demo model
python examples/label_folder.py photos/ out/ --checkpoint b32-fullcc   # your own images
"""

import argparse
import csv
import tempfile
from collections import Counter
from pathlib import Path

from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP, synthetic

parser = argparse.ArgumentParser(description="Label a folder of images with MetaCLIP.")
parser.add_argument("input_folder", nargs="?", help="default: 60 synthetic shape images")
parser.add_argument("output_folder", nargs="?", help="default: a temporary folder")
parser.add_argument("--checkpoint", default="demo")
args = parser.parse_args()

work = Path(tempfile.mkdtemp())
source = Path(args.input_folder) if args.input_folder else work / "images"
if not args.input_folder:
    synthetic.write_folder(source, 60, suffix=".jpg")
output = Path(args.output_folder) if args.output_folder else work / "dataset"

# For your own images, write your own captions: {"a photo of a dog": "dog", ...}
ontology = CaptionOntology(synthetic.caption_ontology())
model = MetaCLIP(ontology, checkpoint=args.checkpoint)
dataset = model.label(source, extension=None, output_folder=output, confidence=0.5, seed=0)

with open(output / "manifest.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
print(f"{len(dataset)} images labelled into {output}")
print("status:", dict(Counter(r["status"] for r in rows)))
print("classes:", dict(Counter(r["class"] for r in rows if r["status"] == "labeled")))
for row in rows:
    if row["status"] == "failed":
        print("failed:", row["image"], row["error"])
