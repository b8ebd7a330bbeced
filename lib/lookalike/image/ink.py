"""A mark's ink: the pixels that stand apart from its background, taken as the colour of the picture's border
(most registers' images are a mark on a plain page). What the parts of a mark are made of (image/parts.py) and
whose colours a mark's histogram counts (image/colour.py)."""

from __future__ import annotations

import numpy as np

INK = 60.0  # RGB distance from the background colour that counts as ink (of 441 from black to white)


def background(rgb: np.ndarray) -> np.ndarray:
    """The colour of an (h, w, 3) picture's border: the median of its outermost pixels (float RGB)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def ink(rgb: np.ndarray, page: np.ndarray | None = None) -> np.ndarray:
    """Where the picture is not its background (`page`, by default its border's colour): an (h, w) mask."""
    page = background(rgb) if page is None else page
    return np.linalg.norm(rgb.astype(np.float32) - page, axis=2) > INK
