"""Embed a few images into numpy arrays in memory, with no store, index or Spark, and compare them: the vectors are
the ones `lookalike embed` writes with the same model, unit length, so a dot product is their cosine similarity.

    python examples/embed_to_numpy.py [IMAGE ...]

Without images it embeds a few drawn marks.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import lookalike

from drawn_marks import write_marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", help="image paths or URIs (default: 6 drawn marks)")
    args = parser.parse_args()
    images = args.images or [str(p) for p in write_marks(Path(tempfile.mkdtemp()))[::4]]

    vectors = lookalike.embed_images(images)  # the bundled default model, on a GPU if one is visible
    print(f"{len(images)} images → vectors of shape {vectors.shape}, {vectors.dtype}")
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    a, b = np.unravel_index(np.argmax(similarity), similarity.shape)
    print(f"most alike: {Path(images[a]).name} and {Path(images[b]).name} (cosine {similarity[a, b]:.3f})")


if __name__ == "__main__":
    main()
