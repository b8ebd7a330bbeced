"""Index a folder of images and search it from Python: the nightly run in this process (no Spark needed for a
small folder), then searches by image, by catalogue id and by vector against the published index.

    python examples/search_a_folder.py [FOLDER] [--store STORE]

Without a FOLDER it indexes 24 drawn marks; the store defaults to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lookalike

from drawn_marks import write_marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="a folder of images (default: 24 drawn marks)")
    parser.add_argument("--store", help="the store folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-example-"))
    folder = Path(args.folder) if args.folder else work / "marks"
    if not args.folder:
        write_marks(folder)
    store = args.store or str(work / "store")

    report = lookalike.reindex(lookalike.ReindexConfig.of(str(folder), store, "marks", master="in-process"))
    print(f"indexed {report['images']['indexed']} images as marks/{report['latest']['after']} ({report['status']})")

    index = lookalike.open_index(store, "marks")
    query = sorted(folder.iterdir())[0]
    print(f"images like {query.name}:")
    for hit in index.search(query, k=3):  # verified: the score is the cosine plus the inliers' bonus
        print(f"  {hit.rank}. {hit.image_id}  score {hit.score:.3f} (cosine {hit.cosine:.3f}, {hit.inliers} inliers)")

    first_id = index.search(query, k=1)[0].image_id
    print(f"catalogue images like {first_id} (itself left out):")
    for hit in index.search_ids(first_id, k=3):
        print(f"  {hit.rank}. {hit.image_id}  score {hit.score:.3f}")

    vector = index.embed(query)[0]
    print(f"by its vector ({len(vector)} numbers): {index.search_vectors(vector, k=1)[0].image_id}")


if __name__ == "__main__":
    main()
