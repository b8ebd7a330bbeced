"""A mark's colours, compactly: a soft histogram of its colours in CIELAB (a perceptual colour space), 64 bytes an
image, computed where the embed job decodes it. The marks model is trained to ignore colour (a recoloured mark is
the same mark); an examiner also asks for "the same colours", which this answers beside the shape.

A mark on a light plain background (most registers' images) is described by its ink alone, so that the page's
white is not its main colour; a mark that fills its frame (a coloured field) by all of its pixels. Each pixel
spreads over the 8 bins around its colour (trilinear weights), so that nearly equal colours share bins."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from lookalike.image.budget import DecodeLimits, declared_pixels
from lookalike.image.decode import decode
from lookalike.image.histogram import BINS
from lookalike.image.ink import background, ink

SIDE = 64               # colours are counted on a thumbnail of this longest side
CHROMA = (64.0, 192.0)  # the a and b range binned (OpenCV's 8-bit Lab: 128 is neutral); beyond it, the edge bins
LIGHT_L, NEUTRAL = 215.0, 12.0  # a background this light (8-bit L) and this close to grey is the page, not the mark


def colour_histogram(image: Image.Image) -> bytes:
    """The image's colour histogram (image/histogram.py: SIZE bytes)."""
    small = image.convert("RGB")
    small.thumbnail((SIDE, SIDE))
    rgb = np.asarray(small, dtype=np.uint8)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float32)
    pixels = lab[_mark(rgb).ravel()]
    if len(pixels) == 0:  # nothing but the page: its own colour
        pixels = lab
    coords = np.empty_like(pixels)
    coords[:, 0] = pixels[:, 0] / 255.0 * (BINS - 1)
    coords[:, 1:] = (np.clip(pixels[:, 1:], *CHROMA) - CHROMA[0]) / (CHROMA[1] - CHROMA[0]) * (BINS - 1)
    low = np.minimum(np.floor(coords), BINS - 2).astype(np.int64)
    frac = coords - low
    histogram = np.zeros((BINS, BINS, BINS), dtype=np.float64)
    for corner in range(8):
        step = np.array([(corner >> axis) & 1 for axis in range(3)])
        weight = np.prod(np.where(step, frac, 1.0 - frac), axis=1)
        np.add.at(histogram, tuple((low + step).T), weight)
    histogram *= 255.0 / histogram.sum()
    return np.round(histogram).astype(np.uint8).tobytes()


def query_colours(images: list[bytes], limits: DecodeLimits) -> list[bytes]:
    """Query images' colour histograms, each decoded within the pixel budget (their bytes were checked when they
    were embedded)."""
    out = []
    for data in images:
        with limits.budget.hold(declared_pixels(data)):
            out.append(colour_histogram(decode(data, 2 * SIDE, limits.max_pixels).image))
    return out


def _mark(rgb: np.ndarray) -> np.ndarray:
    """The pixels that are the mark: all of them, less a light plain background (the colour of its border)."""
    page = background(rgb)
    page_lab = cv2.cvtColor(page.astype(np.uint8)[None, None], cv2.COLOR_RGB2Lab)[0, 0].astype(float)
    if page_lab[0] < LIGHT_L or max(abs(page_lab[1:] - 128.0)) > NEUTRAL:
        return np.ones(rgb.shape[:2], dtype=bool)
    return ink(rgb, page)
