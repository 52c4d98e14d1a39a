"""Index a folder, then search it by text and by image, and find near-duplicates.

python examples/search.py                        # offline: synthetic shapes, demo model
python examples/search.py photos/ "a dog on a beach" --checkpoint b32-fullcc
"""

import argparse
import tempfile
from pathlib import Path

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, plots, synthetic

parser = argparse.ArgumentParser(description="Search a folder of images with MetaCLIP.")
parser.add_argument("folder", nargs="?", help="default: 120 synthetic shape images")
parser.add_argument("query", nargs="?", default="a photo of a yellow triangle")
parser.add_argument("--checkpoint", default="demo")
args = parser.parse_args()

work = Path(tempfile.mkdtemp())
folder = Path(args.folder) if args.folder else work / "images"
if not args.folder:
    synthetic.write_folder(folder, 120)

model = MetaCLIP(None, checkpoint=args.checkpoint)
index = EmbeddingIndex.build(model, folder)
index.save(work / "index.npz")  # later: EmbeddingIndex.load(path, model).update(model)

print(f"Top 5 for {args.query!r}:")
hits = index.search(model, args.query, k=5)
for hit in hits:
    print(f"  {hit.score:.3f}  {hit.path.name}")
print(f"Most similar to {hits[0].path.name}:")
for hit in index.search(model, hits[0].path, k=4)[1:]:
    print(f"  {hit.score:.3f}  {hit.path.name}")
groups = index.duplicates(threshold=0.98)
print(f"{len(groups)} groups of near-duplicates at cosine >= 0.98")
plots.save(plots.search_grid(hits, query=args.query), work / "search.png")
print("result grid:", work / "search.png")
