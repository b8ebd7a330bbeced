"""Request and response bodies of the query worker's HTTP API (pydantic models, which also make its OpenAPI
schema)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from lookalike.core.errors import InputError
from lookalike.core.manifest import RENAMED_SEARCH_PARAMS
from lookalike.image.crop import CROP_FORMAT, Crop
from lookalike.model.text import MAX_TEXT_CHARS, PHRASE
from lookalike.retrieval.examples import NEGATIVE_WEIGHT
from lookalike.retrieval.filters import OPERATORS
from lookalike.retrieval.limits import (
    DEFAULT_SHORTLIST,
    MAX_EXPAND,
    MAX_EXPAND_ALPHA,
    MAX_K,
    MAX_NPROBE,
    MAX_RESCORE,
    MAX_SHORTLIST,
)


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is expected, not a boolean")
    return value


# A whole number as JSON Schema's "integer" has it (20 and 20.0 alike), never a boolean.
Count = Annotated[int, BeforeValidator(_no_bool)]


def count(lo: int, hi: int) -> Any:
    """A Count within bounds (inside the type, so that an optional one's schema states them as JSON Schema does)."""
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_no_bool)]
# The schema is as strict as the validation behind it: what it allows, the worker answers.
FilterValue = Annotated[str, Field(max_length=1000)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool
Component = Annotated[float, Field(allow_inf_nan=False)]
ImageId = Annotated[str, Field(min_length=1, max_length=1000)]
ClassName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
WEIGHT_CLASS = ("image, URI and id queries: like this image, but weighted toward an ImageNet class (a name such as "
                "'umbrella', or an id 0-999): the query's features are weighted by where the class is seen")
WEIGHT_STRENGTH = "how far the class weighting goes: 0 = plain search, 1 (the default) = only where the class is seen"


log = logging.getLogger(__name__)

_warned: set[str] = set()  # each deprecated name is logged once per process, not once per request


def accept_deprecated_names(fields: dict[str, Any]) -> dict[str, Any]:
    """Today's names for a request's deprecated ones (a warning in the worker's log); both at once is an error."""
    for old, new in RENAMED_SEARCH_PARAMS.items():
        if old in fields:
            if fields.get(new) is not None:
                raise ValueError(f"{old} is the deprecated name of {new}: give {new} alone")
            if old not in _warned:
                _warned.add(old)
                log.warning("requests use the deprecated field %r: use %r", old, new)
            fields = {**{k: v for k, v in fields.items() if k != old}, new: fields[old]}
    return fields


FILTERS = ("metadata column → a condition, and hits must meet every column's: a value or a list of values (any of "
           "them; for a list column, holds one of them), or an object of any, all, not, prefix, gte, gt, lte, lt "
           "(all must hold)")


class Condition(BaseModel):
    """A filter's operators on one column (retrieval/filters.py); every one given must hold."""
    # Operators not given are absent, never null: the schema says so (minProperties, no nulls), as validation does.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"minProperties": 1})
    any: list[FilterValue] = Field(None, description="one of these values (a list column: holds one)")
    all: list[FilterValue] = Field(None, description="a list column holds every one of these")
    not_: list[FilterValue] | FilterValue = Field(None, alias="not", description="none of these")
    prefix: list[Annotated[str, Field(max_length=1000)]] | Annotated[str, Field(max_length=1000)] = Field(
        None, description="a text (of a list column: one of its texts) starts with one of these")
    gte: FilterValue = Field(None, description="at or above (numbers, ISO dates and times, text)")
    gt: FilterValue = Field(None, description="above")
    lte: FilterValue = Field(None, description="at or below")
    lt: FilterValue = Field(None, description="below")

    @model_validator(mode="after")
    def _something(self) -> Condition:
        if not self.as_filter():
            raise ValueError(f"a condition names at least one of {', '.join(OPERATORS)}")
        return self

    def as_filter(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        return accept_deprecated_names(data) if isinstance(data, dict) else data

    # JSON's true is no 1 (Count), and 1 is no true (strict booleans)
    k: Count = Field(10, ge=1, le=MAX_K, description="hits per query")
    nprobe: count(1, MAX_NPROBE) | None = Field(None, description="inverted lists probed (default: the manifest's)")
    rescore: count(0, MAX_RESCORE) | None = Field(None, description="shortlist re-scored exactly (default: the "
                                                                  "manifest's)")
    expand: count(0, MAX_EXPAND) | None = Field(None, description="query expansion (αQE): the query averaged with "
                                                                  "its top `expand` hits, then searched again; 0 = off "
                                                                  "(default: the manifest's)")
    expand_alpha: float | None = Field(None, ge=0, le=MAX_EXPAND_ALPHA, allow_inf_nan=False, strict=True,
                                       description="αQE weight exponent: hits weigh cosine ** expand_alpha")
    filters: dict[Annotated[str, Field(min_length=1)], list[FilterValue] | FilterValue | Condition] | None = Field(
        None, description=FILTERS)

    @field_validator("filters")
    @classmethod
    def _plain(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Conditions as the plain objects a search takes (and a router passes on)."""
        if value is None:
            return None
        return {column: c.as_filter() if isinstance(c, Condition) else c for column, c in value.items()}

    @field_serializer("filters")
    def _as_given(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return value  # already plain (the validator above): passed on to shards as it is
    verify: bool = Field(True, strict=True, description="image, URI and id queries against a version with local "
                                                        "features: verify the shortlist geometrically and re-rank it")
    shortlist: count(1, MAX_SHORTLIST) | None = Field(
        None, description=f"candidates verified per query (default {DEFAULT_SHORTLIST})")


class ClassWeighting(BaseModel):
    """Options of queries that have an image (uploads, URIs, catalogue ids): vectors and texts have no features to
    weight, and their bodies refuse these fields."""
    weight_class: ClassName | None = Field(None, description=WEIGHT_CLASS)
    weight_strength: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, strict=True,
                                          description=WEIGHT_STRENGTH)


Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
CROP = f"search a part of each query image: {CROP_FORMAT}"
PERCENTILE = "the share (0-100) of catalogue images whose nearest other catalogue image is less similar than the cosine"
NEGATIVE_WEIGHT_TEXT = ("how far the images to find fewer of push the query away: the query is the mean of the "
                        "examples to find more of, minus this times the mean of the others")


class Cropping(BaseModel):
    """Options of queries made of image bytes (uploads, URIs): a part of the image instead of all of it."""
    crop: list[Fraction] | None = Field(None, min_length=4, max_length=4, description=CROP)

    @field_validator("crop")
    @classmethod
    def _a_box(cls, value: list[float] | None) -> list[float] | None:
        try:
            Crop.of(value)
        except InputError as e:
            raise ValueError(str(e)) from e
        return value

    @property
    def part(self) -> Crop | None:
        return Crop.of(self.crop)


COLOUR_WEIGHT = ("how much the colours weigh among the shortlist: 0 (the default) ranks by shape alone, 1 by "
                 "colour alone; each candidate's score becomes (1 - w) x its score + w x the colours' similarity")
# 64 bytes in base64: 85 characters, one whose last 4 bits are zero, and the padding.
ColourText = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{85}[AQgw]==$", description="a colour histogram "
                                  "(base64 of 64 bytes), as /embed and /vectors give it")]


class Colouring(BaseModel):
    """Options of queries with colours (images, URIs, catalogue ids, examples; a vector with its `colour`)."""
    colour_weight: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, strict=True, description=COLOUR_WEIGHT)


class IdSearchOptions(SearchOptions, ClassWeighting, Colouring):
    pass


class ImageSearchOptions(IdSearchOptions, Cropping):
    pass


class VectorQuery(SearchOptions, Colouring):
    colour: ColourText | None = Field(None, description="the queries' colours, for colour_weight (one histogram "
                                                        "for every vector of the request)")
    vectors: list[Annotated[list[Component], Field(min_length=1)]] = Field(
        ..., min_length=1, description="query vectors, each of the index's dimension (normalised by the worker)")


class IdQuery(IdSearchOptions):
    image_ids: list[ImageId] = Field(..., min_length=1)
    include_self: bool = Field(False, strict=True, description="keep the query image itself among its hits")


# At least one character that is neither blank nor a comma: a query with no phrase in it is refused by the schema,
# with the same blank characters the encoder trims (model.text.PHRASE).
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=PHRASE)]
TEXTS = ("text queries against a word-space index, e.g. 'bird in a circle'; comma-separated phrases in one text "
         "average their vectors")


class TextQuery(SearchOptions):
    texts: list[Text] = Field(..., min_length=1, description=TEXTS)


class TextList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Text] = Field(..., min_length=1, description=TEXTS)


class TagOut(BaseModel):
    word: str
    score: float = Field(description="cosine of the image's word-space vector and the word's")


class TagResult(BaseModel):
    image: str
    tags: list[TagOut]


class TagAnswer(BaseModel):
    results: list[TagResult]


class UriQuery(ImageSearchOptions):
    uris: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(..., min_length=1)


class HitOut(BaseModel):
    rank: int
    image_id: str
    uri: str
    score: float = Field(description="what the hits are ranked by: the cosine similarity, plus the verification "
                                     "bonus where the hit was verified (cosine + 0.4 × min(1, inliers / 20) from 6 "
                                     "inliers)")
    cosine: float = Field(description="the cosine similarity of the global descriptors (1 = the same direction)")
    inliers: int | None = Field(None, description="keypoints fitting one transform, where the hit was verified")
    percentile: float | None = Field(None, description=f"{PERCENTILE} (not for text queries)")
    colour: float | None = Field(None, description="the colours' similarity (0-1), where colour weighed")
    metadata: dict[str, Any] = Field(description="the images table's other columns")


class ResultOut(BaseModel):
    query: str | int = Field(description="the id, file name, URI or position of the query")
    hits: list[HitOut]


class SearchAnswer(BaseModel):
    name: str
    version: str
    k: int
    took_ms: float
    results: list[ResultOut]


class IdList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_ids: list[ImageId] = Field(..., min_length=1)


class IdVectors(IdList, ClassWeighting):
    """Stored vectors; with weight_class, the images re-embedded toward that class instead (a class-weighted id
    query through the router)."""


class ExampleIds(BaseModel):
    """The catalogue examples of a search by examples, and how much the ones to find fewer of weigh."""
    model_config = ConfigDict(extra="forbid")
    image_ids: list[ImageId] = Field([], description="catalogue images to find more of")
    negative_ids: list[ImageId] = Field([], description="catalogue images to find fewer of")
    negative_weight: float = Field(NEGATIVE_WEIGHT, ge=0, le=1, allow_inf_nan=False, description=NEGATIVE_WEIGHT_TEXT)


class ExplainIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query_id: ImageId = Field(description="the catalogue image that is the query (its stored vector and features)")
    image_id: ImageId = Field(description="the catalogue image to compare it with")


class MatchOut(BaseModel):
    feature_size: int = Field(description="coordinates are pixels of each image resized to this longest side")
    mirrored: bool = Field(description="the query's mirror image is what fitted; query_xy are in the query's own "
                                       "orientation")
    transform: list[list[float]] = Field(description="2×3 similarity (or 3×3 homography) from the query (its "
                                                     "mirror when mirrored) onto the candidate")
    query_xy: list[list[float]] = Field(description="the inlier keypoints in the query, [x, y] each")
    candidate_xy: list[list[float]] = Field(description="their matches in the candidate, pair by pair")


class ExplainAnswer(BaseModel):
    name: str
    version: str
    query: str = Field(description="the query's id or file name")
    image_id: str
    uri: str
    score: float = Field(description="what a verified search ranks the candidate by: the cosine, plus the "
                                     "verification bonus where verified")
    cosine: float = Field(description="the cosine similarity of the global descriptors")
    inliers: int | None = Field(description="keypoints fitting one transform (null: no local features to fit)")
    verified: bool = Field(description="enough inliers for the bonus")
    percentile: float | None = Field(description=PERCENTILE)
    reading: str = Field(description="that percentile in one sentence")
    metadata: dict[str, Any] = Field(description="the candidate's other columns of the images table")
    match: MatchOut | None = Field(description="the fit's keypoint pairs, for a comparison view (null: none)")


class PartOut(BaseModel):
    crop: list[float] = Field(description="the part as x0, y0, x1, y1 fractions of the image: what `crop` takes")
    kind: Literal["figure", "text"] = Field(description="figure (a device) or text (a line or block of lettering)")
    share: float = Field(description="its share of the mark's ink (0-1)")


class PartsAnswer(BaseModel):
    image: str = Field(description="the uploaded file's name")
    parts: list[PartOut] = Field(description="largest first; empty where the mark is one part")


class ErrorOut(BaseModel):
    detail: str = Field(description="what is wrong and what would be right")
    error_kind: str | None = Field(None, description="for an image that cannot be used: its stable error kind")


ERRORS = {
    400: "the query cannot be answered as asked (an image that cannot be decoded, a bound exceeded, a filter on an "
         "unknown column); the message says why",
    401: "missing or wrong bearer token",
    403: "a URI outside the worker's allow-list",
    404: "an image id that is not in the served version",
    409: "search by image is off: the served version does not name its model (or, for text and tags, its model "
         "is not in a word space)",
    413: "a request body, image or pixel count above the worker's limits",
    502: "the router: no shard answered (or, with --on-missing error, one did not); the message names each and why",
    503: "no index version is loaded yet",
    504: "the search took longer than the request time limit",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each error status it can answer, documented in the OpenAPI schema."""
    return {code: {"model": ErrorOut, "description": ERRORS[code]} for code in codes}
