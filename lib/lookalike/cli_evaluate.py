"""`lookalike evaluate`: retrieval metrics and a visual report for an embeddings version with labels."""

from __future__ import annotations

import argparse
import json

from lookalike.cli import add_store_args, key_values


def evaluate_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--embeddings", required=True, metavar="FINGERPRINT[/RUN]",
                   help="an embeddings version whose images table had a label column")
    p.add_argument("--index", default=None, help="also search through this published index (ANN vs exact)")
    p.add_argument("--label-column", default="label")
    p.add_argument("--report", required=True, help="folder for metrics.json/csv, per_label.csv, PNGs, index.html")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run_evaluate(args: argparse.Namespace) -> str:
    from lookalike.evaluate import EvaluateConfig, run
    out = run(EvaluateConfig(store=args.store, embeddings=args.embeddings, report=args.report, index=args.index,
                             label_column=args.label_column,
                             storage_options=key_values(args.store_option, "--store-option")))
    if args.json:
        return json.dumps(out["metrics"], indent=2)
    lines = [f"{'search':8} {'queries':>7} {'P@1':>6} {'R@10':>6} {'R-prec':>7} {'mAP':>6} {'mAP@R':>6} "
             f"{'nDCG@10':>8}"]
    for name, m in out["metrics"].items():
        lines.append(f"{name:8} {m['queries']:>7} {m['precision@1']:>6.3f} {m['recall@10']:>6.3f} "
                     f"{m['r_precision']:>7.3f} {m['map']:>6.3f} {m['map@r']:>6.3f} {m['ndcg@10']:>8.3f}")
    lines.append(f"report: {out['report']}/index.html")
    return "\n".join(lines)
