"""Loading a model: the backbone with its weights checked, the pooling head, the optional whitening head, on a
device; and the one forward pass that catalogue and query images both go through."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.core.store import read_url
from lookalike.model.backbones import backbone_of, lite0_to_timm
from lookalike.model.class_weighting import ClassFocus, position_weights
from lookalike.model.conse import CONSE_TOP, conse_head
from lookalike.model.devise import load_artefact, load_trained_artefact
from lookalike.model.fusion import fused_or_original
from lookalike.model.imagenet import imagenet_classifier
from lookalike.model.pooling import make_pooling
from lookalike.model.spec import ModelError, ModelSpec, Preprocessing, fingerprint_id
from lookalike.model.text import load_text_encoder
from lookalike.model.whitening import Whitening, WhiteningError, WhiteningHead


class EmbeddingModel(nn.Module):
    """uint8 images → normalised input → backbone features → pooling → L2: one unit float32 vector each.

    Multi-scale (scales other than (1,)): the normalised input is resized by each factor, each scale's pooled
    descriptor is L2-normalised and they are summed, then normalised again (the multi-scale descriptor of
    Radenović et al.); resizing the tensor keeps decoding and preprocessing single-scale and runs on the GPU.

    With a ClassFocus (class-weighted queries, model/class_weighting.py), each position of the feature map is
    weighted by the class's activation map before pooling: by w^(1/p) for GeM of power p, so that the pooled
    descriptor is the w-weighted generalised mean."""

    def __init__(self, backbone: nn.Module, features: Callable, pooling: nn.Module, pre: Preprocessing,
                 whitening: nn.Module | None = None, scales: tuple[float, ...] = (1.0,)):
        super().__init__()
        self.backbone = backbone
        self._features = features
        self.pooling = pooling
        self.whitening = whitening
        self.scales = scales
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 → the float input the backbone was trained on."""
        return (images.float() - self.mean) / self.std

    def forward(self, images: torch.Tensor, focus: ClassFocus | None = None) -> torch.Tensor:
        x = self.normalise(images)
        class_weights = None if focus is None else imagenet_classifier(
            self.backbone, "class-weighted search", "search without a class").weight[focus.class_id]
        unit = None
        for scale in self.scales:
            scaled = x if scale == 1.0 else nn.functional.interpolate(
                x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1.0)
            features = self._features(self.backbone, scaled)
            if class_weights is not None:
                weights = position_weights(features, class_weights, focus.strength)
                features = features * weights.pow(1.0 / getattr(self.pooling, "p", 1.0)).to(features.dtype)
            pooled = nn.functional.normalize(self.pooling(features).float(), dim=-1)
            unit = pooled if unit is None else unit + pooled
        if len(self.scales) > 1:
            unit = nn.functional.normalize(unit, dim=-1)
        return self.whitening(unit) if self.whitening is not None else unit


@dataclass
class LoadedModel:
    spec: ModelSpec
    module: EmbeddingModel
    preprocessing: Preprocessing
    dim: int
    weights_sha256: str
    channels_last: bool
    whitening: dict[str, Any] | None = None  # {"sha256", "dim"} of the whitening applied, if any
    word_space: dict[str, Any] | None = None  # how images were put in the text encoder's space, if they were

    @property
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the embedding space; two runs share vectors only if this is equal."""
        # `scales` appears only when multi-scale, so single-scale fingerprints (and their stores) stay as they were.
        multi_scale = {"scales": list(self.spec.scales)} if self.spec.scales != (1.0,) else {}
        words = {"word_space": self.word_space} if self.word_space else {}
        return multi_scale | words | {
            "architecture": self.spec.name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": asdict(self.preprocessing),
            "pooling": self.word_space["method"] if self.word_space else self.spec.pooling,
            "gem_p": self.spec.gem_p if self.spec.pooling == "gem" and not self.word_space else None,
            "whitening": self.whitening,
            "normalisation": "l2",
            "dim": self.dim,
        }

    @property
    def fingerprint_id(self) -> str:
        return fingerprint_id(self.fingerprint)

    def embed_batch(self, images: torch.Tensor, device: torch.device | None = None,
                    focus: ClassFocus | None = None) -> np.ndarray:
        """(B, 3, S, S) uint8 batch → (B, dim) float32 unit vectors: the one forward pass of catalogue and
        query images, so both are embedded at the same precision (fp16 autocast on a GPU, float32 on a CPU).
        focus: weight the images toward an ImageNet class (a visual model's class-weighted queries)."""
        if focus is not None and self.word_space is not None:
            raise ModelError("class-weighted search re-weights a visual model's features; this model's vectors are "
                             "in a word space: search a visual index")
        device = device or next(self.module.parameters()).device
        x = images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
        on_gpu = device.type == "cuda"
        if on_gpu:
            x = x.pin_memory().to(device, non_blocking=True)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=on_gpu):
            return self.module(x, focus).float().cpu().numpy()


def load_model(spec: ModelSpec, device: torch.device | str = "cpu", fold_norms: bool = True) -> LoadedModel:
    """Build the backbone, load its weights strictly, attach the pooling head, move to device. fold_norms=False
    keeps the batch norms as layers of their own (the baseline of bench/embed_memory.py)."""
    backbone_def = backbone_of(spec)
    weights_uri = spec.weights_uri or (backbone_def.default_weights() if backbone_def.default_weights else None)
    if weights_uri is None:
        raise ModelError(f"model {spec.name!r} needs --weights URI (a state dict, local path or s3://...): "
                         "nothing is downloaded at run time")
    raw, sha = _read_weights(weights_uri, json.dumps(spec.weights_options, sort_keys=True))
    state = _state_dict_from(raw, weights_uri)
    net = backbone_def.build()
    if spec.name == "efficientnet_lite0" and any(k.startswith("_blocks.") for k in state):
        state = lite0_to_timm(state, net.state_dict())
    if not backbone_def.imagenet_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"weights {weights_uri} do not fit model {spec.name!r}: {e}") from e
    base = backbone_def.preprocessing
    head, word_space, trained_size = _head(spec, net)
    pre = Preprocessing(image_size=spec.image_size or trained_size or base.image_size, resize=spec.resize,
                        interpolation=base.interpolation, mean=base.mean, std=base.std)
    module = EmbeddingModel(net, backbone_def.features, head, pre, scales=spec.scales).eval()
    probe = torch.zeros(1, 3, pre.image_size, pre.image_size, dtype=torch.uint8)
    with torch.inference_mode():
        try:
            dim = module(probe).shape[-1]
        except (AssertionError, RuntimeError) as e:
            if spec.scales == (1.0,):
                raise
            raise ModelError(f"{spec.name} cannot take inputs resized by {spec.scales} from {pre.image_size} px "
                             f"({type(e).__name__}: {e}): it needs one input size, drop --scales") from e
    # Batch norms folded into their convolutions: the same vectors with half the activations allocated per batch.
    noise = torch.randint(0, 256, (2, 3, pre.image_size, pre.image_size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    module = fused_or_original(module, noise) if fold_norms else module
    whitening = None
    if spec.whitening_uri:
        module.whitening, whitening = _whitening_head(spec, int(dim))
        dim = whitening["dim"]
    module = module.to(device)
    if backbone_def.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return LoadedModel(spec, module, pre, int(dim), sha, backbone_def.channels_last, whitening, word_space)


def _head(spec: ModelSpec, net: nn.Module) -> tuple[nn.Module, dict[str, Any] | None, int | None]:
    """The pooling head; for a word space the shipped DeViSE map (words) or ConSE over the backbone's own
    classifier (conse), how it was made (for the fingerprint) and the input size the map was trained at."""
    if spec.space == "visual":
        return make_pooling(spec.pooling, spec.gem_p), None, None
    encoder = load_text_encoder()
    if spec.space == "conse":
        return conse_head(net, encoder), {"method": "conse", "top": CONSE_TOP,
                                          "text_encoder": encoder.fingerprint}, None
    artefact = load_artefact() if spec.weights_uri is None else load_trained_artefact(spec)
    if spec.name != artefact.card["backbone"] or artefact.card["into"] != encoder.fingerprint:
        which = "the shipped word-space map" if spec.weights_uri is None else f"the map of {spec.weights_uri}"
        raise ModelError(f"{which} was trained for {artefact.card['backbone']} into {artefact.card['into']['name']}: "
                         f"give --model {artefact.card['backbone']} (with this text encoder), or use --space conse "
                         f"for {spec.name}")
    weight = artefact.state["weight"]
    return artefact.head(int(weight.shape[1]), encoder.dim), {
        "method": "devise", "sha256": artefact.sha256, "text_encoder": encoder.fingerprint}, \
        int(artefact.card["image_size"])


@functools.lru_cache(maxsize=2)
def cached_model(spec: ModelSpec, device: str) -> LoadedModel:
    """One model per process and device: Spark reuses Python workers, so later tasks skip the load."""
    return load_model(spec, device)


def pick_device(gpu_address: str | None = None) -> torch.device:
    """The device a task should use: the GPU Spark assigned it, else any visible GPU, else the CPU."""
    if gpu_address is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_address)}")
    if torch.cuda.is_available() and os.environ.get("LOOKALIKE_DEVICE", "") != "cpu":
        return torch.device("cuda:0")
    return torch.device("cpu")


def _whitening_head(spec: ModelSpec, pooled_dim: int) -> tuple[nn.Module, dict[str, Any]]:
    raw, sha = _read_weights(spec.whitening_uri, json.dumps(spec.weights_options, sort_keys=True), "whitening")
    try:
        whitening = Whitening.from_bytes(raw, spec.whitening_uri)
    except WhiteningError as e:
        raise ModelError(str(e)) from e
    if whitening.dim_in != pooled_dim:
        raise ModelError(f"whitening {spec.whitening_uri} was learned on {whitening.dim_in}-d embeddings; "
                         f"{spec.name} with {spec.pooling} pooling makes {pooled_dim}-d ones: learn one for this "
                         "model with `lookalike whiten`")
    return WhiteningHead(whitening).eval(), {"sha256": sha, "dim": whitening.dim_out}


@functools.lru_cache(maxsize=4)
def _read_weights(uri: str, options_json: str, what: str = "weights") -> tuple[bytes, str]:
    try:
        raw = read_url(uri, json.loads(options_json), f"read {what}")
    except FileNotFoundError as e:
        raise ModelError(f"{what} not found at {uri}") from e
    return raw, hashlib.sha256(raw).hexdigest()


def _state_dict_from(raw: bytes, uri: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"cannot load weights {uri} as a torch state dict (weights_only=True): {e}") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ModelError(f"weights {uri} hold a {type(obj).__name__}, not a state dict")
    return obj


