"""The parts of composite marks, proposed in this process (no store, no index, no model): each a crop that
`Index.search(..., crop=part.crop)` and the worker's `crop` take."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lookalike.api.images import ImageLike, image_bytes, images_of
from lookalike.image.budget import DecodeLimits
from lookalike.image.part import Part
from lookalike.image.parts import propose_parts as parts_of_bytes
from lookalike.image.read import read_image_bytes


def propose_parts(images: ImageLike | Sequence[ImageLike], *, storage_options: Mapping[str, Any] | None = None
                  ) -> list[Part] | list[list[Part]]:
    """The parts of a mark (a path or URI, bytes, a PIL image), largest first: its figurative elements and its
    lettering, apart; none where the mark is one part. Given a list, a list of part lists."""
    listed, one = images_of(images)
    limits = DecodeLimits()

    def read(uri: str) -> bytes:
        return read_image_bytes(uri, dict(storage_options or {}), limits.max_bytes)
    parts = [parts_of_bytes(image_bytes(image, read), limits) for image in listed]
    return parts[0] if one else parts
