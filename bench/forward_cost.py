"""What an input size, multi-scale recipe or model costs in forward passes, side by side in one run: the default
model's (or a named one's) forward-only img/s on batches of 32 through the engine's own forward (channels-last,
the engine's allocator setting), recipes interleaved round by round, and each recipe's cost as a multiple of
the first's.

Recipes are bench/quality.py's (POOLING:SIZE[:SCALES][@MODEL|@URI][~WHITENING]), read by its `spec_of`.

  python bench/forward_cost.py                                   # 224 px, 320 px, 224 px at 3 scales
  python bench/forward_cost.py --recipes gem:224 gem:288 gem:320 --rounds 5
  python bench/forward_cost.py --recipes gem:320@efficientnet_lite0 gem:320    # the ImageNet model vs the default
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from benchkit.recipes import spec_of
from benchkit.record import add_out_arg, record

from lookalike.embed.engine import EmbeddingEngine
from lookalike.model.loading import load_model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["gem:224", "gem:320", "gem:224:1.414,1,0.707"])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--batches", type=int, default=3, help="timed batches of 32 per recipe and round")
    add_out_arg(p)
    args = p.parse_args()
    engines = {r: EmbeddingEngine(load_model(spec_of(r))) for r in args.recipes}
    rates: dict[str, list[float]] = {r: [] for r in args.recipes}
    print(f"forward only, batch 32, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds", flush=True)
    for _ in range(args.rounds):
        for recipe, engine in engines.items():
            size = engine.model.preprocessing.image_size
            batch = torch.randint(0, 256, (32, 3, size, size), dtype=torch.uint8)
            engine.forward(batch[:8])  # warm-up: allocator, kernels
            start = time.perf_counter()
            for _ in range(args.batches):
                engine.forward(batch)
            rates[recipe].append(32 * args.batches / (time.perf_counter() - start))
    base = statistics.median(rates[args.recipes[0]])
    for recipe, r in rates.items():
        median = statistics.median(r)
        print(f"{recipe:26s} {median:7.1f} img/s (rounds: {', '.join(f'{x:.0f}' for x in r)})  "
              f"cost {base / median:.2f}× of {args.recipes[0]}")
    record(args, {"threads": torch.get_num_threads(), "recipes": {
        recipe: {"images_per_s": statistics.median(r), "rounds": r, "cost_x_first": base / statistics.median(r)}
        for recipe, r in rates.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
