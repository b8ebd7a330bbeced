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
# General sets whose icons are named by what they show; their brand icons (mdi's, ri's) join the brand groups. One set
# of a family of drawings (Google's material-symbols, not also ic; lucide, not also its parent feather; fa6-solid, not
# also fa6-regular or fa-solid; mdi, not also mdi-light), so that another set's drawing of a concept is another
# designer's. Permissive licences only (the GPL sets dashicons, gridicons and icomoon-free are left out: the weights
# ship).
CONCEPT_SETS = tuple((f"@iconify-json/{name}", version) for name, version in (
    ("tabler", "1.2.41"), ("lucide", "1.2.137"), ("mdi", "1.2.3"), ("carbon", "1.2.29"), ("ph", "1.2.2"),
    ("bi", "1.2.7"), ("fa6-solid", "1.2.4"), ("heroicons", "1.2.3"), ("ion", "1.2.7"), ("ri", "1.2.10"),
    ("game-icons", "1.2.4"), ("material-symbols", "1.2.98"), ("fluent", "1.2.60"), ("iconoir", "1.2.11"),
    ("octicon", "1.2.36"), ("majesticons", "1.2.5"), ("akar-icons", "1.2.7"), ("eva", "1.2.3"), ("uil", "1.2.3"),
    ("la", "1.2.1"), ("mingcute", "1.2.8"), ("solar", "1.2.13"), ("icon-park-outline", "1.2.4"),
    ("tdesign", "1.2.19"), ("humbleicons", "1.2.20"), ("system-uicons", "1.2.4"), ("healthicons", "1.2.13"),
    ("jam", "1.2.3"), ("gg", "1.2.2"), ("pepicons-pop", "1.2.4"), ("basil", "1.2.4"), ("hugeicons", "1.2.35"),
    ("lets-icons", "1.2.2"), ("entypo", "1.2.1"), ("zondicons", "1.2.2"), ("typcn", "1.2.2"), ("foundation", "1.2.1"),
    ("fontisto", "1.2.1"), ("clarity", "1.2.4"), ("el", "1.2.2"), ("wi", "1.2.1"), ("maki", "1.2.5"),
    ("temaki", "1.2.6"), ("flat-color-icons", "1.2.3"), ("guidance", "1.2.2"), ("iconamoon", "1.2.2"),
    ("mage", "1.2.4"), ("pixelarticons", "1.2.9"), ("prime", "1.2.5"), ("radix-icons", "1.2.6"),
    ("teenyicons", "1.2.2"), ("uiw", "1.2.4"), ("vaadin", "1.2.1"), ("circum", "1.2.2"), ("cil", "1.2.3"),
    ("ep", "1.2.4"), ("grommet-icons", "1.2.4"), ("covid", "1.2.3"), ("medical-icon", "1.2.0"), ("map", "1.2.2"),
    ("icons8", "1.2.1")))
# Kept for an independent evaluation: never trained, tuned or evaluated on (any emoji set, Debian's Papirus).
# What the backbone learns: marks (a drawing stays itself across collections, styles and copies: the visual
# space) or words (a drawing lands near the text vector of its name: a word space, training/words.py).
OBJECTIVES = ("marks", "words")
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
    max_concepts: int | None = option(0, "concept groups kept, chosen by a seeded hash (0: all)")
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
    objective: str = option("marks", "what the backbone learns: marks (a drawing stays itself across collections, "
                                     "styles and copies) or words (a drawing lands near the text vector of its name: "
                                     "a word space for --space words)", choices=OBJECTIVES)
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
    styles: bool = option(True, "synthetic copies also restyled as other icon sets draw (thin, rounded, duotone, "
                                "badge, pixel art; --no-styles: a copier's restyles only)", flag="--no-styles")
    processes: int = option(2, "data-parallel processes (Spark tasks)")
    threads_per_process: int = 1
    seed: int = 0
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.batch_size % self.m_per_group:
            raise ConfigError(f"batch size {self.batch_size} must be a multiple of m_per_group {self.m_per_group}")
        if min(self.steps, self.batch_size, self.checkpoint_every, self.validate_every, self.processes) < 1:
            raise ConfigError("steps, batch size, checkpoint_every, validate_every and processes must be >= 1")

    def spec(self) -> ModelSpec:
        return ModelSpec(name=self.model, image_size=self.image_size)


def config_json(config: TrainConfig) -> str:
    """How the config travels to the training processes (TorchDistributor passes plain arguments)."""
    return json.dumps(asdict(config))
