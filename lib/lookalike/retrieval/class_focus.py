"""Class-weighted queries ("like this image, but weighted toward an ImageNet class"): what a model can weight
toward, checked before any image is read. Shared by the HTTP worker, `lookalike search` and the Python API."""

from __future__ import annotations

from lookalike.model.class_weighting import DEFAULT_STRENGTH, ClassFocus, ClassWeightingError
from lookalike.model.imagenet import imagenet_classifier
from lookalike.model.loading import LoadedModel
from lookalike.model.spec import ModelError
from lookalike.retrieval.limits import QueryError
from lookalike.retrieval.word_queries import in_word_space


def class_focus(model: LoadedModel, weight_class: str | int | None, strength: float | None = None
                ) -> ClassFocus | None:
    """The ClassFocus of a class-weighted query (an ImageNet class name or id), or None for a plain one; what
    cannot be weighted raises QueryError saying why."""
    if weight_class is None:
        if strength is not None:
            raise QueryError("a class weighting strength needs the class to weight toward (weight_class)")
        return None
    if in_word_space(model):
        raise QueryError("class-weighted search re-weights a visual model's features; this index's vectors "
                         "are in a word space: search a visual index")
    try:
        imagenet_classifier(model.module.backbone, "class-weighted search", "search without a class")
        return ClassFocus.of(weight_class, DEFAULT_STRENGTH if strength is None else strength)
    except (ClassWeightingError, ModelError) as e:
        raise QueryError(str(e)) from e


def weights_classes(model: LoadedModel) -> bool:
    """Whether queries can be weighted toward an ImageNet class (a visual model with its classifier)."""
    try:
        return class_focus(model, 0) is not None
    except QueryError:
        return False
