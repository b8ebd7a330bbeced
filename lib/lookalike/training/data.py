"""The training set (`lookalike train-data`): marks of open collections from the npm registry, grouped so that a
group is one thing drawn by different hands. Brand groups: the same brand in several logo collections (simple-icons,
logos, devicon, skill-icons, fa6-brands, ...), matched by a normalised name; concept groups: icons of general sets
that draw the same concept (`camera` in tabler, lucide, mdi, ...; plurals, synonyms and head nouns merged:
training/concepts.py). Groups are split train / validation / test by a seeded hash of their key, so no brand or
concept is on two sides. Rendered on the driver's cores (cached in a data folder) and
written to the store as Parquet parts of PNG bytes with their group, collection and split, and a manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from lookalike.core.cpus import available_cpus
from lookalike.core.errors import ConfigError
from lookalike.core.layout import TrainingDataLayout
from lookalike.core.manifest import ManifestMissing, new_manifest, read_manifest
from lookalike.core.store import Store, redact
from lookalike.training.concepts import concept_keys, name_key, name_words
from lookalike.training.config import TrainingDataConfig
from lookalike.training.sources import brand_key, fetch_npm_package, iconify_icons, is_visible, render_svg

log = logging.getLogger(__name__)
KIND = "training-data"

SPLITS = ("train", "validation", "test")
PART_ROWS = 2000


def split_of(key: str, seed: int = 0, fractions: tuple[float, float] = (0.7, 0.15)) -> str:
    """train / validation / test for a group key, fixed by a seeded hash: the same on every machine and run."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2 ** 64
    return "train" if u < fractions[0] else "validation" if u < fractions[0] + fractions[1] else "test"


def brand_group(name: str) -> str:
    """The brand an icon name draws: variant words and numbers dropped from either end, then brand_key
    (`github-dark`, `square-github`, `github-original-wordmark` → `github`; `3ds-max-logo-block` → `3dsmax`)."""
    return brand_key(name_key(name))


@dataclass
class _Drawing:
    collection: str
    name: str
    svg: str


def run(config: TrainingDataConfig) -> dict[str, Any]:
    """Build (or return, when already built) the training set; its manifest says what it holds."""
    store = Store(config.store, config.storage_options)
    layout = TrainingDataLayout(store, config.name)
    if store.exists(layout.manifest):
        return read_manifest(store, layout.manifest, KIND)
    data_dir = Path(config.data_dir).expanduser()

    def split(key: str) -> str:
        return split_of(key, config.seed, config.fractions)

    brands: dict[str, list[_Drawing]] = {}
    for drawing in _drawings(iconify_icons(data_dir, config.brand_sets)):
        brands.setdefault(brand_group(drawing.name), []).append(drawing)
    # A general set's icon of a brand (mdi's `github`, ri's `github-fill`) joins its brand group when two logo
    # collections draw that brand: an app icon set's `camera` or `wallet` alone does not make a concept a brand,
    # unless the concept would be on another side of the split than the brand (a drawing never changes sides).
    known_brands = {key for key, drawings in brands.items() if len({d.collection for d in drawings}) >= 2}
    general = []
    for drawing in _drawings(iconify_icons(data_dir, config.concept_sets)):
        key = brand_group(drawing.name)
        if key in brands and len(name_words(drawing.name)) == 1 and (
                key in known_brands or split(f"brand:{key}") != split(f"concept:{name_key(drawing.name)}")):
            brands[key].append(drawing)
        else:
            general.append(drawing)
    keys = concept_keys(((d.collection, d.name) for d in general), lambda key: split(f"concept:{key}"),
                        known_brands)
    concepts: dict[str, list[_Drawing]] = {}
    for drawing in general:
        concepts.setdefault(keys[drawing.collection, drawing.name], []).append(drawing)
    brands = _kept(brands, config.per_collection, config.max_brands, config.seed)
    concepts = _kept(concepts, config.per_collection, config.max_concepts, config.seed)
    renders = data_dir / f"renders-{config.size}px"
    visible = _visible_renders([d for groups in (brands, concepts) for drawings in groups.values() for d in drawings],
                               renders, config.size)
    rows: dict[str, list] = defaultdict(list)
    for kind, groups in (("brand", brands), ("concept", concepts)):
        for key, drawings in sorted(groups.items()):
            _add_rows(rows, kind, key, drawings, split(f"{kind}:{key}"), renders, visible)
    table = _drawn_twice(pa.table(rows))
    parts = []
    for i, lo in enumerate(range(0, table.num_rows, PART_ROWS)):
        part = table.slice(lo, PART_ROWS)
        nbytes = store.write_parquet(layout.part(i), part)
        parts.append({"key": layout.part(i), "rows": part.num_rows, "bytes": nbytes})
    manifest = new_manifest(KIND, name=config.name, counts=_counts(table), files={"images": parts},
                            packages=[{"name": n, "version": v, "licence": _licence(data_dir, n, v)}
                                      for n, v in (*config.brand_sets, *config.concept_sets)],
                            config={**asdict(config), "storage_options": redact(config.storage_options)})
    store.write_json(layout.manifest, manifest)  # the commit
    return manifest


def open_training_set(store: Store, name: str) -> dict[str, Any]:
    """The manifest of a built training set; a missing one says how to build it."""
    try:
        return read_manifest(store, TrainingDataLayout(store, name).manifest, KIND)
    except ManifestMissing as e:
        raise ManifestMissing(f"no training set {name!r} in {store.url}: run `lookalike train-data --training-set "
                              f"{name}` first") from e


def read_split(store: Store, name: str, split: str) -> pa.Table:
    """One split of a built training set: image_id, group, kind, collection, png."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: one of {', '.join(SPLITS)}")
    manifest = open_training_set(store, name)
    tables = [store.read_parquet(p["key"]).filter(pc.field("split") == split)
              for p in manifest["files"]["images"]]
    return pa.concat_tables(tables).drop_columns(["split"])


def _drawings(icons: Iterable[tuple[str, str, str]]) -> Iterable[_Drawing]:
    for collection, name, svg in icons:
        yield _Drawing(collection, name, svg)


def _kept(groups: dict[str, list[_Drawing]], per_collection: int, limit: int | None, seed: int
          ) -> dict[str, list[_Drawing]]:
    """Groups drawn by at least two collections, each collection's first `per_collection` drawings; at most
    `limit` groups (0 or None: all), chosen by a seeded hash (the same ones on every machine)."""
    kept = {}
    for key, drawings in groups.items():
        taken: Counter[str] = Counter()
        chosen = []
        for d in sorted(drawings, key=lambda d: (d.collection, len(d.name), d.name)):
            if taken[d.collection] < per_collection:
                taken[d.collection] += 1
                chosen.append(d)
        if len(taken) >= 2:
            kept[key] = chosen
    if limit and len(kept) > limit:
        order = sorted(kept, key=lambda k: hashlib.sha256(f"{seed}:keep:{k}".encode()).digest())
        kept = {k: kept[k] for k in order[:limit]}
    return kept


def _drawn_twice(table: pa.Table) -> pa.Table:
    """Only groups that still have drawings of two collections once blank renderings are dropped."""
    spread = table.group_by("group").aggregate([("collection", "count_distinct")])
    kept = [g for g, n in zip(spread["group"].to_pylist(), spread["collection_count_distinct"].to_pylist(),
                              strict=True) if n >= 2]
    return table.filter(pc.is_in(table["group"], pa.array(kept, pa.string())))


def _visible_renders(drawings: Sequence[_Drawing], folder: Path, size: int) -> set[Path]:
    """The renderings of the drawings that show something, rendered where missing, on every core (tens of thousands
    from nothing; checking the cached ones costs as much as decoding them)."""
    paths = [folder / d.collection / f"{d.name}.png" for d in drawings]
    jobs = [(None if path.exists() else d.svg, path, size) for d, path in zip(drawings, paths, strict=True)]
    for parent in {path.parent for _, path, _ in jobs}:
        parent.mkdir(parents=True, exist_ok=True)
    log.info("checking %d renderings (%d to render)", len(jobs), sum(svg is not None for svg, _, _ in jobs))
    with ProcessPoolExecutor(available_cpus(), mp_context=multiprocessing.get_context("spawn")) as pool:
        shown = pool.map(_visible_render, jobs, chunksize=256)
        return {path for (_, path, _), visible in zip(jobs, shown, strict=True) if visible}


def _visible_render(job: tuple[str | None, Path, int]) -> bool:
    svg, path, size = job
    if svg is not None:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two builds sharing a data folder never share a file
        try:
            render_svg(svg, size).save(tmp, "PNG")
        except Exception as e:  # a drawing resvg cannot parse is skipped, not the whole set
            log.warning("skipped %s: %s", path, e)
            return False
        tmp.replace(path)
    # blank renderings (white shapes meant for a dark ground) are left out: such a query could match nothing
    return is_visible(Image.open(path))


def _add_rows(rows: dict[str, list], kind: str, key: str, drawings: Sequence[_Drawing], split: str,
              folder: Path, visible: set[Path]) -> None:
    for d in drawings:
        path = folder / d.collection / f"{d.name}.png"
        if path not in visible:
            continue
        for column, value in (("image_id", f"{d.collection}/{d.name}"), ("group", f"{kind}:{key}"), ("kind", kind),
                              ("collection", d.collection), ("split", split), ("png", path.read_bytes())):
            rows[column].append(value)


def _counts(table: pa.Table) -> dict[str, Any]:
    groups = table.select(["group", "kind", "split", "collection"]).to_pylist()
    by_group: dict[str, set[str]] = defaultdict(set)
    split_of_group, kind_of_group = {}, {}
    for r in groups:
        by_group[r["group"]].add(r["collection"])
        split_of_group[r["group"]], kind_of_group[r["group"]] = r["split"], r["kind"]
    collections = Counter(len(c) for g, c in by_group.items() if kind_of_group[g] == "brand")
    per_split = {kind: {s: sum(1 for g in by_group if kind_of_group[g] == kind and split_of_group[g] == s)
                        for s in SPLITS} for kind in ("brand", "concept")}
    return {"images": table.num_rows, "groups": per_split,
            "brands_by_collections": {"2": collections[2], "3": collections[3],
                                      "4+": sum(n for c, n in collections.items() if c >= 4)}}


def _licence(data_dir: Path, name: str, version: str) -> str | None:
    info = fetch_npm_package(name, version, data_dir / "npm") / "info.json"
    return json.loads(info.read_text()).get("license", {}).get("spdx") if info.exists() else None
