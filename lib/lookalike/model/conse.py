"""ConSE (Norouzi et al. 2014): an image in the word space without training. The backbone's ImageNet classifier
gives class probabilities; the image's word vector is the convex combination of its top-T class names' text
vectors, weighted by those probabilities, then L2-normalised. Catalogue images embedded this way are searched
by the text vector of a phrase ("bird in a circle"), and an image's nearest class names are its tags."""

from __future__ import annotations

import torch
from torch import nn

from lookalike.model.devise import nearest_words
from lookalike.model.imagenet import imagenet_class_names, imagenet_classifier
from lookalike.model.text import TextEncoder

CONSE_TOP = 10  # the top-T classes combined (T = 10 in the paper)


class ConSEHead(nn.Module):
    """(B, C, H, W) backbone features → average pool → classifier → softmax → top-T → Σ p·word(class) → L2."""

    def __init__(self, classifier: nn.Linear, class_vectors: torch.Tensor, top: int = CONSE_TOP):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("class_vectors", class_vectors.float())
        self.top = top

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.float().mean(dim=(2, 3))
        return self.classifier(pooled).softmax(dim=-1)

    def tags(self, vectors: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """The k class names nearest each word-space vector, with their cosines: an image's tags."""
        return nearest_words(vectors, self.class_vectors, imagenet_class_names(), k)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        p = self.probabilities(features)
        weights, classes = p.topk(self.top, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        combined = torch.einsum("bt,btd->bd", weights, self.class_vectors[classes])
        return nn.functional.normalize(combined, dim=-1)


def conse_head(net: nn.Module, encoder: TextEncoder) -> ConSEHead:
    classifier = imagenet_classifier(net)
    names = imagenet_class_names()
    return ConSEHead(classifier, torch.from_numpy(encoder.encode(names)))
