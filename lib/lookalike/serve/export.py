"""Search answers exported: the same hits as the JSON answer, one row per hit as CSV (for a spreadsheet or a
report), on the worker and the router alike (`?format=csv` on every search route)."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import Response

HIT_FIELDS = ("rank", "image_id", "uri", "score", "cosine", "inliers", "percentile", "colour")
LIST_SEPARATOR = "|"  # a list column's values in one cell (a mark's Vienna codes)

AnswerFormat = Annotated[Literal["json", "csv"], Query(alias="format", description="json (the default), or csv: "
                                                       "one row per hit, its metadata columns after its scores")]
CSV_RESPONSE = {"description": "with format=csv: one row per hit", "content": {"text/csv": {"schema": {
    "type": "string"}}}}


def in_format(response: Response, answer_format: str) -> Response:
    """A search's JSON answer, or the same hits as CSV."""
    if answer_format == "json":
        return response
    return Response(answer_csv(json.loads(response.body)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="hits.csv"'})


def answer_csv(answer: dict[str, Any]) -> str:
    """query, rank, image_id, uri, score, cosine, inliers, percentile, then every metadata column any hit has, in
    the order they first appear (a list's values joined by |, a value a hit lacks left empty)."""
    rows = [(result["query"], hit) for result in answer["results"] for hit in result["hits"]]
    columns = list(dict.fromkeys(c for _, hit in rows for c in hit.get("metadata", {})))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["query", *HIT_FIELDS, *columns])
    for query, hit in rows:
        metadata = hit.get("metadata", {})
        writer.writerow([query, *(_cell(hit.get(f)) for f in HIT_FIELDS), *(_cell(metadata.get(c)) for c in columns)])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(_cell(v) for v in value)
    return str(value)
