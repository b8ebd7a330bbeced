"""`python -m lookalike.dev.words_training --out DIR`: the DeViSE map of the word space (model/devise.py),
trained on icon names.

Data: every icon of four general icon sets (tabler, lucide, mdi, carbon: npm, permissive licences) with its name
as a phrase (`camera-off` → "camera off"). Concepts drawn by at least three sets under a one-word name are split
by a seeded hash of the word into train (60%), validation (20%) and test (20%); no icon whose name holds a
validation or test word is trained on, so the figures on those concepts are zero-shot.

Recipe: the bundled EfficientNet-Lite0's visual embedding (GeM, L2; frozen, computed once) → a linear map to
all-MiniLM-L6-v2's 384-d space, trained with pytorch-metric-learning's NT-Xent loss with the batch's phrases'
text vectors as the reference set (each icon against the phrases of its batch), Adam; the epoch with the best
validation mAP is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.dev.datasets import CONCEPT_SETS, concept_icons, named_icons
from lookalike.model.devise import ARTEFACT, CARD, save_artefact
from lookalike.model.imagenet import imagenet_class_names
from lookalike.model.loading import load_model
from lookalike.model.spec import WORD_SPACE_MODEL, ModelSpec
from lookalike.model.text import load_text_encoder
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.training.words import in_batch_phrase_loss, text_to_image

log = logging.getLogger(__name__)

SPLIT_SEED = 0
SPLITS = (("train", 0.6), ("validation", 0.8), ("test", 1.0))


def concept_split(concept: str, seed: int = SPLIT_SEED) -> str:
    """train, validation or test, fixed by a seeded hash of the concept word."""
    u = int(hashlib.sha256(f"{seed}:{concept}".encode()).hexdigest()[:8], 16) / 16 ** 8
    return next(name for name, upper in SPLITS if u < upper)


def _embed(embedder: QueryEmbedder, uris: Sequence[str], cache_dir: Path) -> np.ndarray:
    """The frozen visual embedding of each image, kept in cache_dir under the model and the list of images: a
    second run with other training settings does not embed again."""
    key = hashlib.sha256(json.dumps([embedder.fingerprint_id, *uris]).encode()).hexdigest()[:16]
    path = cache_dir / f"features-{key}.npy"
    if path.exists():
        return np.load(path)
    x = np.concatenate([embedder.embed([Path(u).read_bytes() for u in uris[i:i + 32]])
                        for i in range(0, len(uris), 32)]) if uris else np.zeros((0, embedder.model.dim), np.float32)
    np.save(path, x)
    return x


def train_words(data_dir: Path, out_dir: Path, image_size: int = 224, max_train: int = 20_000, epochs: int = 25,
                batch_size: int = 256, lr: float = 2e-3, temperature: float = 0.05, seed: int = 0,
                model: str = WORD_SPACE_MODEL) -> dict[str, Any]:
    """Build the data, train, keep the best epoch, write the artefact and its model card into out_dir."""
    from pytorch_metric_learning.losses import NTXentLoss
    started = time.perf_counter()
    torch.manual_seed(seed)
    concepts = concept_icons(data_dir, size=image_size)
    concept_of = concepts["concept"].to_pylist()
    split_of = {c: concept_split(c) for c in sorted(set(concept_of))}
    held = {c for c, s in split_of.items() if s != "train"}
    train = named_icons(data_dir, size=image_size, keep=lambda name: not set(name.split("-")) & held)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(train.num_rows, min(max_train, train.num_rows), replace=False))
    train = train.take(rows)
    phrases = train["phrase"].to_pylist()
    vocabulary = sorted(set(phrases))

    embedder = QueryEmbedder(load_model(ModelSpec(name=model, image_size=image_size)))
    encoder = load_text_encoder()
    t0 = time.perf_counter()
    x_train = torch.from_numpy(_embed(embedder, train["uri"].to_pylist(), data_dir))
    held_rows = {s: [i for i, c in enumerate(concept_of) if split_of[c] == s] for s in ("validation", "test")}
    uris = concepts["uri"].to_pylist()
    x_held = {s: _embed(embedder, [uris[i] for i in r], data_dir) for s, r in held_rows.items()}
    embed_s = time.perf_counter() - t0
    text = torch.from_numpy(encoder.encode(vocabulary))
    label_of = {p: i for i, p in enumerate(vocabulary)}
    y_train = torch.tensor([label_of[p] for p in phrases])
    held_concepts = {s: sorted({concept_of[i] for i in r}) for s, r in held_rows.items()}
    held_text = {s: encoder.encode(held_concepts[s]) for s in held_rows}

    def evaluate(projection: nn.Linear, split: str) -> dict[str, float]:
        with torch.no_grad():
            images = nn.functional.normalize(projection(torch.from_numpy(x_held[split])), dim=-1).numpy()
        return text_to_image(held_text[split], images, [concept_of[i] for i in held_rows[split]],
                             held_concepts[split])

    projection = nn.Linear(x_train.shape[1], encoder.dim)
    optimiser = torch.optim.Adam(projection.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = NTXentLoss(temperature=temperature)
    best, history = (-1.0, None, 0), []
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x_train))
        losses = []
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            emb = nn.functional.normalize(projection(x_train[batch]), dim=-1)
            loss = in_batch_phrase_loss(loss_fn, emb, y_train[batch], text)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        validation = evaluate(projection, "validation")
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **validation})
        log.info("epoch %d: loss %.4f, validation mAP %.4f", epoch, history[-1]["loss"], validation["mAP"])
        if validation["mAP"] > best[0]:
            best = (validation["mAP"], {k: v.clone() for k, v in projection.state_dict().items()}, epoch)
    train_s = time.perf_counter() - t0
    projection.load_state_dict(best[1])

    out_dir.mkdir(parents=True, exist_ok=True)
    tag_words = sorted(set(vocabulary) | set(imagenet_class_names()))
    sha = save_artefact(str(out_dir / ARTEFACT), projection, tag_words, encoder.encode(tag_words))
    card = {
        "name": "devise-lite0-minilm", "artefact": ARTEFACT, "sha256": sha, "backbone": model,
        "maps": f"{model} (bundled weights) GeM p=3 visual embedding, L2 → linear → L2",
        "into": encoder.fingerprint, "image_size": image_size,
        "data": {"packages": [f"{n}@{v}" for n, v in CONCEPT_SETS], "trained_icons": len(x_train),
                 "trained_phrases": len(vocabulary), "split_seed": SPLIT_SEED,
                 "split": "concepts drawn by ≥ 3 sets under a one-word name, by sha256(seed:word): 60/20/20; no "
                          "trained icon's name holds a validation or test word",
                 "concepts": {s: len(v) for s, v in held_concepts.items()}, "sample_seed": seed},
        "recipe": {"loss": f"pytorch_metric_learning NTXentLoss(temperature={temperature}), each icon against "
                           "the phrases of its batch (ref_emb)", "optimiser": f"Adam lr {lr}, weight decay 1e-4",
                   "batch_size": batch_size, "epochs": epochs, "best_epoch": best[2]},
        "metrics": {"validation": evaluate(projection, "validation"), "test": evaluate(projection, "test")},
        "tags_vocabulary": len(tag_words),
        "timings": {"embed_s": round(embed_s, 1), "train_s": round(train_s, 1),
                    "total_s": round(time.perf_counter() - started, 1)},
        "history": history,
    }
    (out_dir / CARD).write_text(json.dumps(card, indent=1) + "\n")
    return card


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder the artefact and its model card are written to (to ship "
                                                "them: lib/lookalike/model/artefacts)")
    p.add_argument("--data-dir", default=None, help="where the npm icon packages, renderings and features are kept")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-train", type=int, default=20_000, help="training icons sampled (default 20,000: all)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--model", default=WORD_SPACE_MODEL, help="the backbone whose frozen visual embedding is mapped")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lookalike-icons-"))
    card = train_words(data_dir, Path(args.out), args.image_size, args.max_train, args.epochs, seed=args.seed,
                       model=args.model)
    print(json.dumps({k: card[k] for k in ("sha256", "data", "recipe", "metrics", "timings")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
