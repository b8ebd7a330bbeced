"""A model's card: the JSON beside its weights file (`lite0-marks.json` beside the shipped `lite0-marks.pt`;
`lookalike train` writes `best.json` beside `best.pt`, and `--out DIR` `RUN.json` beside `RUN.pt`). It says how
the weights were trained and measured, and what the product should do with them: whether a PCA-whitening helps
(`whitening.helps`, followed by `lookalike reindex`)."""

from __future__ import annotations

import json
import posixpath
from typing import Any

from lookalike.core.store import read_url
from lookalike.model.backbones import backbone_of
from lookalike.model.spec import ModelError, ModelSpec


def card_uri(weights_uri: str) -> str:
    stem, _ = posixpath.splitext(weights_uri)
    return stem + ".json"


def model_card(spec: ModelSpec) -> dict[str, Any] | None:
    """The card of the spec's weights (given, else the backbone's own); None where the weights have none, as the
    ImageNet weights and a user's own weights need not."""
    weights = spec.weights_uri
    if weights is None:
        default = backbone_of(spec).default_weights
        weights = default() if default else None
    if weights is None:
        return None
    uri = card_uri(weights)
    try:
        raw = read_url(uri, spec.weights_options or {}, "read the model card")
    except FileNotFoundError:
        return None
    try:
        card = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"the model card {uri} is not JSON ({e}): fix or remove it") from e
    if not isinstance(card, dict):
        raise ModelError(f"the model card {uri} holds a {type(card).__name__}, not an object: fix or remove it")
    return card


def whitening_helps(spec: ModelSpec) -> tuple[bool | None, dict[str, Any] | None]:
    """What the card measured of a PCA-whitening for this model (None: never measured, or no card)."""
    measured = (model_card(spec) or {}).get("whitening")
    if not isinstance(measured, dict) or not isinstance(measured.get("helps"), bool):
        return None, None
    return measured["helps"], measured
