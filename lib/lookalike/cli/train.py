"""`lookalike train-data` (the training set from open collections) and `lookalike train` (data-parallel
fine-tuning on Spark; also `spark-submit jobs/train.py`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lookalike.cli.args import add_master_arg, add_spark_args, add_store_args, key_values, spark_conf


def train_data_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--name", default="default", help="the set's name: training-data/NAME/ in the store")
    p.add_argument("--data-dir", default="~/.cache/lookalike/training-data",
                   help="where npm packages and renderings are kept between runs")
    p.add_argument("--seed", type=int, default=0, help="of the train / validation / test split by group")
    p.add_argument("--max-concepts", type=int, default=2000, help="concept groups kept (0: all)")
    p.add_argument("--json", action="store_true", help="print the training set's manifest as JSON")


def run_train_data(args: argparse.Namespace) -> str:
    from lookalike.training.data import TrainingDataConfig, run
    m = run(TrainingDataConfig(store=args.store, name=args.name, data_dir=args.data_dir, seed=args.seed,
                               max_concepts=args.max_concepts or None,
                               storage_options=key_values(args.store_option, "--store-option")))
    if args.json:
        return json.dumps(m, indent=2)
    c = m["counts"]
    by = c["brands_by_collections"]
    return (f"training set {m['name']}: {c['images']:,} images; brands train/validation/test "
            f"{'/'.join(str(c['groups']['brand'][s]) for s in ('train', 'validation', 'test'))} (drawn by 2 "
            f"collections: {by['2']}, 3: {by['3']}, 4+: {by['4+']}); concepts "
            f"{'/'.join(str(c['groups']['concept'][s]) for s in ('train', 'validation', 'test'))}")


def train_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    from lookalike.training.config import TrainConfig
    d = TrainConfig(store="", run_id="")
    add_store_args(p)
    p.add_argument("--run-id", required=True, help="the run: training/RUN_ID/ in the store; rerun it to resume")
    p.add_argument("--data", default=d.data, help="the training set's name (built by `lookalike train-data`)")
    p.add_argument("--model", default=d.model,
                   help="the backbone and the weights training starts from: efficientnet_lite0 (ImageNet) or "
                        "efficientnet_lite0_marks (the shipped model, trained further)")
    p.add_argument("--image-size", type=int, default=d.image_size, help="the input size trained at, in pixels")
    p.add_argument("--trainable", type=int, default=d.trainable, help="last stages that learn")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (batches per process)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--m-per-group", type=int, default=d.m_per_group,
                   help="drawings of each group in a batch (the positives each anchor sees)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (warm-up, then cosine decay)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints in the store (what a killed run resumes from)")
    p.add_argument("--validate-every", type=int, default=d.validate_every,
                   help="steps between validations (the best weights by validation mAP are kept)")
    p.add_argument("--processes", type=int, default=d.processes, help="data-parallel processes (Spark tasks)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no synthetic copies")
    p.add_argument("--gpu", action="store_true", help="one GPU per process (executors with spark.task.resource.gpu)")
    p.add_argument("--out", default=None, metavar="DIR", help="also write the best weights and their model card here")
    add_master_arg(p, submitted)
    add_spark_args(p)
    p.add_argument("--json", action="store_true", help="print the training run's manifest as JSON")


def run_train(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.training.config import TrainConfig
    from lookalike.training.job import model_card, run
    options = key_values(args.store_option, "--store-option")
    config = TrainConfig(store=args.store, run_id=args.run_id, data=args.data, model=args.model,
                         image_size=args.image_size, trainable=args.trainable, steps=args.steps,
                         batch_size=args.batch_size, m_per_group=args.m_per_group, lr=args.lr,
                         checkpoint_every=args.checkpoint_every, validate_every=args.validate_every,
                         augment=args.augment, processes=args.processes, storage_options=options)
    m = run(config, args.master, spark_conf(args.spark_conf, args.event_log, options), use_gpu=args.gpu)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.run_id}.pt").write_bytes(Store(args.store, options).read_bytes(m["files"]["weights"]["key"]))
        (out / f"{args.run_id}.json").write_text(model_card(m))
    if args.json:
        return json.dumps(m, indent=2)
    best = m["best"]
    return (f"training {m['run_id']}: best validation P@1 {best['P@1']:.3f}, mAP {best['mAP']:.3f} at step "
            f"{best['step']}; {m['timings']['train_s']:.0f} s, {m['timings']['images_per_s']:.1f} images/s; "
            f"weights {m['files']['weights']['key']}")
