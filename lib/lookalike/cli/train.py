"""`lookalike train-data` (the training set from open collections) and `lookalike train` (data-parallel
fine-tuning on Spark; also `spark-submit jobs/train.py`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lookalike.cli.args import (
    add_deprecated_flag,
    add_json_arg,
    add_master_arg,
    add_spark_args,
    add_store_args,
    key_values,
    spark_conf,
)
from lookalike.core.options import add_options, option_values
from lookalike.training.config import TrainConfig, TrainingDataConfig

TRAINING_DATA_OPTIONS = ("name", "data_dir", "seed", "max_concepts")
TRAIN_OPTIONS = ("data", "objective", "model", "image_size", "trainable", "steps", "batch_size", "m_per_group", "lr",
                 "checkpoint_every", "validate_every", "processes", "augment", "styles")


def train_data_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_options(p, TrainingDataConfig, TRAINING_DATA_OPTIONS)
    add_deprecated_flag(p, "--name", "--training-set", dest="name")
    add_json_arg(p, "the training set's manifest")


def run_train_data(args: argparse.Namespace) -> str:
    from lookalike.training.data import run
    m = run(TrainingDataConfig(store=args.store, storage_options=key_values(args.store_option, "--store-option"),
                               **option_values(args, TrainingDataConfig, TRAINING_DATA_OPTIONS)))
    if args.json:
        return json.dumps(m, indent=2)
    c = m["counts"]
    by = c["brands_by_collections"]
    return (f"training set {m['name']}: {c['images']:,} images; brands train/validation/test "
            f"{'/'.join(str(c['groups']['brand'][s]) for s in ('train', 'validation', 'test'))} (drawn by 2 "
            f"collections: {by['2']}, 3: {by['3']}, 4+: {by['4+']}); concepts "
            f"{'/'.join(str(c['groups']['concept'][s]) for s in ('train', 'validation', 'test'))}")


def train_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    p.add_argument("--run-id", required=True, help="the run: training/RUN_ID/ in the store; rerun it to resume")
    add_options(p, TrainConfig, TRAIN_OPTIONS)
    add_deprecated_flag(p, "--data", "--training-set", dest="data")
    p.add_argument("--gpu", action="store_true", help="one GPU per process (executors with spark.task.resource.gpu)")
    p.add_argument("--out", default=None, metavar="DIR", help="also write the best weights and their model card here")
    add_master_arg(p, submitted)
    add_spark_args(p)
    add_json_arg(p, "the training run's manifest")


def run_train(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.training.job import model_card, run
    options = key_values(args.store_option, "--store-option")
    config = TrainConfig(store=args.store, run_id=args.run_id, storage_options=options,
                         **option_values(args, TrainConfig, TRAIN_OPTIONS))
    m = run(config, args.master, spark_conf(args.spark_conf, args.event_log, options), use_gpu=args.gpu)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        store = Store(args.store, options)
        (out / f"{args.run_id}.pt").write_bytes(store.read_bytes(m["files"]["weights"]["key"]))
        if "words" in m["files"]:  # the word-space map, beside the weights where --space words finds it
            (out / f"{args.run_id}.words.pt").write_bytes(store.read_bytes(m["files"]["words"]["key"]))
        (out / f"{args.run_id}.json").write_text(model_card(m))
    if args.json:
        return json.dumps(m, indent=2)
    best = m["best"]
    return (f"training {m['run_id']}: best validation P@1 {best['P@1']:.3f}, mAP {best['mAP']:.3f} at step "
            f"{best['step']}; {m['timings']['train_s']:.0f} s, {m['timings']['images_per_s']:.1f} images/s; "
            f"weights {m['files']['weights']['key']}")
