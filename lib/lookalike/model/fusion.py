"""Batch norms folded into the convolutions before them, for inference.

In eval mode a batch norm is a per-channel affine map, so it can live in the preceding convolution's weights and
bias (torch.nn.utils.fusion). The forward pass then allocates one activation per layer instead of two: measured
on EfficientNet-Lite0 at 320 px, batch 32, one CPU thread, it is what makes an embed worker's memory fit a
1.5 GB bound at the same throughput (bench/embed_memory.py).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

log = logging.getLogger(__name__)


class _AfterNorm(nn.Module):
    """What a norm+activation module still does once its norm is folded away (timm's BatchNormAct2d: drop, act)."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        self.drop = getattr(norm, "drop", nn.Identity())
        self.act = getattr(norm, "act", nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def fold_batch_norms(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm2d registered right after a Conv2d in the same parent (timm and torchvision
    register a block's layers in the order they run). Returns how many were folded; the module must be in eval
    mode, and callers check the output is unchanged (fused_or_original)."""
    if module.training:
        raise ValueError("batch norms fold only in eval mode: call .eval() first")
    folded = 0
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (_, conv), (norm_name, norm) in zip(children, children[1:], strict=False):
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)) or not norm.track_running_stats:
                continue
            if norm.num_features != conv.out_channels:
                continue
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                norm.eps, norm.weight, norm.bias)
            conv.weight, conv.bias = weight, bias
            setattr(parent, norm_name, _AfterNorm(norm))
            folded += 1
    return folded


def fused_or_original(module: nn.Module, probe: torch.Tensor, tolerance: float = 1e-4) -> nn.Module:
    """The module with its batch norms folded when that leaves its output on the probe unchanged (within
    tolerance, as cosine distance of the pooled vectors); else the module as it was, with a warning."""
    fused = copy.deepcopy(module)
    with torch.no_grad():  # not inference_mode: folded weights made there could not be used outside it
        if fold_batch_norms(fused) == 0:
            return module
    with torch.inference_mode():
        before, after = module(probe), fused(probe)
    drift = float((1 - nn.functional.cosine_similarity(before.flatten(1), after.flatten(1))).abs().max())
    if drift > tolerance:
        log.warning("folding batch norms changed the model's output (cosine distance %.2g): kept unfolded", drift)
        return module
    return fused
