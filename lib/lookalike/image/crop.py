"""A part of a query image: a box as fractions of the image's width and height (x0, y0, x1, y1), so that it means
the same whatever size the image is decoded at. Searching a part of a composite mark (its figurative element
without its words, one of its devices) crops the query before it is embedded and its local features extracted."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from lookalike.core.errors import InputError
from lookalike.image.budget import DecodeLimits, declared_pixels
from lookalike.image.decode import decode

MIN_SIDE = 0.02        # a crop narrower than this share of the image keeps too little to search
DECODE_SIZE = 1024     # JPEG draft decoding keeps at least twice this many pixels a side before the crop
CROP_FORMAT = "x0,y0,x1,y1 as fractions of the image's width and height, e.g. 0.5,0,1,1 for its right half"


@dataclass(frozen=True)
class Crop:
    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise InputError(f"a crop is four numbers, {CROP_FORMAT}")
        if not (0 <= self.x0 < self.x1 <= 1 and 0 <= self.y0 < self.y1 <= 1):
            raise InputError(f"crop {self}: needs 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 ({CROP_FORMAT})")
        if self.x1 - self.x0 < MIN_SIDE or self.y1 - self.y0 < MIN_SIDE:
            raise InputError(f"crop {self}: each side must be at least {MIN_SIDE:g} of the image's")

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in (self.x0, self.y0, self.x1, self.y1))

    @classmethod
    def of(cls, value: str | Sequence[float] | Crop | None) -> Crop | None:
        """A crop from its text form ("x0,y0,x1,y1") or four numbers; None stays None."""
        if value is None or isinstance(value, Crop):
            return value
        parts = value.split(",") if isinstance(value, str) else list(value)
        try:
            numbers = [float(p) for p in parts]
        except (TypeError, ValueError) as e:
            raise InputError(f"crop {value!r}: {CROP_FORMAT}") from e
        if len(numbers) != 4:
            raise InputError(f"crop {value!r}: four numbers, {CROP_FORMAT}")
        return cls(*numbers)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop in pixels of an image of this size: whole pixels around the fractions, at least one."""
        x0, y0 = math.floor(self.x0 * width), math.floor(self.y0 * height)
        return x0, y0, max(x0 + 1, math.ceil(self.x1 * width)), max(y0 + 1, math.ceil(self.y1 * height))


def cropped(data: bytes, crop: Crop, limits: DecodeLimits) -> bytes:
    """The part of an image that a crop keeps, as PNG (lossless: embedding and local features read it as they
    read any upload). Decoded within the pixel budget, as every query image is."""
    with limits.budget.hold(declared_pixels(data)):
        image = decode(data, DECODE_SIZE, limits.max_pixels).image
    out = io.BytesIO()
    image.crop(crop.box(*image.size)).save(out, "PNG")
    return out.getvalue()


def crop_images(images: Sequence[bytes], crop: Crop | None, limits: DecodeLimits) -> list[bytes]:
    """Each image cropped (the same part of each); as they are without a crop."""
    return list(images) if crop is None else [cropped(data, crop, limits) for data in images]


def crop_picture(image: Image.Image, crop: Crop | None) -> Image.Image:
    """A decoded picture cropped the same way (for a comparison view of a cropped query)."""
    return image if crop is None else image.crop(crop.box(*image.size))
