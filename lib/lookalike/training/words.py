"""The words objective of `lookalike train --objective words`: the backbone's last stages and a projection into
the text encoder's space learn together, so that a drawing lands near the text vector of its name (InfoNCE
against the names of its batch, as CLIP trains, with the text side frozen: the bundled all-MiniLM-L6-v2). It
trains on the training set's concept drawings (every general icon set's names, the split's train side only) and
is validated as `--space words` is used: each validation concept's name searches the validation drawings.

The trained weights serve as a word space like the shipped one: `--space words --weights RUN/best.pt` reads the
map written beside them (`best.words.pt`, the format of model/devise.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from lookalike.batch.metrics import judge_queries, mean_average_precision, precision_at, recall_at
from lookalike.model.devise import DeViSEHead, artefact_bytes
from lookalike.model.imagenet import imagenet_class_names
from lookalike.model.loading import LoadedModel
from lookalike.model.text import TextEncoder
from lookalike.training.concepts import name_words
from lookalike.training.validation import embed_pngs, whole_groups

TEMPERATURE = 0.05     # of the InfoNCE over a batch's names (the shipped DeViSE map's, chosen on its validation)
HEAD_LR_SCALE = 10.0   # the projection starts at random, the backbone from trained weights: it moves faster


def phrase_of(image_id: str) -> str:
    """What a drawing is called, as a query would say it: `tabler/camera-off-outline` → "camera off"."""
    return " ".join(name_words(image_id.split("/", 1)[-1]))


def concept_phrase(group: str) -> str:
    """A concept group's name as a query: `concept:shopping-cart` → "shopping cart"."""
    return group.split(":", 1)[-1].replace("-", " ")


def concept_rows(table: pa.Table) -> pa.Table:
    """The concept drawings of a split (brands are named, not described: their names teach no words)."""
    return table.filter(pc.equal(table["kind"], "concept"))


class WordTargets:
    """The phrases of a table's drawings and their text vectors (frozen), each row labelled by its phrase."""

    def __init__(self, table: pa.Table, encoder: TextEncoder):
        phrases = [phrase_of(i) for i in table["image_id"].to_pylist()]
        self.vocabulary = sorted(set(phrases))
        self.vectors = torch.from_numpy(encoder.encode(self.vocabulary))
        row_of = {p: i for i, p in enumerate(self.vocabulary)}
        self.labels = np.asarray([row_of[p] for p in phrases])

    def loss(self, loss_fn, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return in_batch_phrase_loss(loss_fn, embeddings, labels, self.vectors)


def in_batch_phrase_loss(loss_fn, embeddings: torch.Tensor, labels: torch.Tensor, phrase_vectors: torch.Tensor
                         ) -> torch.Tensor:
    """Each drawing (labelled by its phrase's row in phrase_vectors) against the phrases of its batch (CLIP-style
    in-batch negatives: against every phrase, the loss's positive × negative pair matrix takes minutes a step)."""
    phrases, inverse = torch.unique(labels, return_inverse=True)
    return loss_fn(embeddings, inverse, ref_emb=phrase_vectors[phrases].to(embeddings.device),
                   ref_labels=torch.arange(len(phrases), device=embeddings.device))


def word_head(visual_dim: int, text_dim: int) -> DeViSEHead:
    """A fresh projection from the pooled visual features into the text space (GeM, L2, linear, L2)."""
    return DeViSEHead(nn.Linear(visual_dim, text_dim), [], torch.zeros(0, text_dim))


def tag_vocabulary(targets: WordTargets, encoder: TextEncoder) -> tuple[list[str], np.ndarray]:
    """The tags a trained word space names images with: its training phrases and ImageNet's class names."""
    words = sorted(set(targets.vocabulary) | set(imagenet_class_names()))
    return words, encoder.encode(words)


def text_to_image(queries: np.ndarray, images: np.ndarray, image_concepts: Sequence[str],
                  concepts: Sequence[str]) -> dict[str, float]:
    """Each concept's text vector (row of queries) ranks the images: P@1, R@10 (the share of its images in the
    top 10), success@10 (one of them there) and mAP."""
    order = np.argsort(-(queries @ images.T), axis=1, kind="stable")
    judged = judge_queries([[int(j) for j in row] for row in order],
                           [{j for j, c in enumerate(image_concepts) if c == name} for name in concepts])
    return {"P@1": round(precision_at(judged, 1), 4), "R@10": round(recall_at(judged, 10), 4),
            "success@10": round(float(judged.relevant[:, :10].any(axis=1).mean()), 4),
            "mAP": round(mean_average_precision(judged), 4), "queries": len(concepts), "images": len(images)}


def validation_metrics(model: LoadedModel, validation: pa.Table, max_images: int, encoder: TextEncoder
                       ) -> dict[str, float]:
    """Each validation concept's name searches the drawings of whole validation concepts (at most max_images,
    the same ones every time): P@1, R@10 and mAP of text → image search."""
    rows = whole_groups(concept_rows(validation), max_images)
    groups = rows["group"].to_pylist()
    concepts = sorted(set(groups))
    images = embed_pngs(model, rows["png"].to_pylist())
    figures = text_to_image(encoder.encode([concept_phrase(c) for c in concepts]), images, groups, concepts)
    return {k: figures[k] for k in ("P@1", "R@10", "mAP")}


class WordsObjective:
    """What the trainer needs of the words objective: its rows and labels, its head and loss, its validation, and
    the word-space map kept with the best weights."""

    def __init__(self, train: pa.Table, model: LoadedModel, encoder: TextEncoder):
        from pytorch_metric_learning.losses import NTXentLoss
        self.table = concept_rows(train)
        self.encoder = encoder
        self.targets = WordTargets(self.table, encoder)
        self.labels = self.targets.labels
        model.module.pooling = word_head(model.dim, encoder.dim)
        model.dim = encoder.dim
        self.head = model.module.pooling
        self.head_parameters = list(self.head.projection.parameters())
        self.loss_fn = NTXentLoss(temperature=TEMPERATURE)
        self._tags: tuple[list[str], np.ndarray] | None = None

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.targets.loss(self.loss_fn, embeddings, labels)

    def validate(self, model: LoadedModel, validation: pa.Table, max_images: int) -> dict[str, float]:
        return validation_metrics(model, validation, max_images, self.encoder)

    def best_map(self) -> bytes:
        """The projection as model/devise.py's artefact, with the tags it names images by (encoded once)."""
        if self._tags is None:
            self._tags = tag_vocabulary(self.targets, self.encoder)
        return artefact_bytes(self.head.projection, *self._tags)
