"""A comparison view for reports: query and candidate side by side, the verified keypoint pairs joined by lines,
the query's outline carried onto the candidate by the fitted transform, and the score's parts beneath."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lookalike.retrieval.explanation import Explanation, Match

PANEL = 480          # each image's longest side in the view, pixels
GAP = 24
CAPTION_LINE = 20
MAX_PAIRS = 60       # keypoint pairs drawn, spread over all of them: more hide the images
COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 160, 160))
OUTLINE = (0, 130, 200)


def comparison_png(query: Image.Image, candidate: Image.Image, explanation: Explanation, panel: int = PANEL) -> bytes:
    view = comparison_view(query, candidate, explanation, panel)
    out = io.BytesIO()
    view.save(out, "PNG")
    return out.getvalue()


def comparison_view(query: Image.Image, candidate: Image.Image, explanation: Explanation,
                    panel: int = PANEL) -> Image.Image:
    left, right = _on_white(query, panel), _on_white(candidate, panel)
    lines = explanation.describe().splitlines()
    match = explanation.match
    drawn = np.zeros(0, dtype=int)
    if match is not None:
        n = len(match.query_xy)
        drawn = np.unique(np.linspace(0, n - 1, min(n, MAX_PAIRS)).round().astype(int))
        if len(drawn) < n:
            lines[-1] += f" ({len(drawn)} of them drawn)"
    width = left.width + GAP + right.width
    canvas = Image.new("RGB", (width, panel + CAPTION_LINE * (len(lines) + 1)), "white")
    canvas.paste(left, (0, (panel - left.height) // 2))
    offset = (left.width + GAP, (panel - right.height) // 2)
    canvas.paste(right, offset)
    draw = ImageDraw.Draw(canvas)
    if match is not None:
        # Both panels are the feature picture (feature_size square) scaled to the panel's side.
        scale = panel / match.feature_size
        top = (panel - left.height) // 2
        # Drawn on the candidate alone: a query with a wide margin maps beyond the candidate's edges.
        layer = Image.new("RGBA", right.size, (0, 0, 0, 0))
        outline = _outline(match, query.size) * scale
        ImageDraw.Draw(layer).line([tuple(p) for p in (*outline, outline[0])], fill=(*OUTLINE, 255), width=2)
        canvas.paste(layer, offset, layer)
        pairs = zip(match.query_xy[drawn] * scale, match.candidate_xy[drawn] * scale, strict=True)
        for i, (a, b) in enumerate(pairs):
            start, end = (a[0], a[1] + top), (b[0] + offset[0], b[1] + offset[1])
            colour = COLOURS[i % len(COLOURS)]
            draw.line([start, end], fill=colour, width=1)
            for x, y in (start, end):
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=colour, width=2)
    font = _font()
    for i, line in enumerate(lines):
        draw.text((8, panel + CAPTION_LINE // 2 + i * CAPTION_LINE), line, fill="black", font=font)
    return canvas


def _on_white(image: Image.Image, panel: int) -> Image.Image:
    """The image as the model and the features see it: transparency on white, its longest side `panel`."""
    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return ImageOps.contain(flat, (panel, panel), Image.Resampling.BICUBIC)


def _outline(match: Match, query_size: tuple[int, int]) -> np.ndarray:
    """The query's border (at the features' size) carried onto the candidate by the fitted transform."""
    w, h = query_size
    scale = match.feature_size / max(w, h)
    corners = np.array([[0, 0], [w * scale, 0], [w * scale, h * scale], [0, h * scale]], dtype=np.float64)
    t = np.asarray(match.transform, dtype=np.float64)
    if t.shape == (3, 3):
        projected = np.c_[corners, np.ones(4)] @ t.T
        return projected[:, :2] / projected[:, 2:3]
    return corners @ t[:, :2].T + t[:, 2]


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType: the bitmap font, one size
        return ImageFont.load_default()
