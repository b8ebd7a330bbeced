"""Near-duplicate photos with the ImageNet model and the trained one: does training on marks cost anything on
photos? The photos that ship inside scikit-image (no download), each beside the copies tests/test_join.py sweeps
for (half size, JPEG q25, an 8% crop on each side) and a few more (mirror, 15° rotation, grey): for each model the
lowest copy-to-original cosine, the highest cosine between two different photos, the margin between them (> 0:
one threshold separates copies from other photos) and R@1 of each copy among all originals.

  python bench/photo_copies.py [--recipes gem:320@efficientnet_lite0 gem:320]
"""

from __future__ import annotations

import argparse
import io
import re
import sys

import numpy as np
import skimage.data
from benchkit.recipes import spec_of
from benchkit.record import add_out_arg, record
from PIL import Image, ImageOps

from lookalike.model.loading import cached_model
from lookalike.retrieval.embedder import QueryEmbedder

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "coins",
          "colorwheel", "camera", "horse", "brick", "grass", "gravel", "page", "text", "moon", "retina")


def photo(name: str) -> Image.Image:
    data = getattr(skimage.data, name)()
    image = Image.fromarray(data[0] if isinstance(data, tuple) else data).convert("RGB")
    image.thumbnail((512, 512), Image.Resampling.BICUBIC)
    return image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


COPIES = {
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC),
    "JPEG q25": lambda im: jpeg(im, 25),
    "crop 8%": lambda im: im.crop((int(im.width * .08), int(im.height * .08), int(im.width * .92),
                                   int(im.height * .92))),
    "mirror": ImageOps.mirror,
    "rotate 15°": lambda im: im.rotate(15, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["gem:320@efficientnet_lite0", "gem:320"],
                   metavar="POOLING:SIZE[@MODEL|@URI]")
    add_out_arg(p)
    args = p.parse_args()
    originals = [photo(n) for n in PHOTOS]
    copies = [(i, kind, make(im)) for i, im in enumerate(originals) for kind, make in COPIES.items()]
    print(f"{len(PHOTOS)} scikit-image photos, {len(copies)} copies ({', '.join(COPIES)})\n")
    print(f"{'recipe':>28}  {'lowest copy':>11} {'highest other':>13} {'margin':>7} {'copy R@1':>8}  "
          "lowest copy by kind")
    figures = {}
    for recipe in args.recipes:
        embedder = QueryEmbedder(cached_model(spec_of(recipe), "cpu"))
        png = [_png(im) for im in originals] + [_png(im) for _, _, im in copies]
        vectors = np.concatenate([embedder.embed(png[i:i + 16]) for i in range(0, len(png), 16)])
        x, q = vectors[:len(originals)], vectors[len(originals):]
        own = np.asarray([i for i, _, _ in copies])
        scores = q @ x.T
        copy_scores = scores[np.arange(len(q)), own]
        others = x @ x.T
        np.fill_diagonal(others, -1)
        by_kind = {kind: copy_scores[[k == kind for _, k, _ in copies]].min() for kind in COPIES}
        r1 = float((scores.argmax(axis=1) == own).mean())
        print(f"{re.sub(r'@.*/', '@', recipe):>28}  {copy_scores.min():11.3f} {others.max():13.3f} "
              f"{copy_scores.min() - others.max():7.3f} {r1:8.3f}  "
              + ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items()))
        figures[recipe] = {"lowest_copy": float(copy_scores.min()), "highest_other": float(others.max()),
                           "margin": float(copy_scores.min() - others.max()), "copy_R@1": r1,
                           "lowest_copy_by_kind": {k: float(v) for k, v in by_kind.items()}}
    record(args, {"photos": len(PHOTOS), "copies": len(copies), "recipes": figures})
    return 0


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
