"""Global pooling heads that turn a feature map (B, C, H, W) into one descriptor per image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.model.spec import POOLINGS, ModelError


class GeM(nn.Module):
    """Generalised mean pooling (Radenović et al.): p=1 is average, p→∞ is max; p≈3 suits retrieval."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = p
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Clamp first: ReLU features are >= 0 but fp16 rounding can make tiny negatives, and x**p of a
        # negative number with fractional p is NaN.
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class RMAC(nn.Module):
    """Regional max-pooling (Tolias et al.): max over a multi-scale grid of square regions, each region
    L2-normalised, then summed. The region grid follows the reference implementation (overlap 0.4)."""

    def __init__(self, levels: int = 3, eps: float = 1e-6):
        super().__init__()
        self.levels = levels
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.normalize(x.amax(dim=(-2, -1)), dim=-1, eps=self.eps)
        for top, left, size_h, size_w in _rmac_regions(x.shape[-2], x.shape[-1], self.levels):
            region = x[..., top:top + size_h, left:left + size_w].amax(dim=(-2, -1))
            out = out + F.normalize(region, dim=-1, eps=self.eps)
        return out


def _rmac_regions(h: int, w: int, levels: int, overlap: float = 0.4) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of the R-MAC grid for an h×w map, after the reference implementation
    (cirtorch `rmac`): square regions of side 2·min(h, w)/(l+1) at level l, with extra regions along
    the longer side chosen so that neighbours overlap by about 40%."""
    side = min(h, w)
    extra = 0
    if h != w:
        steps = [2, 3, 4, 5, 6, 7]
        gaps = [(max(h, w) - side) / (s - 1) for s in steps]
        extra = 1 + min(range(len(steps)), key=lambda i: abs((side**2 - side * gaps[i]) / side**2 - overlap))
    extra_h, extra_w = (extra, 0) if h > w else (0, extra)
    regions = []
    for level in range(1, levels + 1):
        size = math.floor(2 * side / (level + 1))
        if size == 0:
            continue
        tops = _starts(h, size, level + extra_h)
        lefts = _starts(w, size, level + extra_w)
        regions += [(t, left, size, size) for t in tops for left in lefts]
    return regions


def _starts(length: int, size: int, count: int) -> list[int]:
    step = 0.0 if count == 1 else (length - size) / (count - 1)
    return [min(math.floor(i * step), length - size) for i in range(count)]


def make_pooling(name: str, gem_p: float = 3.0) -> nn.Module:
    if name == "avg":
        return _Lambda(lambda x: x.mean(dim=(-2, -1)))
    if name == "max":
        return _Lambda(lambda x: x.amax(dim=(-2, -1)))
    if name == "gem":
        return GeM(p=gem_p)
    if name == "rmac":
        return RMAC()
    raise ModelError(f"unknown pooling {name!r}: choose one of {', '.join(POOLINGS)}")


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)
