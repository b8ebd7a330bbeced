"""Synthetic copies (SSCD-style): a mark under the alterations a trademark meets when it is copied or restyled.
Each training view is its image under a random draw of them; two views of one image are a positive pair as much
as two collections' drawings of one brand are. The restyles are the ways icon sets draw one concept differently:
outline or filled, thin or heavy strokes, rounded or sharp corners, duotone, inside a badge or an app-icon shape,
pixel art."""

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


def _ink_only(image: Image.Image, ink: Image.Image) -> Image.Image:
    """Black where the mask has ink, white elsewhere."""
    return Image.composite(Image.new("RGB", image.size, (0, 0, 0)), Image.new("RGB", image.size, WHITE), ink)


def _hard(ink: Image.Image) -> Image.Image:
    """The mask cut at half ink: no antialiasing."""
    return ink.point(lambda v: 255 if v > 127 else 0)


def outline(image: Image.Image, rng: random.Random) -> Image.Image:
    """Outline only: the mark's edges, as line art."""
    return _ink_only(image, _ink(image).filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3)))


def filled(image: Image.Image, rng: random.Random) -> Image.Image:
    """Strokes thickened toward a filled rendering."""
    return _ink_only(image, _ink(image).filter(ImageFilter.MaxFilter(rng.choice((3, 5, 7)))))


def inverted(image: Image.Image, rng: random.Random) -> Image.Image:
    """Light on dark: the negative."""
    return ImageOps.invert(image)


def thinner(image: Image.Image, rng: random.Random) -> Image.Image:
    """Strokes thinned: a light-weight rendering (the set's `thin` or `light` style)."""
    ink = _hard(_ink(image)).filter(ImageFilter.MinFilter(rng.choice((3, 5))))
    return image if ink.getbbox() is None else _ink_only(image, ink)  # a hairline mark would vanish: keep it


def rounded(image: Image.Image, rng: random.Random) -> Image.Image:
    """Corners and stroke ends rounded (blurred, then cut at half ink) or made sharp (cut hard, no antialiasing)."""
    ink = _ink(image)
    if rng.random() < 0.6:
        ink = ink.filter(ImageFilter.GaussianBlur(image.size[0] * rng.uniform(0.008, 0.02)))
    return _ink_only(image, _hard(ink))


def duotone(image: Image.Image, rng: random.Random) -> Image.Image:
    """Two tones: the shapes in a light tint, their edges in the full colour."""
    colour = _random_colour(rng)
    tint = tuple(int(c + (255 - c) * rng.uniform(0.5, 0.75)) for c in colour)
    ink = _ink(image)
    edges = ink.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    out = Image.composite(Image.new("RGB", image.size, tint), Image.new("RGB", image.size, WHITE), ink)
    return Image.composite(Image.new("RGB", image.size, colour), out, edges)


def badge(image: Image.Image, rng: random.Random) -> Image.Image:
    """The mark inside an outlined badge: a circle, a rounded square, a hexagon or a shield."""
    size = image.size[0]
    canvas = Image.new("RGB", image.size, WHITE)
    draw = ImageDraw.Draw(canvas)
    colour, width = _random_colour(rng) if rng.random() < 0.5 else (0, 0, 0), max(2, size // rng.choice((24, 40)))
    lo, hi, mid = size * 0.06, size * 0.94, size / 2
    shape = rng.randrange(4)
    if shape == 0:
        draw.ellipse((lo, lo, hi, hi), outline=colour, width=width)
    elif shape == 1:
        draw.rounded_rectangle((lo, lo, hi, hi), radius=size * 0.2, outline=colour, width=width)
    elif shape == 2:
        r = (hi - lo) / 2
        draw.regular_polygon((mid, mid, r), 6, outline=colour, width=width)
    else:
        draw.polygon([(lo, lo), (hi, lo), (hi, mid), (mid, hi), (lo, mid)], outline=colour, width=width)
    mark = image.resize((int(size * 0.55),) * 2)
    offset = ((size - mark.size[0]) // 2, int(size * (0.2 if shape == 3 else 0.225)))
    canvas.paste(Image.new("RGB", mark.size, colour), offset, _ink(mark))
    return canvas


def pixelated(image: Image.Image, rng: random.Random) -> Image.Image:
    """Pixel art or a low-resolution rendering: the mark on a grid of 12 to 32 cells, shown large."""
    cells = rng.randint(12, 32)
    small = image.resize((cells, cells), Image.Resampling.BOX)
    if rng.random() < 0.5:  # pixel art: each cell ink or paper
        small = _ink_only(small, _hard(_ink(small)))
    return small.resize(image.size, Image.Resampling.NEAREST)


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


# (alteration, probability): restyles first (one at most), then what copying adds. COPY_RESTYLES are a copier's
# (recolour, app icon, outline, filled, inverted); STYLE_RESTYLES add the ways another icon set draws the thing.
COPY_RESTYLES = ((recolour, 0.25), (app_icon, 0.12), (outline, 0.08), (filled, 0.08), (inverted, 0.05))
STYLE_RESTYLES = ((recolour, 0.2), (app_icon, 0.08), (badge, 0.06), (outline, 0.07), (filled, 0.07), (thinner, 0.05),
                  (rounded, 0.05), (duotone, 0.05), (pixelated, 0.04), (inverted, 0.03))
COPYING = ((background, 0.15), (geometry, 0.6), (overlaid_text, 0.1), (degrade, 0.4))


def synthetic_copy(image: Image.Image, rng: random.Random, styles: bool = True) -> Image.Image:
    """One random synthetic copy of an RGB mark on white (`styles`: restyled as other sets draw, too)."""
    out = image.convert("RGB")
    u = rng.random()
    for alteration, p in STYLE_RESTYLES if styles else COPY_RESTYLES:
        if u < p:
            out = alteration(out, rng)
            break
        u -= p
    for alteration, p in COPYING:
        if rng.random() < p:
            out = alteration(out, rng)
    return out
