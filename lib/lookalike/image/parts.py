"""The parts of a composite mark, proposed: the mark's ink separated from its background, nearby strokes joined
into regions (the letters of a word, the strokes of a device), each region large enough to matter a part, told
apart as lettering or a figurative element. Each part is a crop the search takes as it is (image/crop.py)."""

from __future__ import annotations

import cv2
import numpy as np

from lookalike.image.budget import DecodeLimits, declared_pixels
from lookalike.image.decode import ImageError, decode
from lookalike.image.ink import ink
from lookalike.image.part import FIGURE, TEXT, Part

SIDE = 256            # the mark is analysed at this longest side: parts are boxes, not outlines
JOIN = 0.03           # strokes closer than this share of the longer side are one region
MIN_SHARE = 0.03      # a region with less of the mark's ink (a speck, a ®) is not a part
MAX_PARTS = 6
MARGIN = 3            # pixels (at SIDE) added around each box: thin tips and anti-aliased edges fall below INK
# Lettering: a region at least this much wider than tall, holding at least MIN_GLYPHS separate shapes of
# which most stand at least GLYPH_HEIGHT of its height (letters of one line share their height).
TEXT_ASPECT, MIN_GLYPHS, GLYPH_HEIGHT = 1.8, 3, 0.45


def propose_parts(data: bytes, limits: DecodeLimits) -> list[Part]:
    """The parts of a mark (its image bytes, decoded within the pixel budget), largest first; none where the
    mark is one part."""
    if len(data) > limits.max_bytes:
        raise ImageError("read", "too_large", f"{len(data):,} bytes, above the limit of {limits.max_bytes:,}")
    with limits.budget.hold(declared_pixels(data)):
        image = decode(data, SIDE, limits.max_pixels).image
    image.thumbnail((SIDE, SIDE))
    return parts_of(np.asarray(image, dtype=np.uint8))


def parts_of(rgb: np.ndarray) -> list[Part]:
    """The parts of an (h, w, 3) picture, largest first; none where it holds one part or nothing."""
    marked = ink(rgb)
    total = int(marked.sum())
    if total == 0:
        return []
    height, width = marked.shape
    side = max(1, round(JOIN * max(height, width)))
    joined = cv2.morphologyEx(marked.astype(np.uint8), cv2.MORPH_CLOSE,
                              cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    parts = []
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label, :4])
        region = marked[y:y + h, x:x + w] & (labels[y:y + h, x:x + w] == label)
        share = float(region.sum()) / total
        if share < MIN_SHARE:
            continue
        box = (max(0, x - MARGIN) / width, max(0, y - MARGIN) / height,
               min(width, x + w + MARGIN) / width, min(height, y + h + MARGIN) / height)
        parts.append(Part(tuple(round(v, 3) for v in box), TEXT if _lettering(region) else FIGURE,
                          round(share, 3)))
    return sorted(parts, key=lambda p: -p.share)[:MAX_PARTS] if len(parts) > 1 else []


def _lettering(region: np.ndarray) -> bool:
    """Whether a region's ink reads as a line of lettering: wide, and made of several shapes of the line's height."""
    height, width = region.shape
    if width < TEXT_ASPECT * height:
        return False
    count, _, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    tall = heights >= GLYPH_HEIGHT * height
    return int(tall.sum()) >= MIN_GLYPHS and tall.mean() >= 0.5
