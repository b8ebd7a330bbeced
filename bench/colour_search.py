"""Shape, colour, or both: does colour_weight rank a brand's same-colour rendition first, and what does it cost the
shape ranking? Through the product's path: the embed job keeps each logo's colours, the index keeps them, and
`Index.search(..., colour_weight=w)` weighs the query's against each shortlisted logo's.

  catalogue  every simple-icons logo in its brand colour (~3,470), and each test brand's logo once more in the
             opposite hue (black or grey brands: blue)
  queries    each test brand's logo redrawn in its brand colour at another size and margin (brands the shipped
             model was never trained on); two right answers each: the same-colour logo and the other-colour one

For each colour_weight: how often the same-colour logo ranks above the other-colour one, how often either is at
rank 1 (the brand found), and how often both are in the top 10 (the shape still finds the recolouring).

  python bench/colour_search.py
  python bench/colour_search.py --weights 0 0.5 1
"""

from __future__ import annotations

import argparse
import colorsys
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from benchkit.recipes import training_split_of
from benchkit.record import add_out_arg, record

import lookalike
from lookalike.core.spark import IN_PROCESS
from lookalike.dev.datasets import drawing_colour, logo_variant, simple_icons_catalogue
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig

DEPTH = 10
ACHROMATIC = "1F6FD0"  # the other colour of a black or grey brand


def other_colour(hex_colour: str) -> str:
    """The brand colour's opposite hue, at its saturation and value."""
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (0, 2, 4))
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if s < 0.25 or v < 0.2:
        return ACHROMATIC
    return "".join(f"{round(c * 255):02X}" for c in colorsys.hsv_to_rgb((h + 0.5) % 1.0, s, max(v, 0.5)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    add_out_arg(p)
    args = p.parse_args()
    data = Path(args.data)
    simple = pq.read_table(simple_icons_catalogue(data, limit=None))
    slugs, hexes, uris = (simple[c].to_pylist() for c in ("image_id", "brand_hex", "uri"))
    test = [i for i, s in enumerate(slugs) if training_split_of(s) == "test" and hexes[i]]
    rows = {"image_id": list(slugs), "uri": list(uris)}
    queries, same, other = [], [], []
    for i in test:
        brand = drawing_colour(hexes[i])
        recoloured = logo_variant(data, slugs[i], other_colour(brand), size=256, margin=0.1)
        rows["image_id"].append(f"{slugs[i]}@other")
        rows["uri"].append(str(recoloured.resolve()))
        queries.append(str(logo_variant(data, slugs[i], brand, size=200, margin=0.3).resolve()))
        same.append(slugs[i])
        other.append(f"{slugs[i]}@other")
    print(f"{len(queries)} test brands; catalogue {len(rows['image_id']):,} logos", flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lookalike-colour-") as tmp:
        table = Path(tmp) / "catalogue.parquet"
        pq.write_table(pa.table(rows), table)
        store = str(Path(tmp) / "store")
        embed.run(EmbedConfig(images=str(table), store=store, master=IN_PROCESS))
        index_build.run(BuildIndexConfig(store=store, name="logos", master=IN_PROCESS, publish=True))
        index = lookalike.open_index(store, "logos", cache_dir=str(Path(tmp) / "cache"))
        print(f"embedded and indexed in {time.perf_counter() - t0:.0f} s", flush=True)
        results = {}
        for w in args.weights:
            hits = index.search(queries, k=DEPTH, verify=False, colour_weight=w)
            ranks = [{h.image_id: h.rank for h in row} for row in hits]
            first = np.array([r.get(s, DEPTH + 1) < r.get(o, DEPTH + 1) for r, s, o in zip(ranks, same, other,
                                                                                           strict=True)])
            found = np.array([min(r.get(s, DEPTH + 1), r.get(o, DEPTH + 1)) == 1 for r, s, o in
                              zip(ranks, same, other, strict=True)])
            both = np.array([s in r and o in r for r, s, o in zip(ranks, same, other, strict=True)])
            results[f"colour_weight {w:g}"] = {"same colour above the other": round(float(first.mean()), 3),
                                              "brand at rank 1": round(float(found.mean()), 3),
                                              "both renditions in the top 10": round(float(both.mean()), 3)}
            print(f"  colour_weight {w:g}: {results[f'colour_weight {w:g}']}", flush=True)
    figures = {"queries": len(queries), "catalogue": len(rows["image_id"]), "verify": False, "results": results,
               "seconds": round(time.perf_counter() - t0, 1)}
    record(args, figures, table_of(figures))
    return 0


def table_of(figures: dict) -> str:
    out = ["| colour_weight | same colour ranked above the other | brand at rank 1 | both renditions in the top 10 |",
           "|---|---|---|---|"]
    for name, f in figures["results"].items():
        out.append(f"| {name.removeprefix('colour_weight ')} | {f['same colour above the other']:.3f} | "
                   f"{f['brand at rank 1']:.3f} | {f['both renditions in the top 10']:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
