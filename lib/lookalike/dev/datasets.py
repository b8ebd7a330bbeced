"""Real public image sets built from registry packages: brand logos from npm, rasterised with resvg."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.training.sources import DatasetError, brand_key, fetch_npm_package, iconify_icons, render_svg, visible

SIMPLE_ICONS = ("simple-icons", "16.37.0")  # CC0 brand logos, ~3,500 SVGs
ICONIFY_LOGOS = ("@iconify-json/logos", "1.2.19")  # Gil Barbara's "logos" set (CC0), full-colour, ~2,300
DEVICON = ("devicon", "2.17.0")  # developer-tool icons (MIT), ~580, drawn by another set of hands again
COLLECTIONS = ("iconify", "devicon")
# General icon sets whose icons are named by what they show (all permissive: MIT, Apache-2.0, ISC): the same
# concept drawn by different hands, a labelled set for text-to-image search.
CONCEPT_SETS = (("@iconify-json/tabler", "1.2.41"), ("@iconify-json/lucide", "1.2.137"),
                ("@iconify-json/mdi", "1.2.3"), ("@iconify-json/carbon", "1.2.29"))


def simple_icons_catalogue(data_dir: Path, limit: int | None = 1000, size: int = 256) -> Path:
    """Rasterise simple-icons logos to PNG and write an images table (image_id, uri, title, brand_hex).

    `limit` takes an evenly spaced subset of the logos sorted by slug, so the demo set spans the alphabet
    and is the same on every machine; None takes all of them. Reruns reuse what is already rendered.
    """
    package = fetch_npm_package(*SIMPLE_ICONS, data_dir / "npm")
    meta = json.loads((package / "data" / "simple-icons.json").read_text())
    icons = sorted((m for m in meta if (package / "icons" / f"{m['slug']}.svg").exists()), key=lambda m: m["slug"])
    if limit is not None and limit < len(icons):
        step = len(icons) / limit
        icons = [icons[int(i * step)] for i in range(limit)]
    out_dir = data_dir / f"simple-icons-{size}px"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {"image_id": [], "uri": [], "title": [], "brand_hex": []}
    for m in icons:
        path = out_dir / f"{m['slug']}.png"
        _rendered(path, (package / "icons" / f"{m['slug']}.svg").read_text(), size, drawing_colour(m.get("hex")))
        rows["image_id"].append(m["slug"])
        rows["uri"].append(str(path.resolve()))
        rows["title"].append(m["title"])
        rows["brand_hex"].append(m.get("hex", ""))
    table_path = data_dir / f"simple-icons-{len(icons)}.parquet"
    pq.write_table(pa.table(rows), table_path)
    return table_path


def drawing_colour(brand_hex: str | None) -> str | None:
    """The brand colour, except near-white and light-grey ones (Sony, Unity, ...: 27 in simple-icons 16.37),
    which would vanish on the white canvas: those are drawn black, as simple-icons' own site inverts them."""
    if brand_hex and min(int(brand_hex[i:i + 2], 16) for i in (0, 2, 4)) > 200:
        return "000000"
    return brand_hex


def logo_variant(data_dir: Path, slug: str, colour: str = "1D2330", size: int = 200, margin: float = 0.3) -> Path:
    """A look-alike of a simple-icons logo for queries: another colour, size and margin, saved as JPEG, so it
    is not byte-identical to anything in the catalogue."""
    package = fetch_npm_package(*SIMPLE_ICONS, data_dir / "npm")
    out = data_dir / "queries" / f"{slug}-{colour.lower()}.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    render_svg((package / "icons" / f"{slug}.svg").read_text(), size, colour, margin).save(out, "JPEG", quality=80)
    return out


def cross_collection_queries(data_dir: Path, size: int = 256, within: Collection[str] | None = None,
                             collections: Sequence[str] = COLLECTIONS) -> Path:
    """The same brands drawn by other collections — @iconify-json/logos (`iconify`) and devicon — matched to
    simple-icons slugs by name, rasterised in their own colours.

    Writes and returns a query table for `lookalike evaluate --queries`: image_id (`<collection>/<icon>`), uri,
    `relevant`, the simple-icons slug (= image_id in a simple-icons catalogue) that is the query's one
    relevant answer, and `collection`. `within` keeps only the brands of a given catalogue (e.g. the demo's
    1,000-logo subset)."""
    simple = fetch_npm_package(*SIMPLE_ICONS, data_dir / "npm")
    slugs = {m["slug"] for m in json.loads((simple / "data" / "simple-icons.json").read_text())}
    if within is not None:
        slugs &= set(within)
    makers = {"iconify": _iconify_queries, "devicon": _devicon_queries}
    unknown = set(collections) - set(makers)
    if unknown:
        raise DatasetError(f"unknown collection(s) {sorted(unknown)}: choose from {sorted(makers)}")
    rows: dict[str, list[str]] = {"image_id": [], "uri": [], "relevant": [], "collection": []}
    for collection in collections:
        for image_id, path, slug in makers[collection](data_dir, slugs, size):
            rows["image_id"].append(image_id)
            rows["uri"].append(str(path.resolve()))
            rows["relevant"].append(slug)
            rows["collection"].append(collection)
    table_path = data_dir / f"cross-collection-queries-{'+'.join(collections)}-{len(rows['image_id'])}.parquet"
    pq.write_table(pa.table(rows), table_path)
    return table_path


def concept_icons(data_dir: Path, size: int = 224, min_sets: int = 3,
                  sets: Sequence[tuple[str, str]] = CONCEPT_SETS) -> pa.Table:
    """Icons whose plain one-word name (`camera`, `bell`, `anchor`) is drawn by at least `min_sets` of the
    general icon sets, rasterised black on white: image_id (`<set>/<name>`), uri, concept. A concept's icons
    are what a text query of its name should find."""
    drawn: dict[str, dict[str, str]] = {}
    for prefix, name, svg in iconify_icons(data_dir, sets):
        if name.isalpha():
            drawn.setdefault(name, {})[prefix] = svg
    rows: dict[str, list[str]] = {"image_id": [], "uri": [], "concept": []}
    for concept, by_set in sorted(drawn.items()):
        if len(by_set) >= min_sets:
            for prefix, svg in sorted(by_set.items()):
                _add_rendered(rows, data_dir, prefix, concept, svg, size, concept=concept)
    return pa.table(rows)


def named_icons(data_dir: Path, size: int = 224, sets: Sequence[tuple[str, str]] = CONCEPT_SETS,
                keep: Callable[[str], bool] = lambda name: True) -> pa.Table:
    """Every icon of the sets whose name `keep` accepts, rasterised: image_id, uri, phrase (the name's words,
    `camera-off` → "camera off"): the labelled pairs a word-space projection is trained on."""
    rows: dict[str, list[str]] = {"image_id": [], "uri": [], "phrase": []}
    for prefix, name, svg in iconify_icons(data_dir, sets):
        if keep(name):
            _add_rendered(rows, data_dir, prefix, name, svg, size, phrase=name.replace("-", " "))
    return pa.table(rows)


def _add_rendered(rows: dict[str, list[str]], data_dir: Path, prefix: str, name: str, svg: str, size: int,
                  **label: str) -> None:
    folder = data_dir / f"icons-{prefix}-{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    path = _rendered(folder / f"{name}.png", svg, size)
    if visible(path):
        rows["image_id"].append(f"{prefix}/{name}")
        rows["uri"].append(str(path.resolve()))
        for key, value in label.items():
            rows[key].append(value)


def _iconify_queries(data_dir: Path, slugs: set[str], size: int) -> Iterator[tuple[str, Path, str]]:
    """Every @iconify-json/logos icon whose brand is a slug, the `-icon` glyph variant preferred over the
    wordmark."""
    package = fetch_npm_package(*ICONIFY_LOGOS, data_dir / "npm")
    collection = json.loads((package / "icons.json").read_text())
    chosen: dict[str, str] = {}
    for name in sorted(collection["icons"]):
        glyph = name.endswith("-icon")
        key = brand_key(name[: -len("-icon")] if glyph else name)
        if key in slugs and (key not in chosen or glyph):
            chosen[key] = name
    out_dir = data_dir / f"iconify-logos-{size}px"
    out_dir.mkdir(parents=True, exist_ok=True)
    for slug, name in sorted(chosen.items()):
        icon = collection["icons"][name]
        width = icon.get("width", collection.get("width", 256))
        height = icon.get("height", collection.get("height", 256))
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
               f'viewBox="{icon.get("left", 0)} {icon.get("top", 0)} {width} {height}">{icon["body"]}</svg>')
        path = _rendered(out_dir / f"{name}.png", svg, size)
        if visible(path):
            yield f"iconify/{name}", path, slug


def _devicon_queries(data_dir: Path, slugs: set[str], size: int) -> Iterator[tuple[str, Path, str]]:
    """Every devicon whose name or alternative name is a slug: its `original` (full-colour) drawing, else
    `plain` in the icon's colour."""
    package = fetch_npm_package(*DEVICON, data_dir / "npm")
    out_dir = data_dir / f"devicon-{size}px"
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for icon in sorted(json.loads((package / "devicon.json").read_text()), key=lambda i: i["name"]):
        slug = next((brand_key(n) for n in [icon["name"], *icon.get("altnames", [])]
                     if brand_key(n) in slugs and brand_key(n) not in taken), None)
        svgs = icon.get("versions", {}).get("svg", [])
        variant = "original" if "original" in svgs else "plain" if "plain" in svgs else None
        source = package / "icons" / icon["name"] / f"{icon['name']}-{variant}.svg"
        if slug is None or variant is None or not source.exists():
            continue
        colour = icon.get("color", "").lstrip("#") if variant == "plain" else None
        path = _rendered(out_dir / f"{icon['name']}.png", source.read_text(), size, colour or None)
        if visible(path):
            taken.add(slug)
            yield f"devicon/{icon['name']}", path, slug


def _rendered(path: Path, svg: str, size: int, colour: str | None = None) -> Path:
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        render_svg(svg, size, colour).save(tmp, "PNG")
        tmp.replace(path)
    return path
