"""One data-parallel training process (TorchDistributor starts one per task; gloo on CPUs, nccl on GPUs): the
backbone fine-tuned so that a mark stays itself across collections, styles and copies, or lands near its name.

Batches come from pytorch-metric-learning's MPerClassSampler (m drawings of each group in a batch; a group drawn
fewer times is drawn again under another synthetic copy, so copies are positives too). The objective says what a
group is and what is learned: marks (MarksObjective: MultiSimilarityLoss over the pairs MultiSimilarityMiner
keeps) or words (training/words.py: drawings against the text vectors of their names, through a projection).
Only the last stages learn (`trainable`): the frozen stem and early stages keep their ImageNet weights and
batch-norm statistics, so a 2-core machine can train the shipped model. Rank 0 validates on held-out groups with
the objective's metrics, keeps the best weights and writes checkpoints to the store; every rank resumes from the
newest checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import random
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from lookalike.core.errors import ConfigError
from lookalike.core.layout import TrainingLayout
from lookalike.core.store import Store
from lookalike.image.decode import to_tensor
from lookalike.model.loading import LoadedModel, load_model
from lookalike.training.augment import synthetic_copy
from lookalike.training.config import TrainConfig
from lookalike.training.data import read_split
from lookalike.training.validation import embed_pngs, leave_one_out, whole_groups
from lookalike.training.words import HEAD_LR_SCALE, WordsObjective

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 5.0  # how often rank 0 writes the step it reached (one small object in the store)


def trainable_parameters(model: LoadedModel, stages: int) -> list[torch.nn.Parameter]:
    """Freeze all but the backbone's last `stages` blocks and what follows them (head convolution and norm)."""
    backbone = model.module.backbone
    blocks = getattr(backbone, "blocks", None)
    if blocks is None:
        raise ConfigError(f"{model.spec.name} has no `blocks` stages to train: train an EfficientNet")
    learn = {id(p) for block in list(blocks)[-stages:] for p in block.parameters()} if stages else set()
    for name in ("conv_head", "bn2"):
        if stages and hasattr(backbone, name):
            learn |= {id(p) for p in getattr(backbone, name).parameters()}
    params = []
    for p in backbone.parameters():
        p.requires_grad_(id(p) in learn)
        if id(p) in learn:
            params.append(p)
    return params


class GroupImages(torch.utils.data.Dataset):
    """PNG bytes → (uint8 tensor at the model's input size, group label); a synthetic copy when augmenting."""

    def __init__(self, pngs: list[bytes], labels: np.ndarray, model: LoadedModel, augment: bool, seed: int,
                 styles: bool = True):
        self.pngs, self.labels, self.model, self.augment, self.styles = pngs, labels, model, augment, styles
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.pngs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.open(io.BytesIO(self.pngs[i])).convert("RGB")
        if self.augment:
            image = synthetic_copy(image, self.rng, self.styles)
        return to_tensor(image, self.model.preprocessing), int(self.labels[i])


class MarksObjective:
    """A drawing stays itself across collections, styles and copies: its group's other drawings are positives
    (MultiSimilarityLoss over the pairs MultiSimilarityMiner keeps); validated by leave-one-out retrieval."""

    def __init__(self, train):
        from pytorch_metric_learning import losses, miners
        self.table = train
        self.head_parameters: list[torch.nn.Parameter] = []  # GeM has nothing to learn here
        groups = train["group"].to_pylist()
        label_of = {g: i for i, g in enumerate(sorted(set(groups)))}
        self.labels = np.asarray([label_of[g] for g in groups])
        self.loss_fn = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)
        self.miner = miners.MultiSimilarityMiner(0.1)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(embeddings, labels, self.miner(embeddings, labels))

    def validate(self, model: LoadedModel, validation, max_images: int) -> dict[str, float]:
        """Leave-one-out retrieval among the drawings of whole validation groups (at most max_images, the same
        ones every time): P@1 and mAP."""
        rows = whole_groups(validation, max_images)
        return leave_one_out(embed_pngs(model, rows["png"].to_pylist()), rows["group"].to_pylist())

    def best_map(self) -> bytes | None:
        return None


def objective_for(config: TrainConfig, train, model: LoadedModel) -> MarksObjective | WordsObjective:
    """The objective's rows, labels, head, loss and validation; a words objective replaces the model's head."""
    if config.objective == "words":
        from lookalike.model.text import load_text_encoder
        return WordsObjective(train, model, load_text_encoder())
    return MarksObjective(train)


def train_process(config_json: str) -> dict[str, Any]:
    """What each process runs; returns rank 0's summary (the others return None)."""
    from pytorch_metric_learning import samplers

    config = TrainConfig(**json.loads(config_json))
    torch.set_num_threads(config.threads_per_process)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed + rank)
    np.random.seed(config.seed + rank)  # MPerClassSampler draws from numpy's global state
    store = Store(config.store, config.storage_options)
    layout = TrainingLayout(store, config.run_id)

    model = load_model(config.spec(), fold_norms=False)
    params = trainable_parameters(model, config.trainable)
    objective = objective_for(config, read_split(store, config.data, "train"), model)
    labels = objective.labels
    module = model.module.to(device).eval()  # frozen batch-norm statistics everywhere
    dataset = GroupImages(objective.table["png"].to_pylist(), labels, model, config.augment,
                          config.seed + 1000 * rank, config.styles)
    sampler = samplers.MPerClassSampler(labels, config.m_per_group, batch_size=config.batch_size,
                                        length_before_new_iter=config.batch_size * config.steps)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    groups = [{"params": params}]
    if objective.head_parameters:
        groups.append({"params": objective.head_parameters, "lr": config.lr * HEAD_LR_SCALE})
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / config.warmup_steps) * 0.5
                                                 * (1 + math.cos(math.pi * min(1.0, s / config.steps))))

    state = _resume(store, layout)
    step, history = 0, {"loss": [], "validation": [], "probe": [], "best": None, "resumed": []}
    probe = _probe_batch(dataset, labels, config) if rank == 0 else None
    if state is not None:
        model.module.backbone.load_state_dict(state["backbone"])
        if "head" in state:  # checkpoints of runs before the words objective hold the backbone alone
            model.module.pooling.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        step, history = state["step"], state["history"]
        history["resumed"].append(step)
        log.info("rank %d resumed at step %d", rank, step)
        if rank == 0:  # beside the probe loss measured before the checkpoint: equal when all of the model came back
            history["probe"].append([step, _probe_loss(module, probe, objective)])
    validation = read_split(store, config.data, "validation") if rank == 0 else None
    if state is None and rank == 0:  # where training starts from: the starting weights' figures
        history["probe"].append([0, _probe_loss(module, probe, objective)])
        history["start"] = objective.validate(model, validation, config.max_validation)
    started, first_step, batches = time.perf_counter(), step, iter(loader)
    reported = 0.0
    while step < config.steps:
        images, targets = next(batches)
        embeddings = ddp(images.to(device))
        loss = objective.loss(embeddings, targets.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        step += 1
        mean_loss = _mean_over_ranks(loss.detach(), world)
        if rank == 0:
            history["loss"].append([step, round(mean_loss, 5)])
            if time.perf_counter() - reported >= PROGRESS_EVERY_S or step == config.steps:
                store.write_json(layout.progress, {"step": step, "steps": config.steps, "loss": round(mean_loss, 5)})
                reported = time.perf_counter()
        if step % config.validate_every == 0 or step == config.steps:
            if rank == 0:
                history["probe"].append([step, _probe_loss(module, probe, objective)])
                _validate(model, objective, validation, config, step, history, layout, store)
            dist.barrier()
        if step % config.checkpoint_every == 0 or step == config.steps:
            if rank == 0:
                _checkpoint(store, layout, step, model, optimiser, schedule, history)
            dist.barrier()
    seconds = time.perf_counter() - started
    dist.destroy_process_group()
    if rank != 0:
        return None
    return {"steps": step, "history": history, "seconds": round(seconds, 1),
            "images_per_s": round(config.batch_size * world * (step - first_step) / max(seconds, 1e-9), 1)}


def _probe_batch(dataset: GroupImages, labels: np.ndarray, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of training images (the first groups whole, no synthetic copies): the loss on it, measured
    at every validation, shows whether training fits its data at all, without the noise of random batches."""
    rows = [i for i in np.argsort(labels, kind="stable")[:2 * config.batch_size]]
    images = [to_tensor(Image.open(io.BytesIO(dataset.pngs[i])).convert("RGB"), dataset.model.preprocessing)
              for i in rows]
    return torch.stack(images), torch.as_tensor(labels[rows])


def _probe_loss(module: torch.nn.Module, probe: tuple[torch.Tensor, torch.Tensor], objective) -> float:
    device = next(module.parameters()).device
    with torch.no_grad():
        return round(float(objective.loss(module(probe[0].to(device)), probe[1].to(device))), 5)


def _mean_over_ranks(value: torch.Tensor, world: int) -> float:
    total = value.clone().float()
    dist.all_reduce(total)
    return float(total) / world


def _resume(store: Store, layout: TrainingLayout) -> dict[str, Any] | None:
    try:
        key = store.read_text(layout.latest_checkpoint).strip()
    except FileNotFoundError:
        return None
    return torch.load(io.BytesIO(store.read_bytes(key)), map_location="cpu", weights_only=False)


def _checkpoint(store: Store, layout: TrainingLayout, step: int, model: LoadedModel, optimiser, schedule,
                history: dict[str, Any]) -> None:
    """Written whole, then named by LATEST: a kill mid-write leaves the previous checkpoint in force."""
    buf = io.BytesIO()
    torch.save({"step": step, "backbone": model.module.backbone.state_dict(),
                "head": model.module.pooling.state_dict(), "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(), "history": history}, buf)
    store.write_bytes(layout.checkpoint(step), buf.getvalue())
    previous = None
    with contextlib.suppress(FileNotFoundError):
        previous = store.read_text(layout.latest_checkpoint).strip()
    store.write_text(layout.latest_checkpoint, layout.checkpoint(step))
    if previous and previous != layout.checkpoint(step):
        store.delete(previous)
    store.write_json(layout.history, history)


def _validate(model: LoadedModel, objective, validation, config: TrainConfig, step: int, history: dict[str, Any],
              layout: TrainingLayout, store: Store) -> None:
    """The validation figures at this step; the best weights (by mAP) kept, with a words run's map beside them."""
    metrics = {"step": step, **objective.validate(model, validation, config.max_validation)}
    history["validation"].append(metrics)
    log.info("step %d: validation %s", step, metrics)
    if history["best"] is None or metrics["mAP"] > history["best"]["mAP"]:
        history["best"] = metrics
        weights = {k: v.half() if v.is_floating_point() else v for k, v in model.module.backbone.state_dict().items()}
        buf = io.BytesIO()
        torch.save(weights, buf)
        store.write_bytes(layout.best, buf.getvalue())
        word_map = objective.best_map()
        if word_map is not None:
            store.write_bytes(layout.best_words, word_map)
