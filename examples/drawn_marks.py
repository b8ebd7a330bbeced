"""A small folder of drawn marks (shapes in colours, some with a letter) for the examples to index, when no folder of
your own is given."""

from __future__ import annotations

import itertools
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "ring", "cross")
COLOURS = {"red": (200, 30, 40), "blue": (30, 70, 190), "green": (30, 140, 60), "black": (20, 20, 20)}


def draw(shape: str, colour: tuple[int, int, int], size: int = 160) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(image)
    a, b, m = size * 0.2, size * 0.8, size / 2
    if shape == "circle":
        pen.ellipse((a, a, b, b), fill=colour)
    elif shape == "square":
        pen.rectangle((a, a, b, b), fill=colour)
    elif shape == "triangle":
        pen.polygon([(m, a), (b, b), (a, b)], fill=colour)
    elif shape == "diamond":
        pen.polygon([(m, a), (b, m), (m, b), (a, m)], fill=colour)
    elif shape == "ring":
        pen.ellipse((a, a, b, b), outline=colour, width=int(size * 0.08))
    else:
        pen.rectangle((m - size * 0.08, a, m + size * 0.08, b), fill=colour)
        pen.rectangle((a, m - size * 0.08, b, m + size * 0.08), fill=colour)
    return image


def write_marks(folder: Path) -> list[Path]:
    """24 marks: every shape in every colour, as PNGs named shape-colour.png."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shape, (name, colour) in itertools.product(SHAPES, COLOURS.items()):
        paths.append(folder / f"{shape}-{name}.png")
        draw(shape, colour).save(paths[-1])
    return paths
