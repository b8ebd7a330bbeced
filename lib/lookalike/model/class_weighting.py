"""Class-weighted search: "like this image, but weighted toward class C" (the shoe part of a picture of a shoe and
a bag). The backbone's ImageNet classifier weights into C's logit, applied to each position of the query's feature
map, are C's class activation map (Zhou et al., CVPR 2016): where in the picture C is. The query's activations are
re-weighted by it before pooling, so its descriptor is mostly the C part's, and it is searched in the same index
as any query.

Only the query is re-weighted. Re-weighting the catalogue's pooled channels as well (the class's positive
classifier weights as a diagonal projection of query and stored vectors, re-scored on a shortlist) was measured
on the same composite-icon queries and kept less of the query's content (bench/class_weighting.py)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch

from lookalike.core.errors import InputError
from lookalike.model.imagenet import imagenet_class_names

# The weight of a position is (1 − s) + s · (CAM / max CAM): s = 1 keeps only where C is seen, s = 0 is plain
# search. 1 moved composite queries' hits furthest toward the asked part (bench/class_weighting.py).
DEFAULT_STRENGTH = 1.0


class ClassWeightingError(InputError):
    """A class that does not name one ImageNet class, or a strength outside [0, 1]."""


@dataclass(frozen=True)
class ClassFocus:
    """What a class-weighted query is weighted toward."""

    class_id: int
    name: str
    strength: float = DEFAULT_STRENGTH

    def __post_init__(self):
        if not 0.0 <= self.strength <= 1.0:
            raise ClassWeightingError(f"class weighting strength {self.strength}: give 0 (plain search) to 1 (only "
                                      "where the class is seen)")

    @classmethod
    def of(cls, reference: str | int, strength: float = DEFAULT_STRENGTH) -> ClassFocus:
        class_id, name = resolve_class(reference)
        return cls(class_id, name, strength)

    def describe(self) -> dict[str, object]:
        return {"class_id": self.class_id, "class": self.name, "strength": self.strength}


def position_weights(features: torch.Tensor, class_weights: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, C, H, W) features, the classifier's (C,) weights into the class → (B, 1, H, W) weights in [1 − s, 1]:
    the class activation map, clipped at 0 and scaled to a maximum of 1 per image, mixed with 1 by strength s. An
    image where the class is seen nowhere (no positive activation) keeps weights of 1: it is searched as it is,
    not as the zero vector strength 1 would leave of it."""
    cam = torch.einsum("bchw,c->bhw", features.float(), class_weights.float()).clamp(min=0)
    peak = cam.flatten(1).amax(dim=1).view(-1, 1, 1)
    relative = torch.where(peak > 0, cam / peak.clamp(min=1e-30), torch.ones_like(cam))
    return ((1.0 - strength) + strength * relative).unsqueeze(1)


def resolve_class(reference: str | int) -> tuple[int, str]:
    """An ImageNet class by id (0–999) or name (case-insensitive; part of a name is enough when it names only
    that class); anything else raises ClassWeightingError listing what it could mean."""
    names = imagenet_class_names()
    text = str(reference).strip()
    if text.isdigit():
        if int(text) < len(names):
            return int(text), names[int(text)]
        raise ClassWeightingError(f"class id {text}: ImageNet classes are numbered 0–{len(names) - 1}")
    key = text.lower()
    matches = [i for i, n in enumerate(names) if n.lower() == key] or [
        i for i, n in enumerate(names) if key and key in n.lower()]
    if len(matches) == 1:
        return matches[0], names[matches[0]]
    if matches:
        shown = ", ".join(f"{names[i]!r} ({i})" for i in matches[:12]) + (" …" if len(matches) > 12 else "")
        raise ClassWeightingError(f"{text!r} names {len(matches)} ImageNet classes: {shown}; give one name or "
                                  "its id")
    close = difflib.get_close_matches(key, [n.lower() for n in names], n=5, cutoff=0.6)
    raise ClassWeightingError(f"{text!r} is not an ImageNet class name" + (
        f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; give a class name or an id 0–999"))
