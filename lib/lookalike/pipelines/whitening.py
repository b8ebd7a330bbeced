"""Which PCA-whitening a nightly run embeds with. Whitening is learned from the catalogue's own vectors, so it
cannot exist before the first embedding: the run uses the whitening its index already uses, else the one
learned for this model in the store, else — once the catalogue is large enough — embeds a random sample of it
unwhitened, learns the whitening from that, and embeds the catalogue under the whitened fingerprint. A
catalogue still too small is embedded and indexed unwhitened. Once learned the whitening stays fixed (the
fingerprint names it), so later nights embed only new or changed images, once. By default a run follows the
model's card: a model measured not to gain from whitening (lookalike.training.whitening_effect) is indexed raw."""

from __future__ import annotations

import dataclasses
import logging
import math
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lookalike.core.errors import ConfigError
from lookalike.core.layout import WHITENING_PREFIX, ReindexLayout, whitening_stem
from lookalike.core.store import Store
from lookalike.embed.catalogue import as_images_table, load_catalogue
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import open_version
from lookalike.index import publish
from lookalike.model.spec import DEFAULT_WHITEN_DIM, MIN_IMAGES_PER_DIM, is_relative

log = logging.getLogger(__name__)

# Unwhitened images embedded to learn from: 100 per kept dimension, far past where the gain saturates on the
# quality set (1,000 vectors for 512 d), and a small fraction of a catalogue large enough for it to matter.
SAMPLE_IMAGES = 50_000
FOLLOW_MODEL_CARD = "model"  # whiten unless the model's card measured that whitening does not help it


@dataclass
class WhiteningPlan:
    embed: EmbedConfig                    # what the run embeds with
    report: dict[str, Any]                # the run report's "whitening" part
    embedded: dict[str, Any] | None = None  # the unwhitened embeddings manifest, when it is the run's embedding


def plan(store: Store, name: str, run_id: str, embed: EmbedConfig, dim: int | str | None,
         embed_run: Callable[[EmbedConfig], dict[str, Any]], sample_images: int = SAMPLE_IMAGES) -> WhiteningPlan:
    """embed_run(config) embeds (incrementally, under the run's id) and returns the embeddings manifest. `dim`:
    FOLLOW_MODEL_CARD, a number of dimensions, or None (off)."""
    spec = embed.model
    if spec.whitening_uri:
        return WhiteningPlan(embed, {"status": "given", "uri": spec.whitening_uri})
    if not dim:
        return WhiteningPlan(embed, {"status": "off"})
    from lookalike.model.loading import cached_model
    model = cached_model(spec, "cpu")
    if dim == FOLLOW_MODEL_CARD:
        from lookalike.model.cards import whitening_helps
        helps, measured = whitening_helps(spec)
        if helps is False:
            advice = {"helps": False, "mAP_gain": measured.get("mAP_gain"), "decided_by": measured.get("decided_by")}
            used = _used_by_latest(store, name, model.fingerprint_id)
            if used:
                # An index already served whitened stays so: leaving it costs a full re-embedding, so it is the
                # user's call (--no-whiten), which the report puts to them.
                return WhiteningPlan(_with(embed, used[0]), {"status": "in use", "uri": used[0], "dim": used[1],
                                                             "model_card": advice})
            return WhiteningPlan(embed, {"status": "off", "model_card": advice})
        dim = DEFAULT_WHITEN_DIM
    dim = min(dim, model.dim)
    uri = _existing(store, name, model.fingerprint_id, dim)
    if uri:
        return WhiteningPlan(_with(embed, uri), {"status": "in use", "uri": uri, "dim": dim})
    needed = math.ceil(MIN_IMAGES_PER_DIM * dim)
    # Read here and again by the embed job: only on nights before the whitening exists.
    catalogue = load_catalogue(embed.images, embed.storage_options)
    if catalogue.num_rows < needed:
        log.info("whitening to %d d waits for %d images (the catalogue has %d)", dim, needed, catalogue.num_rows)
        raw = embed_run(embed)
        return WhiteningPlan(embed, {"status": "waiting", "dim": dim, "images": catalogue.num_rows,
                                     "needed": needed}, embedded=raw)
    sample = max(needed, sample_images)
    raw = embed_run(embed if catalogue.num_rows <= sample
                    else dataclasses.replace(embed, images=_write_sample(store, name, run_id, catalogue, sample)))
    if raw["counts"]["rows"] <= dim:
        raise ConfigError(f"only {raw['counts']['rows']} of {min(sample, catalogue.num_rows)} images sampled to "
                          f"learn the whitening could be embedded (see {raw['fingerprint_id']}/{raw['run_id']}'s "
                          f"errors table); {dim + 1} are needed for {dim} d: fix the images or lower --whiten")
    from lookalike.embed.whitening import learn_from_version
    source = open_version(store, raw["fingerprint_id"], raw["run_id"])
    uri, _ = learn_from_version(store, source, dim)
    log.warning("learned a %d-d whitening from %s (%d images): the catalogue is embedded under it", dim,
                source.layout.prefix, raw["counts"]["rows"])
    return WhiteningPlan(_with(embed, uri), {"status": "learned", "uri": uri, "dim": dim,
                                             "learned_from": source.layout.prefix,
                                             "learned_from_images": raw["counts"]["rows"]})


def _write_sample(store: Store, name: str, run_id: str, catalogue: pa.Table, size: int) -> str:
    """A random sample of the images table, the same on a resumed run (fixed seed, sorted catalogue)."""
    rows = np.sort(np.random.default_rng(0).choice(catalogue.num_rows, size, replace=False))
    key = ReindexLayout(store, name).whitening_sample(run_id)
    store.write_parquet(key, as_images_table(catalogue.take(pa.array(rows))))
    return store.child_url(key)


def _with(embed: EmbedConfig, uri: str) -> EmbedConfig:
    return dataclasses.replace(embed, model=dataclasses.replace(embed.model, whitening_uri=uri))


def _used_by_latest(store: Store, name: str, fingerprint_id: str) -> tuple[str, int] | None:
    """The whitening (URI, dimensions) LATEST of this index was embedded with, if it is one for this model."""
    latest = publish.latest_version(store, name)
    if latest is None:
        return None
    used = (publish.read_index_manifest(store, name, latest).get("model") or {}).get("whitening_uri")
    match = re.match(rf"{re.escape(fingerprint_id)}-(\d+)d-", posixpath.basename(used or ""))  # whitening_stem
    if not match:
        return None
    return (store.child_url(used) if is_relative(used) else used), int(match.group(1))  # wherever the store is now


def _existing(store: Store, name: str, fingerprint_id: str, dim: int) -> str | None:
    """The whitening LATEST of this index was embedded with, if it is one for this model and dimension (so a
    run never switches whitening behind the index's back); else the only one the store holds for them."""
    stem = whitening_stem(fingerprint_id, dim)
    used = _used_by_latest(store, name, fingerprint_id)
    if used and used[1] == dim:
        return used[0]
    found = [k for k in store.list(WHITENING_PREFIX) if posixpath.basename(k).startswith(stem) and k.endswith(".npz")]
    if len(found) > 1:
        raise ConfigError(f"the store holds {len(found)} whitenings for {fingerprint_id} at {dim} d "
                          f"({', '.join(found)}) and index {name!r} uses none of them: choose one with "
                          "--whitening URI")
    return store.child_url(found[0]) if found else None
