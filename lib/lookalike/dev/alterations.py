"""Altered copies of a mark, as infringers and scanners make them: the copy-detection queries of bench/verify.py
and the tests. Each alteration is deterministic given its seed."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

Alteration = Callable[[Image.Image, np.random.Generator], Image.Image]


def on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def recolour(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The mark in another colour: its dark pixels take a random hue."""
    rgb = np.asarray(on_white(image), dtype=np.float32)
    ink = 1.0 - rgb.mean(axis=2, keepdims=True) / 255.0
    colour = rng.integers(0, 200, 3).astype(np.float32)
    out = 255.0 * (1 - ink) + colour * ink
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def rotate(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(15, 30) * rng.choice([-1, 1]))
    return on_white(image).rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


def crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """20% of the area cut away from a random side pair."""
    w, h = image.size
    keep = np.sqrt(0.8)
    cw, ch = int(w * keep), int(h * keep)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return on_white(image).crop((x, y, x + cw, y + ch))


def rescale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.choice([0.4, 0.6, 1.6]))
    w, h = image.size
    return on_white(image).resize((max(16, int(w * factor)), max(16, int(h * factor))), Image.Resampling.BICUBIC)


def mirror(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(on_white(image))


def busy_background(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The mark at 60% size on a photo-like clutter of random shapes, off centre."""
    w, h = image.size
    canvas = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(150, 255, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(40):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(5, w // 3), y0 + rng.integers(5, h // 3)
        colour = tuple(int(c) for c in rng.integers(100, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    canvas = canvas.filter(ImageFilter.GaussianBlur(2))
    mark = image.convert("RGBA").resize((int(w * 0.6), int(h * 0.6)), Image.Resampling.BICUBIC)
    x, y = int(rng.integers(0, w - mark.width + 1)), int(rng.integers(0, h - mark.height + 1))
    canvas.paste(mark, (x, y), mark)
    return canvas


def overlaid_text(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = on_white(image)
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(2):
        y = int(rng.integers(0, max(1, h - 20)))
        draw.text((int(rng.integers(0, w // 3)), y), "SALE  ORIGINAL  -50%", fill=(200, 20, 20),
                  font_size=max(10, h // 12))
    return out


def jpeg_q40(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    on_white(image).save(buf, "JPEG", quality=40)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


ALTERATIONS: dict[str, Alteration] = {
    "recolour": recolour, "rotate": rotate, "crop": crop, "rescale": rescale, "mirror": mirror,
    "busy-background": busy_background, "overlaid-text": overlaid_text, "jpeg-q40": jpeg_q40,
}


def altered(image: Image.Image, name: str, seed: int) -> Image.Image:
    return ALTERATIONS[name](image, np.random.default_rng(seed))
