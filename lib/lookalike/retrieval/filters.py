"""Metadata filters: which catalogue images a search may return, by the columns of the images table.

A filter maps a column to a condition; an image passes when every column's condition holds. A condition is a
value or a list of values (any of them), or an object of operators, all of which must hold:

    any     [values]        one of them (for a list column, such as a mark's Vienna codes: holds one of them)
    all     [values]        a list column holds every one of them
    not     value(s)        none of them
    prefix  text or [texts] a text (or, for a list column, one of its texts) starts with one of them
    gte, gt, lte, lt        a number, date, time or text at or above, above, at or below, below the value

The command line and the search page write them as text, `COLUMN OP VALUE[,VALUE...]`: `nice=25,9` (any of),
`vienna&=03.01.01,26.04.02` (all of), `status!=expired` (none of), `vienna^=03.01` (prefix), `filed>=2020-01-01`
(and >, <=, <). Conditions on one column are combined: `filed>=2020-01-01` and `filed<2021-01-01` is a year."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.core.schemas import COLOUR_COLUMN
from lookalike.retrieval.limits import QueryError

SET_OPERATORS = ("any", "all", "not")
RANGE_OPERATORS = {"gte": pc.greater_equal, "gt": pc.greater, "lte": pc.less_equal, "lt": pc.less}
OPERATORS = (*SET_OPERATORS, "prefix", *RANGE_OPERATORS)
# The text forms, longest first so that `>=` is not read as `>`.
TEXT_OPERATORS = {"!=": "not", "&=": "all", "^=": "prefix", ">=": "gte", "<=": "lte", "=": "any", ">": "gt", "<": "lt"}
_TEXT = re.compile(r"^\s*([^!&^<>=\s][^!&^<>=]*?)\s*(!=|&=|\^=|>=|<=|=|>|<)(.*)$")
UNFILTERABLE = ("faiss_id", COLOUR_COLUMN)  # the row's key; its colours (image/colour.py), bytes


def parse_filters(texts: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    """Text filters (`COLUMN OP VALUE[,VALUE...]`) as the conditions a search takes; None for none."""
    out: dict[str, dict[str, Any]] = {}
    for text in texts:
        match = _TEXT.match(text)
        if not match:
            raise QueryError(f"filter {text!r}: expected COLUMN OP VALUE, OP one of {' '.join(TEXT_OPERATORS)} "
                             "(e.g. nice=25,9 or filed>=2020-01-01)")
        column, operator, value = match.group(1), TEXT_OPERATORS[match.group(2)], match.group(3).strip()
        condition = out.setdefault(column, {})
        if operator in RANGE_OPERATORS:
            condition[operator] = value
        else:
            condition.setdefault(operator, []).extend(v.strip() for v in value.split(","))
    return out or None


def allowed_rows(table: pa.Table, filters: Mapping[str, Any]) -> np.ndarray:
    """Boolean mask over the rows of an images table: every column's condition holds."""
    mask = np.ones(table.num_rows, dtype=bool)
    for column, condition in filters.items():
        if column not in table.column_names or column in UNFILTERABLE:
            filterable = [c for c in table.column_names if c not in UNFILTERABLE]
            raise QueryError(f"cannot filter on {column!r}: the index has columns {filterable}")
        mask &= _holds(table[column], table.schema.field(column).type, column, _operators(column, condition))
    return mask


def _operators(column: str, condition: Any) -> dict[str, Any]:
    if not isinstance(condition, Mapping):
        return {"any": condition if isinstance(condition, list | tuple) else [condition]}
    unknown = set(condition) - set(OPERATORS)
    if unknown or not condition:
        raise QueryError(f"filter {column}: a condition is a value, a list of values or an object of "
                         f"{', '.join(OPERATORS)}; not {sorted(unknown) or 'an empty object'}")
    return dict(condition)


def _holds(values: pa.ChunkedArray, kind: pa.DataType, column: str, operators: dict[str, Any]) -> np.ndarray:
    """Where every operator holds, per row; a list column's row holds where one of its elements does (`all`:
    where each value is one of its elements; `not`: where none is)."""
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    item = kind.value_type if listed else kind
    elements = pc.list_flatten(values) if listed else values
    parents = pc.list_parent_indices(values).to_numpy() if listed else None

    def per_row(element_mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
        hit = pc.fill_null(element_mask, False).to_numpy(zero_copy_only=False).astype(bool)
        if parents is None:
            return hit
        rows = np.zeros(len(values), dtype=bool)
        rows[parents[hit]] = True
        return rows

    mask = np.ones(len(values), dtype=bool)
    for operator, value in operators.items():
        if operator in SET_OPERATORS:
            listed_values = value if isinstance(value, list | tuple) else [value]
            accepted = _cast(listed_values, item, column)
            if operator == "all":
                for one in accepted:
                    mask &= per_row(pc.is_in(elements, value_set=pa.array([one.as_py()], item)))
            else:
                found = per_row(pc.is_in(elements, value_set=accepted))
                mask &= ~found if operator == "not" else found
        elif operator == "prefix":
            if not (pa.types.is_string(item) or pa.types.is_large_string(item)):
                raise QueryError(f"filter {column}: a prefix needs a text column, not {kind}")
            prefixes = value if isinstance(value, list | tuple) else [value]
            if not all(isinstance(p, str) for p in prefixes):
                raise QueryError(f"filter {column}: a prefix is text")
            mask &= np.logical_or.reduce([per_row(pc.starts_with(elements, p)) for p in prefixes]
                                         or [np.zeros(len(values), dtype=bool)])
        else:
            if not (pa.types.is_integer(item) or pa.types.is_floating(item) or pa.types.is_decimal(item)
                    or pa.types.is_temporal(item) or pa.types.is_string(item)):
                raise QueryError(f"filter {column}: {operator} needs a number, date, time or text column, not {kind}")
            [bound] = _cast([value], item, column)
            mask &= per_row(RANGE_OPERATORS[operator](elements, bound))
    return mask


def _cast(values: list[Any], kind: pa.DataType, column: str) -> pa.Array:
    """Filter values as an array of the column's (element) type; values of another kind are refused."""
    try:
        if not all(_fits(v, kind) for v in values):
            raise TypeError("another type")
        if pa.types.is_integer(kind):  # 367.0 is 367: never mixed into a float array that loses large ints
            values = [int(v) if isinstance(v, float) else v for v in values]
        if pa.types.is_temporal(kind):
            values = [_moment(v, kind) for v in values]
        return pa.array(values).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError,
            OverflowError) as e:
        shown = ", ".join(repr(v)[:40] for v in values[:3]) + (f" … ({len(values)} values)" if len(values) > 3
                                                                else "")
        raise QueryError(f"filter {column}: {shown} are not values of type {kind}") from e


def _moment(value: Any, kind: pa.DataType) -> Any:
    """An ISO date or time (text) for a date or time column: 2020-01-01, 2020-01-01T12:00:00Z."""
    if not isinstance(value, str):
        raise TypeError("dates and times are ISO text")
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(value)
    moment = dt.datetime.fromisoformat(value)
    if pa.types.is_timestamp(kind) and kind.tz is None and moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def _fits(value: Any, column: pa.DataType) -> bool:
    """Whether a filter value is of the column's kind: a text column is matched by text only, never by a number
    or a boolean; a number column never by a boolean (JSON's true is no 1). Text for another kind of column (the
    command line's `--filter width=320`, a date) is cast, and a cast that fails refuses it."""
    if pa.types.is_string(column) or pa.types.is_large_string(column):
        return isinstance(value, str)
    if isinstance(value, str):
        return True
    if pa.types.is_boolean(column):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if pa.types.is_integer(column):  # as JSON Schema's integer: 255 and 255.0 alike
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float) or not (pa.types.is_floating(column) or pa.types.is_decimal(column))
