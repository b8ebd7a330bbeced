"""The training job (`lookalike train`, `spark-submit jobs/train.py`): data-parallel fine-tuning on Spark with
TorchDistributor (one barrier task per process: GPU executors on a cluster, CPU processes here), checkpoints in
the store, a rerun of the run id resuming from the newest one; then the best weights as a model artefact (fp16
state dict + model card) that `--weights` loads like any other."""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from lookalike.core.errors import ArtefactError
from lookalike.core.extras import require
from lookalike.core.layout import TrainingLayout
from lookalike.core.manifest import new_manifest, read_manifest
from lookalike.core.progress import Progress, progress
from lookalike.core.spark import session
from lookalike.core.store import Store, redact
from lookalike.training.config import TrainConfig, config_json
from lookalike.training.data import open_training_set
from lookalike.training.trainer import train_process

KIND = "training"


def run(config: TrainConfig, master: str | None = "local[*]", spark_conf: dict[str, str] | None = None,
        use_gpu: bool = False) -> dict[str, Any]:
    """Train (or finish training) run `config.run_id` and return its manifest; a finished run returns it as is."""
    require("train", "lookalike train")
    from pyspark.ml.torch.distributor import TorchDistributor

    store = Store(config.store, config.storage_options)
    layout = TrainingLayout(store, config.run_id)
    if store.exists(layout.manifest):
        return read_manifest(store, layout.manifest, KIND)
    data = open_training_set(store, config.data)
    started = time.perf_counter()
    session(master, "lookalike-train", {"spark.task.cpus": str(config.threads_per_process), **(spark_conf or {})})
    with progress("train", config.steps, "steps") as step, _following(store, layout, step):
        summary = TorchDistributor(num_processes=config.processes, local_mode=False, use_gpu=use_gpu).run(
            train_process, config_json(config))
    if not store.exists(layout.best):
        raise ArtefactError(f"training run {config.run_id} kept no best weights: was any validation run?")
    weights = store.read_bytes(layout.best)
    files = {"weights": _file(layout.best, weights)}
    whitening = word_space = None
    if config.objective == "words":  # a word space's vectors are the text encoder's: no whitening to measure
        word_map = store.read_bytes(layout.best_words)
        files["words"] = _file(layout.best_words, word_map)
        word_space = _word_space(config, files["words"]["sha256"])
    else:
        whitening = _whitening_effect(store, layout, config)
    manifest = new_manifest(
        KIND, run_id=config.run_id, data={"name": config.data, "counts": data["counts"],
                                          "packages": data["packages"], "seed": data["config"]["seed"]},
        recipe={k: v for k, v in asdict(config).items() if k not in ("store", "run_id", "storage_options")},
        best=summary["history"]["best"], validation=summary["history"]["validation"], whitening=whitening,
        word_space=word_space,
        loss=summary["history"]["loss"][-1][1] if summary["history"]["loss"] else None,
        timings={"total_s": round(time.perf_counter() - started, 1), "train_s": summary["seconds"],
                 "images_per_s": summary["images_per_s"]},
        files=files,
        config={**asdict(config), "storage_options": redact(config.storage_options)})
    # The card beside the weights, where `--weights STORE/training/RUN/best.pt` finds it (lookalike.model.cards).
    store.write_bytes(posixpath.splitext(layout.best)[0] + ".json", model_card(manifest).encode())
    store.write_json(layout.manifest, manifest)
    return manifest


def _file(key: str, data: bytes) -> dict[str, Any]:
    return {"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _word_space(config: TrainConfig, map_sha256: str) -> dict[str, Any]:
    """What `--space words --weights` checks of a words run's map (as of the shipped map's card)."""
    from lookalike.model.text import load_text_encoder
    return {"backbone": config.model, "into": load_text_encoder().fingerprint, "image_size": config.image_size,
            "sha256": map_sha256}


def _whitening_effect(store: Store, layout: TrainingLayout, config: TrainConfig) -> dict[str, Any]:
    """What a PCA-whitening does to the best weights, served at the model's default input size: the card's
    `whitening`, which `lookalike reindex` follows."""
    from lookalike.model.loading import load_model
    from lookalike.model.spec import DEFAULT_WHITEN_DIM, ModelSpec
    from lookalike.training.data import read_split
    from lookalike.training.whitening_effect import whitening_effect
    model = load_model(ModelSpec(name=config.model, weights_uri=store.child_url(layout.best),
                                 weights_options=config.storage_options))
    return whitening_effect(model, read_split(store, config.data, "validation"), DEFAULT_WHITEN_DIM)


@contextlib.contextmanager
def _following(store: Store, layout: TrainingLayout, step: Progress) -> Iterator[None]:
    """While the block runs, the step rank 0 reports (it trains on an executor) moves the driver's progress."""
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(2.0):
            with contextlib.suppress(FileNotFoundError, ValueError):
                step.at_least(int(store.read_json(layout.progress)["step"]))
    watcher = threading.Thread(target=follow, name="training-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=5)


def model_card(manifest: dict[str, Any]) -> str:
    """The card shipped beside trained weights: data, split, recipe, metrics, time."""
    card = {key: manifest[key] for key in ("run_id", "data", "recipe", "best", "validation", "timings")}
    for key in ("whitening", "word_space"):
        if manifest.get(key):
            card[key] = manifest[key]
    card["sha256"] = manifest["files"]["weights"]["sha256"]
    return json.dumps(card, indent=2, sort_keys=True)
