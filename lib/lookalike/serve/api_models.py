"""Request and response bodies of the query worker's HTTP API (pydantic models, which also make its OpenAPI
schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lookalike.retrieval.query import MAX_K

FilterValue = str | int | float | bool


class SearchOptions(BaseModel):
    k: int = Field(10, ge=1, le=MAX_K, description="hits per query")
    nprobe: int | None = Field(None, ge=1, description="inverted lists probed (default: the manifest's)")
    rerank: int | None = Field(None, ge=0, description="shortlist re-scored exactly (default: the manifest's)")
    filters: dict[str, list[FilterValue] | FilterValue] | None = Field(
        None, description="metadata column → accepted value(s); hits must match every column")


class VectorQuery(SearchOptions):
    vectors: list[list[float]] = Field(..., min_length=1)


class IdQuery(SearchOptions):
    image_ids: list[str] = Field(..., min_length=1)
    include_self: bool = Field(False, description="keep the query image itself among its hits")


class UriQuery(SearchOptions):
    uris: list[str] = Field(..., min_length=1)


class HitOut(BaseModel):
    rank: int
    image_id: str
    uri: str
    score: float = Field(description="cosine similarity")
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
    image_ids: list[str] = Field(..., min_length=1)
