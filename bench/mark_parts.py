"""A part of a composite mark: do the proposed parts (image/parts.py, what `POST /parts`, `lookalike parts` and
the page's part buttons offer) separate a device from its words, and does searching the device alone find it?

  catalogue  every simple-icons logo (~3,470), embedded with the recipe
  queries    composite marks made of a test brand's logo and its name in bold letters, side by side and stacked
             (brands the shipped model was never trained on); each one's right answer is its brand's logo

For each composite: whether a proposed part covers the logo (IoU >= 0.5) and one of kind `text` covers the name,
and where the brand's logo ranks (exact search) when the query is the whole composite, the largest proposed
figure part (what a one-click search without looking would take), the proposed part that overlaps the logo most
(what an examiner picks from the list) and the logo's own box (the best a crop can do).

  python bench/mark_parts.py
  python bench/mark_parts.py --recipe gem:320@efficientnet_lite0 --split all
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from benchkit.recipes import embed_all, exact, spec_of, training_split_of
from benchkit.record import add_out_arg, record
from PIL import Image, ImageDraw, ImageFont

from lookalike.dev.datasets import simple_icons_catalogue
from lookalike.image.budget import DecodeLimits
from lookalike.image.crop import Crop, cropped
from lookalike.image.parts import propose_parts

LOGO, GAP, MARGIN, LETTERS = 200, 40, 30, 64  # pixels: the logo's side, between logo and name, around, letter size
LAYOUTS = ("beside", "below")
DEPTH = 10


def composite(logo: Image.Image, name: str, layout: str) -> tuple[Image.Image, tuple, tuple]:
    """The logo and its name on white, and each one's box in pixels."""
    logo = logo.convert("RGBA")
    logo.thumbnail((LOGO, LOGO))
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), name, font=font)
    text_w, text_h = probe[2] - probe[0], probe[3] - probe[1]
    if layout == "beside":
        size = (2 * MARGIN + logo.width + GAP + text_w, 2 * MARGIN + max(logo.height, text_h))
        logo_at = (MARGIN, (size[1] - logo.height) // 2)
        text_at = (MARGIN + logo.width + GAP, (size[1] - text_h) // 2)
    else:
        size = (2 * MARGIN + max(logo.width, text_w), 2 * MARGIN + logo.height + GAP + text_h)
        logo_at = ((size[0] - logo.width) // 2, MARGIN)
        text_at = ((size[0] - text_w) // 2, MARGIN + logo.height + GAP)
    image = Image.new("RGB", size, "white")
    image.paste(logo, logo_at, logo)
    draw = ImageDraw.Draw(image)
    draw.text((text_at[0] - probe[0], text_at[1] - probe[1]), name, font=font, fill=(20, 24, 34))
    logo_box = (*logo_at, logo_at[0] + logo.width, logo_at[1] + logo.height)
    return image, logo_box, (*text_at, text_at[0] + text_w, text_at[1] + text_h)


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"):
        if Path(path).exists():
            return ImageFont.truetype(path, LETTERS)
    return ImageFont.load_default(size=LETTERS)


def iou(a: tuple, b: tuple) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--recipe", default="gem:320", metavar="POOLING:SIZE[@MODEL|@URI]")
    p.add_argument("--split", default="test", choices=("test", "all"),
                   help="the brands the composites are made of (test: never trained on)")
    p.add_argument("--weights-store", default=None, help="where a relative @URI of the recipe is read from")
    add_out_arg(p)
    args = p.parse_args()
    data = Path(args.data)
    catalogue = pq.read_table(simple_icons_catalogue(data, limit=None))
    slugs, titles, uris = (catalogue[c].to_pylist() for c in ("image_id", "title", "uri"))
    chosen = [i for i, s in enumerate(slugs) if args.split == "all" or training_split_of(s) == "test"]
    print(f"{len(chosen)} brands x {len(LAYOUTS)} layouts against {len(slugs):,} simple-icons logos", flush=True)

    t0 = time.perf_counter()
    limits = DecodeLimits()
    queries: dict[str, list[bytes]] = {"whole composite": [], "largest figure part": [], "best proposed part": [],
                                       "the logo's own box": []}
    relevant, covered, named, proposed = [], [], [], []
    work = Path(data) / "mark-parts"
    work.mkdir(parents=True, exist_ok=True)
    for i in chosen:
        for layout in LAYOUTS:
            image, logo_box, text_box = composite(Image.open(uris[i]), titles[i], layout)
            data_png = png(image)
            parts = propose_parts(data_png, limits)
            w, h = image.size
            boxes = [(p.crop[0] * w, p.crop[1] * h, p.crop[2] * w, p.crop[3] * h) for p in parts]
            overlaps = [iou(b, logo_box) for b in boxes]
            covered.append(bool(overlaps) and max(overlaps) >= 0.5)
            named.append(any(p.kind == "text" and iou(b, text_box) >= 0.5 for p, b in zip(parts, boxes, strict=True)))
            proposed.append(len(parts))
            figures = [p for p in parts if p.kind == "figure"]
            largest = Crop.of(figures[0].crop) if figures else None
            best = Crop.of(parts[int(np.argmax(overlaps))].crop) if parts else None
            own = Crop(logo_box[0] / w, logo_box[1] / h, logo_box[2] / w, logo_box[3] / h)
            queries["whole composite"].append(data_png)
            for name, crop in (("largest figure part", largest), ("best proposed part", best),
                               ("the logo's own box", own)):
                queries[name].append(cropped(data_png, crop, limits) if crop else data_png)
            relevant.append(i)
    print(f"composites made and their parts proposed in {time.perf_counter() - t0:.0f} s", flush=True)

    spec = spec_of(args.recipe, args.weights_store)
    x = embed_all(spec, uris)
    relevant_rows = np.array(relevant)
    figures: dict = {"composites": len(relevant),
                     "logo covered by a part (IoU >= 0.5)": round(float(np.mean(covered)), 3),
                     "name found as a text part (IoU >= 0.5)": round(float(np.mean(named)), 3),
                     "parts proposed, median": float(np.median(proposed)), "searches": {}}
    for name, images in queries.items():
        paths = []
        for k, content in enumerate(images):
            path = work / f"{name.replace(' ', '-').replace(chr(39), '')}-{k}.png"
            path.write_bytes(content)
            paths.append(str(path))
        ids, _ = exact(x, embed_all(spec, paths), DEPTH)
        rank = np.where(ids == relevant_rows[:, None], np.arange(1, DEPTH + 1), DEPTH + 1).min(axis=1)
        figures["searches"][name] = {"R@1": round(float((rank <= 1).mean()), 3),
                                     "R@10": round(float((rank <= DEPTH).mean()), 3)}
        print(f"  {name:22s} {figures['searches'][name]}", flush=True)
    figures |= {"recipe": args.recipe, "split": args.split, "seconds": round(time.perf_counter() - t0, 1)}
    print({k: v for k, v in figures.items() if k != "searches"}, flush=True)
    record(args, figures, table(figures))
    return 0


def table(figures: dict) -> str:
    out = ["| query | R@1 | R@10 |", "|---|---|---|"]
    out += [f"| {name} | {f['R@1']:.3f} | {f['R@10']:.3f} |" for name, f in figures["searches"].items()]
    out.append(f"\n{figures['composites']} composites of `{figures['split']}` brands (`{figures['recipe']}`): a "
               f"proposed part covers the logo in {figures['logo covered by a part (IoU >= 0.5)']:.1%} of them, and "
               f"the name is found as a text part in {figures['name found as a text part (IoU >= 0.5)']:.1%}.")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
