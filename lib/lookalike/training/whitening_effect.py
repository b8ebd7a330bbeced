"""Whether a PCA-whitening helps a model, measured as `lookalike reindex` would use it: learned without labels from
the catalogue's own vectors (here the drawings of a training set's validation groups), then the same retrieval
judged raw and whitened, for brands and for concepts apart. The answer goes into the model card, which the
reindex follows: a model whose card says whitening does not help is indexed raw."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lookalike.model.loading import LoadedModel
from lookalike.model.spec import MIN_IMAGES_PER_DIM
from lookalike.model.whitening import learn
from lookalike.training.validation import embed_pngs, leave_one_out, whole_groups

KINDS = ("brand", "concept")
# A whitening costs a second embedding of the catalogue and makes a new fingerprint: it is worth it only for a
# gain above the noise of a validation split this size.
HELPS_MIN_MAP_GAIN = 0.005


def whitening_effect(model: LoadedModel, validation: pa.Table, dim: int, max_images: int = 3000,
                     seed: int = 0) -> dict[str, Any]:
    """P@1 and mAP raw and whitened per kind of group, the mean mAP gain, and whether it helps."""
    out: dict[str, Any] = {"dim": min(dim, model.dim)}
    gains = []
    for kind in KINDS:
        rows = whole_groups(validation.filter(pc.field("kind") == kind), max_images, seed)
        groups = rows["group"].to_pylist()
        dims = min(out["dim"], int(len(groups) / MIN_IMAGES_PER_DIM))
        if dims < 1 or len(set(groups)) < 2:
            out[kind] = {"images": len(groups), "skipped": "too few images to learn a whitening from"}
            continue
        vectors = embed_pngs(model, rows["png"].to_pylist())
        raw, whitened = leave_one_out(vectors, groups), leave_one_out(learn(vectors, dims).apply(vectors), groups)
        out[kind] = {"images": len(groups), "groups": len(set(groups)), "dim": dims, "raw": raw, "whitened": whitened}
        gains.append(whitened["mAP"] - raw["mAP"])
    if not gains:
        return {**out, "helps": None, "decided_by": "nothing measured: too few validation images"}
    gain = sum(gains) / len(gains)
    return {**out, "mAP_gain": round(gain, 4), "helps": gain >= HELPS_MIN_MAP_GAIN,
            "decided_by": f"mean validation mAP gain over {', '.join(KINDS)} >= {HELPS_MIN_MAP_GAIN}"}
