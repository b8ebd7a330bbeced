"""Synthetic copies (SSCD-style): a mark under the alterations a trademark meets when it is copied or restyled.
Each training view is its image under a random draw of them; two views of one image are a positive pair as much
as two collections' drawings of one brand are."""

from __future__ import annotations

import io
import random
import string

from PIL import Image, ImageDraw, ImageFilter, ImageOps

WHITE = (255, 255, 255)


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _ink(image: Image.Image) -> Image.Image:
    """The drawing's mask (L): how far each pixel is from the white canvas."""
    return ImageOps.invert(image.convert("L")).point(lambda v: min(255, v * 3))


def recolour(image: Image.Image, rng: random.Random) -> Image.Image:
    """The whole mark in one colour: a flat-colour redraw."""
    flat = Image.new("RGB", image.size, _random_colour(rng))
    return Image.composite(flat, Image.new("RGB", image.size, WHITE), _ink(image))


def background(image: Image.Image, rng: random.Random) -> Image.Image:
    """The mark on a coloured or gradient ground instead of white."""
    ground = Image.new("RGB", image.size, _random_colour(rng))
    if rng.random() < 0.5:
        ground = Image.linear_gradient("L").resize(image.size).convert("RGB")
        ground = ImageOps.colorize(ground.convert("L"), _random_colour(rng), _random_colour(rng))
    return Image.composite(image, ground, _ink(image))


def app_icon(image: Image.Image, rng: random.Random) -> Image.Image:
    """The app-icon treatment: the mark, recoloured, inside a filled circle or rounded square."""
    size = image.size[0]
    canvas = Image.new("RGB", image.size, WHITE)
    draw = ImageDraw.Draw(canvas)
    fill = _random_colour(rng)
    box = (size * 0.06, size * 0.06, size * 0.94, size * 0.94)
    if rng.random() < 0.5:
        draw.ellipse(box, fill=fill)
    else:
        draw.rounded_rectangle(box, radius=size * 0.2, fill=fill)
    mark = image.resize((int(size * 0.6),) * 2)
    ink = _ink(mark)
    colour = WHITE if sum(fill) < 384 else (0, 0, 0)
    offset = ((size - mark.size[0]) // 2,) * 2
    canvas.paste(Image.new("RGB", mark.size, colour), offset, ink)
    return canvas


def outline(image: Image.Image, rng: random.Random) -> Image.Image:
    """Outline only: the mark's edges, as line art."""
    edges = _ink(image).filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    return Image.composite(Image.new("RGB", image.size, (0, 0, 0)), Image.new("RGB", image.size, WHITE), edges)


def filled(image: Image.Image, rng: random.Random) -> Image.Image:
    """Strokes thickened toward a filled rendering."""
    ink = _ink(image).filter(ImageFilter.MaxFilter(rng.choice((3, 5, 7))))
    return Image.composite(Image.new("RGB", image.size, (0, 0, 0)), Image.new("RGB", image.size, WHITE), ink)


def overlaid_text(image: Image.Image, rng: random.Random) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    text = "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(3, 10)))
    xy = (rng.randrange(image.size[0] // 2), rng.randrange(image.size[1] - 12))
    draw.text(xy, text, fill=_random_colour(rng))
    return out


def geometry(image: Image.Image, rng: random.Random) -> Image.Image:
    """Rotation, mirror, a crop and a rescale of the canvas."""
    out = image.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR, fillcolor=WHITE)
    if rng.random() < 0.3:
        out = ImageOps.mirror(out)
    w, h = out.size
    scale = rng.uniform(0.65, 1.0)
    cw, ch = int(w * scale), int(h * scale)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = out.crop((x, y, x + cw, y + ch))
    shrink = rng.uniform(0.5, 1.0)
    small = out.resize((max(8, int(cw * shrink)), max(8, int(ch * shrink))), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (w, h), WHITE)
    canvas.paste(small.resize((w, h)) if rng.random() < 0.5 else small,
                 (0, 0) if small.size == (w, h) else ((w - small.size[0]) // 2, (h - small.size[1]) // 2))
    return canvas


def degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blur and JPEG: a copy's loss of quality."""
    out = image
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.6:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=rng.randint(15, 80))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out


# (alteration, probability): restyles first (one at most), then what copying adds.
RESTYLES = ((recolour, 0.25), (app_icon, 0.12), (outline, 0.08), (filled, 0.08), (ImageOps.invert, 0.05))
COPYING = ((background, 0.15), (geometry, 0.6), (overlaid_text, 0.1), (degrade, 0.4))


def synthetic_copy(image: Image.Image, rng: random.Random) -> Image.Image:
    """One random synthetic copy of an RGB mark on white."""
    out = image.convert("RGB")
    u = rng.random()
    for alteration, p in RESTYLES:
        if u < p:
            out = alteration(out) if alteration is ImageOps.invert else alteration(out, rng)
            break
        u -= p
    for alteration, p in COPYING:
        if rng.random() < p:
            out = alteration(out, rng)
    return out
