"""What names an embedding space, without torch: the model a user asks for, its preprocessing, and the fingerprint
id of what it makes. Manifests, configs and the command line use these; only loading needs torch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from lookalike.core.errors import InputError

DEFAULT_WHITEN_DIM = 512  # a PCA-whitening's size: the best on the logo set (docs/quality.md, bench/quality.py)
# Images per kept dimension a whitening is worth learning from: past it the gain barely grows (bench/quality.py's
# --whiten-samples, docs/quality.md).
MIN_IMAGES_PER_DIM = 1.5

# The backbones and pooling heads model/backbones.py and model/pooling.py build (a test keeps the lists equal).
BACKBONE_NAMES = ("efficientnet_lite0", "efficientnet_lite0_marks", "resnet50", "resnet18", "efficientnet_b0",
                  "vit_b_16")
POOLINGS = ("avg", "max", "gem", "rmac")
# visual: pooled backbone features (the default); words: the image as a vector of the text encoder's space through
# the shipped DeViSE map (model/devise.py), searchable by phrases; conse: the same space without training, through
# the ImageNet classifier (model/conse.py).
SPACES = ("visual", "words", "conse")
MODEL_FILE_FIELDS = ("weights_uri", "whitening_uri")  # the files a model is rebuilt from, besides bundled weights


def is_relative(uri: str) -> bool:
    """A key inside a store (no scheme, not an absolute path)."""
    return "://" not in uri and not uri.startswith("/")


# The visual default: EfficientNet-Lite0 fine-tuned on open logo and icon collections (README "Training"). The word
# spaces read ImageNet features instead: the shipped DeViSE map was trained on them, ConSE reads the ImageNet
# classifier, which the fine-tuned features no longer feed.
DEFAULT_MODEL = "efficientnet_lite0_marks"
WORD_SPACE_MODEL = "efficientnet_lite0"
RESIZE_MODES = ("pad", "crop", "squash")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(InputError):
    """A model cannot be built or its weights do not fit it."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model's input tensor; part of the fingerprint."""

    image_size: int = 224
    # pad: fit the whole image in the square and pad with white (logos keep their shape and margins);
    # crop: resize the short side and centre-crop (ImageNet evaluation style); squash: ignore aspect.
    resize: str = "pad"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class ModelSpec:
    """What the user asks for: a backbone name, where its weights are, and the pooling head."""

    name: str | None = None              # None: DEFAULT_MODEL, or WORD_SPACE_MODEL for a word space
    weights_uri: str | None = None
    pooling: str = "gem"
    gem_p: float = 3.0
    image_size: int | None = None        # None: the backbone's default
    resize: str = "pad"
    whitening_uri: str | None = None     # a PCA-whitening learned by `lookalike whiten` (None: none)
    scales: tuple[float, ...] = (1.0,)   # multi-scale: input resized by each factor, descriptors summed
    space: str = "visual"                # "words" / "conse": vectors of the text encoder's space (SPACES)
    weights_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any], weights_options: dict[str, Any],
                      root_url: str | None = None) -> ModelSpec:
        """The spec a manifest recorded (`config.model` of embeddings, `model` of an index), with the options
        its weights URI is read with; keys this version does not know are ignored. A weights or whitening URI
        written relative (an exported bundle carries its own files) is resolved against root_url, the store
        the manifest was read from."""
        known = {f.name for f in fields(cls)} - {"weights_options"}
        values = {k: v for k, v in recorded.items() if k in known}
        for name in MODEL_FILE_FIELDS:
            if values.get(name) and is_relative(values[name]) and root_url:
                values[name] = f"{root_url.rstrip('/')}/{values[name]}"
        return cls(**values, weights_options=weights_options)

    def __post_init__(self):
        if self.name is None:
            object.__setattr__(self, "name", DEFAULT_MODEL if self.space == "visual" else WORD_SPACE_MODEL)
        if self.name not in BACKBONE_NAMES and not self.name.startswith("timm:"):
            raise ModelError(f"unknown model {self.name!r}: choose one of {', '.join(sorted(BACKBONE_NAMES))} "
                             "or 'timm:<architecture>' with --weights")
        if self.pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.resize not in RESIZE_MODES:
            raise ModelError(f"unknown resize mode {self.resize!r}: choose one of {', '.join(RESIZE_MODES)}")
        if self.space not in SPACES:
            raise ModelError(f"unknown space {self.space!r}: choose one of {', '.join(SPACES)}")
        if self.space != "visual" and self.whitening_uri:
            raise ModelError("a word-space model's vectors are the text encoder's: they take no whitening; drop "
                             "--whitening")
        if self.gem_p <= 0:
            raise ModelError(f"GeM p must be > 0, got {self.gem_p}")
        # Manifests record scales as a JSON list; the spec stays hashable (models are cached by spec).
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or min(self.scales) <= 0 or max(self.scales) > 4 or len(set(self.scales)) < len(
                self.scales):
            raise ModelError(f"scales must be distinct factors in (0, 4], e.g. 1,0.707,0.5; got {self.scales}")


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """architecture-<12 hex of the fingerprint>: the folder name of a model's embeddings in the store."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    return f"{fingerprint['architecture'].replace(':', '-')}-{digest}"
