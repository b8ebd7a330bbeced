"""The multipart form of image uploads, defined once for the query worker and the router: the same fields and
bounds as a JSON body's options, validated into the same model (ImageSearchOptions), so that both answer a form
as they answer JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Form, Request
from pydantic import ValidationError

from lookalike.core.errors import InputError
from lookalike.image.crop import Crop
from lookalike.retrieval.examples import NEGATIVE_WEIGHT
from lookalike.retrieval.limits import (
    MAX_EXPAND,
    MAX_EXPAND_ALPHA,
    MAX_K,
    MAX_NPROBE,
    MAX_RESCORE,
    MAX_SHORTLIST,
    QueryError,
)
from lookalike.serve.api_models import (
    COLOUR_WEIGHT,
    CROP,
    NEGATIVE_WEIGHT_TEXT,
    WEIGHT_CLASS,
    WEIGHT_STRENGTH,
    ExampleIds,
    ImageSearchOptions,
)

FILTERS = 'a JSON object: metadata column → accepted value(s), e.g. {"class": ["25"]}'


async def image_search_form(
        request: Request,
        k: Annotated[int, Form(ge=1, le=MAX_K, description="hits per query")] = 10,
        nprobe: Annotated[int | None, Form(ge=1, le=MAX_NPROBE, description="inverted lists probed")] = None,
        rescore: Annotated[int | None, Form(ge=0, le=MAX_RESCORE, description="shortlist re-scored exactly")] = None,
        rerank: Annotated[int | None, Form(ge=0, le=MAX_RESCORE, deprecated=True,
                                           description="deprecated name of rescore")] = None,
        expand: Annotated[int | None, Form(ge=0, le=MAX_EXPAND, description="αQE neighbours (0: off)")] = None,
        expand_alpha: Annotated[float | None, Form(ge=0, le=MAX_EXPAND_ALPHA, description="αQE exponent")] = None,
        verify: Annotated[bool, Form(description="verify each shortlist geometrically")] = True,
        shortlist: Annotated[int | None, Form(ge=1, le=MAX_SHORTLIST, description="candidates verified")] = None,
        filters: Annotated[str | None, Form(max_length=100_000, description=FILTERS)] = None,
        weight_class: Annotated[str | None, Form(min_length=1, max_length=200, description=WEIGHT_CLASS)] = None,
        weight_strength: Annotated[float | None, Form(ge=0, le=1, description=WEIGHT_STRENGTH)] = None,
        crop: Annotated[str | None, Form(max_length=200, description=CROP)] = None,
        colour_weight: Annotated[float | None, Form(ge=0, le=1, description=COLOUR_WEIGHT)] = None,
) -> ImageSearchOptions:
    """The form's options, as strictly validated as a JSON body's (filters arrive as JSON text)."""
    if (await request.form()).get("weight_class") == "":  # multipart drops empty fields silently: say so instead
        raise QueryError("weight_class is empty: give a class name or id, or leave the field out")
    renamed = {"rerank": rerank} if rerank is not None else {}
    return form_options(k=k, nprobe=nprobe, rescore=rescore, expand=expand, expand_alpha=expand_alpha, verify=verify,
                        shortlist=shortlist, filters=filters, weight_class=weight_class,
                        weight_strength=weight_strength, crop=crop_field(crop), colour_weight=colour_weight,
                        **renamed)


async def examples_form(
        image_ids: Annotated[list[str] | None, Form(description="catalogue images to find more of (the field "
                                                                "repeated)")] = None,
        negative_ids: Annotated[list[str] | None, Form(description="catalogue images to find fewer of (the field "
                                                                   "repeated)")] = None,
        negative_weight: Annotated[float, Form(ge=0, le=1, description=NEGATIVE_WEIGHT_TEXT)] = NEGATIVE_WEIGHT,
) -> ExampleIds:
    """The catalogue examples of a search by examples, validated as ExampleIds."""
    try:
        return ExampleIds(image_ids=image_ids or [], negative_ids=negative_ids or [], negative_weight=negative_weight)
    except ValidationError as e:
        raise QueryError(f"invalid examples: {_problems(e)}") from e


def form_options(filters: str | None = None, **options: Any) -> ImageSearchOptions:
    try:
        parsed = json.loads(filters) if filters else None
    except (json.JSONDecodeError, RecursionError) as e:
        raise QueryError(f"filters must be a JSON object such as {{\"class\": [\"25\"]}}: {e}") from e
    try:
        return ImageSearchOptions(filters=parsed, **options)
    except ValidationError as e:
        raise QueryError(f"invalid search options: {_problems(e)}") from e


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in error.errors()[:3])


def crop_field(text: str | None) -> list[float] | None:
    """A form's crop ("x0,y0,x1,y1") as the JSON body's four numbers (their bounds are the model's to check)."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as e:
        raise QueryError(f"crop {text[:60]!r}: four numbers x0,y0,x1,y1, e.g. 0.5,0,1,1") from e


def crop_part(text: str | None) -> Crop | None:
    """A form's crop as the part it keeps (routes whose form has no options model: /embed, /explain/images)."""
    try:
        return Crop.of(crop_field(text))
    except InputError as e:
        raise QueryError(str(e)) from e


def as_form(options: ImageSearchOptions) -> dict[str, str]:
    """The options as form fields again, to pass an upload on to the shards."""
    out = {}
    for key, value in options.model_dump(exclude_none=True).items():
        if key == "filters":
            out[key] = json.dumps(value)
        elif key == "crop":
            out[key] = ",".join(repr(v) for v in value)
        else:
            out[key] = "true" if value is True else "false" if value is False else str(value)
    return out
