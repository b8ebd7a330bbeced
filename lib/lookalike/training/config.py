"""The training job's config: typed, frozen, validated up front; readable without torch (the command line takes
its defaults from it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lookalike.core.errors import ConfigError
from lookalike.model.spec import ModelSpec


@dataclass(frozen=True)
class TrainConfig:
    store: str
    run_id: str
    data: str = "default"                # the training set's name (training-data/<name>)
    model: str = "efficientnet_lite0"    # the backbone and its weights training starts from (ImageNet here)
    image_size: int = 224
    trainable: int = 2                   # last stages (blocks) that learn, with the head convolution
    steps: int = 1500
    batch_size: int = 32                 # per process
    m_per_group: int = 4
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    checkpoint_every: int = 100
    validate_every: int = 250
    max_validation: int = 1500           # validation images embedded each time
    augment: bool = True
    processes: int = 2
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
