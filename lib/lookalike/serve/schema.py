"""The worker's OpenAPI schema as strict as its validation: the static schema of the API models, tightened with
what only the served version and the worker's settings know (the vectors' dimension, the filterable columns
and their types, batch and work limits, the classes a query can be weighted toward), so a client or a fuzzer that
follows the schema is never refused."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lookalike.core.schemas import COLOUR_COLUMN
from lookalike.retrieval.filters import RANGE_OPERATORS, UNFILTERABLE
from lookalike.serve.api_models import FILTERS

if TYPE_CHECKING:  # the router builds its schema from a shard's, with neither torch nor faiss
    from lookalike.index.reader import IndexVersion
    from lookalike.retrieval.embedder import QueryEmbedder
    from lookalike.serve.context import ApiSettings

BATCHED = {"VectorQuery": "vectors", "IdQuery": "image_ids", "UriQuery": "uris", "IdList": "image_ids"}


WEIGHTED = ("IdQuery", "UriQuery", "IdVectors")


def served_schema(base: dict[str, Any], version: IndexVersion | None, settings: ApiSettings,
                  embedder: QueryEmbedder | None = None) -> dict[str, Any]:
    schema = copy.deepcopy(base)
    models = schema.get("components", {}).get("schemas", {})
    weighting = _weight_class(embedder)
    for name in WEIGHTED:
        if name in models:
            models[name]["properties"]["weight_class"] = weighting
    limits = settings.limits
    # Stay under the body limit as well: a float in JSON takes up to ~25 bytes.
    per_vector = 25 * (version.dim if version else 1) + 4
    for name, field in BATCHED.items():
        if name in models:
            cap = settings.max_batch if field != "vectors" else max(1, min(
                settings.max_batch, settings.max_body_bytes // 2 // per_vector))
            models[name]["properties"][field]["maxItems"] = cap
    for name in ("VectorQuery", "IdQuery", "UriQuery"):
        model = models.get(name)
        if model is None:
            continue
        props = model["properties"]
        # The work limit is queries × max(k, rescore): the schema gives each query of a full batch its share.
        share = max(1, limits.max_candidates // props[BATCHED[name]]["maxItems"])
        props["k"]["maximum"] = min(limits.max_k, share)
        props["rescore"]["anyOf"][0]["maximum"] = min(limits.max_rescore, share)
        props["nprobe"]["anyOf"][0]["maximum"] = limits.max_nprobe
        # Verification has its own budget, queries × shortlist: likewise shared out over a full batch.
        props["shortlist"]["anyOf"][0]["maximum"] = min(limits.max_shortlist, max(
            1, limits.max_verified // props[BATCHED[name]]["maxItems"]))
        if version is not None:
            props["filters"] = _filters(version)
    if version is None or COLOUR_COLUMN not in version.ids.column_names:  # no colours to weigh: not offered
        for model in models.values():
            if "colour_weight" in model.get("properties", {}):
                for name in ("colour_weight", "colour"):
                    model["properties"].pop(name, None)
    for model in models.values():  # an upload is one or more images (multipart arrays have no minimum by default)
        images = model.get("properties", {}).get("images")
        if images is not None and images.get("type") == "array":
            images["minItems"] = 1
    if version is not None and "VectorQuery" in models:
        vectors = models["VectorQuery"]["properties"]["vectors"]
        vectors["items"].update({"minItems": version.dim, "maxItems": version.dim,
                                 # a vector of zeros has no direction to search
                                 "not": {"items": {"const": 0}}})
    return schema


def router_schema(own: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    """The router's schema: its own paths, with the bodies as its shards' schema states them (the dimension, the
    filterable columns and the limits are the shards'), since the router passes its requests on to them."""
    schema = copy.deepcopy(own)
    models, theirs = schema.get("components", {}).get("schemas", {}), shard.get("components", {}).get("schemas", {})
    for name in models:
        if name in theirs:
            models[name] = copy.deepcopy(theirs[name])
    return schema


def _weight_class(embedder: QueryEmbedder | None) -> dict[str, Any]:
    """The ImageNet classes by name or id where the served model weights queries toward classes (the worker also
    takes a name in any case, or a part of one, which no schema can say); only null where it does not."""
    from lookalike.retrieval.class_focus import weights_classes
    if embedder is None or not weights_classes(embedder.model):
        return {"type": "null", "description": "the served model cannot weight queries toward a class"}
    from lookalike.model.imagenet import imagenet_class_names
    names = imagenet_class_names()
    return {"anyOf": [{"type": "string", "enum": sorted(set(names)) + [str(i) for i in range(len(names))]},
                      {"type": "null"}],
            "description": "like this image, but weighted toward an ImageNet class, by name or id"}


def _filters(version: IndexVersion) -> dict[str, Any]:
    properties = {f.name: _condition(f.type) for f in version.ids.schema if f.name not in UNFILTERABLE}
    return {"anyOf": [{"type": "object", "properties": properties, "additionalProperties": False},
                      {"type": "null"}],
            "description": FILTERS}


def _condition(arrow_type: pa.DataType) -> dict[str, Any]:
    """What a column's filter may be (retrieval/filters.py): its (elements') values, a list of them, or an object
    of the operators its type takes."""
    listed = pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
    item = arrow_type.value_type if listed else arrow_type
    value = _json_type(item)
    values = {"type": "array", "items": value}
    operators: dict[str, Any] = {"any": values, "not": {"anyOf": [value, values]}}
    if listed:
        operators["all"] = values
    text = pa.types.is_string(item) or pa.types.is_large_string(item)
    if text:
        operators["prefix"] = {"anyOf": [value, values]}
    if text or pa.types.is_integer(item) or pa.types.is_floating(item) or pa.types.is_temporal(item):
        operators.update({name: value for name in RANGE_OPERATORS})
    return {"anyOf": [value, values, {"type": "object", "properties": operators, "additionalProperties": False,
                                      "minProperties": 1}]}


def _json_type(arrow_type: pa.DataType) -> dict[str, Any]:
    if pa.types.is_boolean(arrow_type):
        return {"type": "boolean"}
    if pa.types.is_integer(arrow_type):  # the column's own range: a larger value cannot be cast to filter it
        bits = arrow_type.bit_width
        if pa.types.is_signed_integer(arrow_type):
            return {"type": "integer", "minimum": -(2 ** (bits - 1)), "maximum": 2 ** (bits - 1) - 1}
        return {"type": "integer", "minimum": 0, "maximum": 2 ** bits - 1}
    if pa.types.is_floating(arrow_type):
        return {"type": "number"}
    if pa.types.is_date(arrow_type):
        return {"type": "string", "format": "date"}
    if pa.types.is_timestamp(arrow_type):
        return {"type": "string", "format": "date-time"}
    return {"type": "string", "maxLength": 1000}
