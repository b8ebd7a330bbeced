"""The training set's and the training job's configs: typed, frozen, validated up front; readable without torch
or pyarrow (the command line declares its flags from their fields)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from lookalike.core.errors import ConfigError
from lookalike.core.options import option
from lookalike.model.spec import ModelSpec

# Logo collections (@iconify-json packages: one format, a licence each in its info.json).
BRAND_SETS = (("@iconify-json/simple-icons", "1.2.103"), ("@iconify-json/logos", "1.2.19"),
              ("@iconify-json/devicon", "1.2.68"), ("@iconify-json/devicon-plain", "1.2.57"),
              ("@iconify-json/skill-icons", "1.2.4"), ("@iconify-json/fa6-brands", "1.2.6"),
              ("@iconify-json/bxl", "1.2.4"), ("@iconify-json/cib", "1.2.3"),
              ("@iconify-json/cryptocurrency-color", "1.2.4"), ("@iconify-json/token-branded", "1.2.45"),
              ("@iconify-json/streamline-logos", "1.2.0"), ("@iconify-json/arcticons", "1.2.58"),
              ("@iconify-json/file-icons", "1.2.2"))
# General sets whose icons are named by what they show; their brand icons (mdi's, ri's) join the brand groups.
CONCEPT_SETS = (("@iconify-json/tabler", "1.2.41"), ("@iconify-json/lucide", "1.2.137"),
                ("@iconify-json/mdi", "1.2.3"), ("@iconify-json/carbon", "1.2.29"), ("@iconify-json/ph", "1.2.2"),
                ("@iconify-json/bi", "1.2.7"), ("@iconify-json/fa6-solid", "1.2.4"),
                ("@iconify-json/heroicons", "1.2.3"), ("@iconify-json/ion", "1.2.7"), ("@iconify-json/ri", "1.2.10"))
# Kept for an independent evaluation: never trained, tuned or evaluated on (any emoji set, Debian's Papirus).
HELD_OUT = re.compile(r"emoji|moji|noto|papirus|fxemoji|joypixels", re.IGNORECASE)


@dataclass(frozen=True)
class TrainingDataConfig:
    store: str
    name: str = option("default", "the training set's name: training-data/NAME/ in the store",
                       flag="--training-set", metavar="NAME")
    data_dir: str = option("~/.cache/lookalike/training-data", "where npm packages and renderings are kept between "
                                                               "runs")
    brand_sets: tuple[tuple[str, str], ...] = BRAND_SETS
    concept_sets: tuple[tuple[str, str], ...] = CONCEPT_SETS
    size: int = 256                        # rendered px (training crops from it)
    seed: int = option(0, "of the train / validation / test split by group")
    fractions: tuple[float, float] = (0.7, 0.15)  # train, validation (test: the rest)
    per_collection: int = 3                # drawings of a group one collection may give (its styles)
    max_concepts: int | None = option(2000, "concept groups kept, chosen by a seeded hash (0: all)")
    max_brands: int | None = None          # brand groups kept (likewise; for small test sets)
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        held = [n for n, _ in (*self.brand_sets, *self.concept_sets) if HELD_OUT.search(n)]
        if held:
            raise ConfigError(f"{', '.join(held)}: emoji sets and Papirus are kept for an independent evaluation and "
                              "are never trained on")
        train, validation = self.fractions
        if not (0 < train < 1 and validation > 0 and train + validation < 1):
            raise ConfigError(f"split fractions {self.fractions}: give train and validation shares in (0, 1) that "
                              "leave some for test")



@dataclass(frozen=True)
class TrainConfig:
    store: str
    run_id: str
    data: str = option("default", "the training set's name (built by `lookalike train-data`)",
                       flag="--training-set", metavar="NAME")
    model: str = option("efficientnet_lite0", "the backbone and the weights training starts from: "
                                              "efficientnet_lite0 (ImageNet) or efficientnet_lite0_marks (the shipped "
                                              "model, trained further)")
    image_size: int = option(224, "the input size trained at, in pixels")
    trainable: int = option(2, "last stages (blocks) that learn, with the head convolution")
    steps: int = option(1500, "optimiser steps (batches per process)")
    batch_size: int = option(32, "images per batch, per process")
    m_per_group: int = option(4, "drawings of each group in a batch (the positives each anchor sees)")
    lr: float = option(3e-4, "peak learning rate (warm-up, then cosine decay)")
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    checkpoint_every: int = option(100, "steps between checkpoints in the store (what a killed run resumes from)")
    validate_every: int = option(250, "steps between validations (the best weights by validation mAP are kept)")
    max_validation: int = 1500           # validation images embedded each time
    augment: bool = option(True, "altered synthetic copies join each drawing's group (--no-augment: none)",
                           flag="--no-augment")
    processes: int = option(2, "data-parallel processes (Spark tasks)")
    threads_per_process: int = 1
    seed: int = 0
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.batch_size % self.m_per_group:
            raise ConfigError(f"batch size {self.batch_size} must be a multiple of m_per_group {self.m_per_group}")
        if min(self.steps, self.batch_size, self.checkpoint_every, self.validate_every, self.processes) < 1:
            raise ConfigError("steps, batch size, checkpoint_every, validate_every and processes must be >= 1")

    def spec(self) -> ModelSpec:
        return ModelSpec(name=self.model, image_size=self.image_size)


def config_json(config: TrainConfig) -> str:
    """How the config travels to the training processes (TorchDistributor passes plain arguments)."""
    return json.dumps(asdict(config))
