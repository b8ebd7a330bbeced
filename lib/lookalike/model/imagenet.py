"""The ImageNet-1k classifier a backbone was trained with, and its class names: what ConSE puts images in the word
space with (model/conse.py) and what class-weighted search re-weights channels by (model/class_weighting.py)."""

from __future__ import annotations

import functools

from torch import nn

from lookalike.model.spec import ModelError


@functools.cache
def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in classifier order, as torchvision ships them (no download)."""
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_classifier(net: nn.Module, needed_by: str = "ConSE", instead: str = "--space visual") -> nn.Linear:
    """The final ImageNet classifier of a timm or torchvision backbone; without one, a ModelError saying what
    needed it (`needed_by`) and what to do `instead`."""
    if hasattr(net, "get_classifier"):  # timm
        head = net.get_classifier()
    elif isinstance(getattr(net, "fc", None), nn.Linear):  # torchvision ResNets
        head = net.fc
    elif isinstance(getattr(net, "classifier", None), nn.Sequential):  # torchvision EfficientNets
        head = net.classifier[-1]
    else:  # a ViT's head reads its class token, not the pooled patch tokens the features are
        head = None
    if not isinstance(head, nn.Linear) or head.out_features != 1000:
        raise ModelError(f"{needed_by} needs the backbone's 1,000-class ImageNet classifier; this model has "
                         f"{type(head).__name__ if head is not None else 'none'}: use a backbone with one (e.g. "
                         f"--model efficientnet_lite0, its ImageNet weights bundled), or {instead}")
    return head
