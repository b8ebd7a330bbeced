"""A bound on the pixels being decoded at once across threads. A 170 KB PNG can decode to 6300×6300 RGBA
(0.6 GB); a query worker decoding on up to 40 request threads would otherwise hold many of those together."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image

from lookalike.image.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

BYTES_PER_PIXEL = 4  # RGBA, the widest mode decoding produces before the conversion to RGB


class PixelBudget:
    """`hold(pixels)` waits until the pixels fit within the budget beside those held by other threads. An image
    larger than the whole budget still runs, alone (the max_pixels limit refuses real bombs before this)."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self.in_use = 0
        self.waits = 0          # how often a decode had to wait for others to finish
        self._free = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(max(0, pixels), self.max_pixels)
        with self._free:
            if self.in_use and self.in_use + pixels > self.max_pixels:
                self.waits += 1
                self._free.wait_for(lambda: not self.in_use or self.in_use + pixels <= self.max_pixels)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._free:
                self.in_use -= pixels
                self._free.notify_all()


def declared_pixels(data: bytes) -> int:
    """The pixel count an image's header declares (0 when it has none we can read: decoding will say why)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:
        return 0
    return width * height


@dataclass(frozen=True)
class DecodeLimits:
    """What reading one query image may take: its bytes, its pixels, and the pixels decoded at once by all
    threads sharing the budget (one per worker)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    budget: PixelBudget = field(default=None)  # type: ignore[assignment]  # None: four images at max_pixels

    def __post_init__(self):
        if self.budget is None:
            object.__setattr__(self, "budget", PixelBudget(4 * self.max_pixels))
