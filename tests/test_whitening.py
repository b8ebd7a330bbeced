"""PCA-whitening as a model option: learned from an embeddings version, stored, applied by the model, and part
of the fingerprint, so whitened and raw vectors never mix."""

import json

import numpy as np
import pytest

from lookalike.cli.main import main
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import open_version
from lookalike.model.loading import load_model
from lookalike.model.spec import ModelError, ModelSpec
from lookalike.model.whitening import Whitening, WhiteningError, learn, learn_from_pairs


def test_learned_whitening_decorrelates_and_equalises_the_kept_directions():
    x = clustered_vectors(5000, 64, clusters=40, seed=5)
    w = learn(x, 16)
    assert (w.dim_in, w.dim_out) == (64, 16)
    y = x @ w.projection.T + w.bias
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-4)
    # Decorrelated, every kept direction with the same variance (faiss scales it by 1/n, which the L2 after
    # the whitening makes irrelevant).
    cov = np.cov(y, rowvar=False, bias=True)
    np.testing.assert_allclose(cov / cov.diagonal().mean(), np.eye(16), atol=2e-3)
    assert np.allclose(np.linalg.norm(w.apply(x), axis=1), 1, atol=1e-5)
    assert Whitening.from_bytes(w.to_bytes(), "mem").projection.tobytes() == w.projection.tobytes()
    with pytest.raises(WhiteningError, match="more images than dimensions"):
        learn(x[:10], 16)
    with pytest.raises(WhiteningError, match="give 1..64"):
        learn(x, 65)


def styled_drawings(rng: np.random.Generator, classes: int, per_class: int, d: int = 32):
    """Drawings of `classes` things: each its thing's centre, plus a large "style" in 6 directions that every thing
    shares (what a collection's drawing style adds), plus small noise."""
    centres = rng.normal(size=(classes, d))
    labels = np.repeat(np.arange(classes), per_class)
    style = np.zeros((len(labels), d))
    style[:, :6] = rng.normal(scale=3.0, size=(len(labels), 6))
    return centres[labels] + style + rng.normal(scale=0.5, size=(len(labels), d)), labels


def leave_one_out_p_at_1(x: np.ndarray, labels: np.ndarray) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    return float((labels[scores.argmax(axis=1)] == labels).mean())


def test_whitening_learned_from_matching_pairs_discounts_what_varies_between_drawings_of_one_thing():
    rng = np.random.default_rng(0)
    x, labels = styled_drawings(rng, 300, 3)
    pairs = np.array([(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if labels[i] == labels[j]])
    lw = learn_from_pairs(x, pairs, 16)
    assert (lw.dim_in, lw.dim_out) == (32, 16) and lw.projection.dtype == np.float32
    # On things it never saw: PCA-whitening keeps the shared style, the pairs teach the whitening to drop it.
    test, test_labels = styled_drawings(rng, 200, 3)
    raw, pcaw = leave_one_out_p_at_1(test, test_labels), leave_one_out_p_at_1(learn(x.astype(np.float32), 16)
                                                                               .apply(test), test_labels)
    learned = leave_one_out_p_at_1(lw.apply(test), test_labels)
    assert learned > 0.85 and learned > pcaw + 0.4 and pcaw < 0.5 and raw < 0.5, (raw, pcaw, learned)
    # Within-pair differences come out decorrelated with equal variance (the whitening's defining property).
    diff = (x[pairs[:, 0]] - x[pairs[:, 1]]) @ lw.projection.T
    cov = diff.T @ diff / len(diff)
    np.testing.assert_allclose(cov / cov.diagonal().mean(), np.eye(16), atol=2e-2)
    with pytest.raises(WhiteningError, match="30 matching pairs cannot whiten 32-d"):
        learn_from_pairs(x, pairs[:30], 16)


def run_embed(images, store: Store, spec: ModelSpec, run_id: str) -> dict:
    return embed.run(EmbedConfig(images=str(images), store=store.url, model=spec, master="in-process",
                                 run_id=run_id, max_error_rate=0.5))


@pytest.mark.slow
def test_a_whitened_model_embeds_the_learned_transform_of_its_raw_vectors(image_set, tmp_path, capsys):
    root, expected = image_set
    store = Store(str(tmp_path / "store"))
    raw = run_embed(root, store, ModelSpec(), "raw")

    assert main(["whiten", "--store", store.url, "--dim", "8", "--json"]) == 0
    learned = json.loads(capsys.readouterr().out)
    assert (learned["dim_in"], learned["dim_out"]) == (1280, 8)
    assert learned["uri"].startswith(store.url + "/whitening/")

    spec = ModelSpec(whitening_uri=learned["uri"])
    whitened = run_embed(root, store, spec, "whitened")
    assert whitened["fingerprint_id"] != raw["fingerprint_id"]
    assert whitened["fingerprint"]["whitening"]["dim"] == 8 and whitened["dim"] == 8
    assert whitened["counts"]["carried"] == 0  # another embedding space: nothing carried across
    # How workers rebuild the model: the whitening by its key in the store, which they resolve against its root.
    assert whitened["config"]["model"]["whitening_uri"] == store.key_of(learned["uri"]) == learned["uri"].split(
        store.url + "/", 1)[1]

    def vectors(manifest, run_id):
        table = open_version(store, manifest["fingerprint_id"], run_id).read_all()
        d = manifest["dim"]
        return dict(zip(table["image_id"].to_pylist(),
                        table["embedding"].combine_chunks().values.to_numpy().reshape(-1, d), strict=True))
    before, after = vectors(raw, "raw"), vectors(whitened, "whitened")
    assert before.keys() == after.keys() and len(after) == sum(e == "ok" for e in expected.values())
    with open(learned["uri"], "rb") as f:
        w = Whitening.from_bytes(f.read(), learned["uri"])
    ids = sorted(before)
    np.testing.assert_allclose(np.stack([after[i] for i in ids]), w.apply(np.stack([before[i] for i in ids])),
                               atol=2e-4)

    # Learning from whitened vectors is refused; a whitening of another dimension does not load.
    assert main(["whiten", "--store", store.url, "--embeddings", whitened["fingerprint_id"], "--dim", "4"]) == 2
    assert "already whitened" in capsys.readouterr().err
    # Model flags say nothing to a PCA-whitening of stored vectors (their version's model made them): refused.
    assert main(["whiten", "--store", store.url, "--model", "efficientnet_lite0", "--image-size", "224"]) == 2
    assert "--model, --image-size only go with --training-set" in capsys.readouterr().err
    assert main(["whiten", "--store", store.url, "--copies", "3"]) == 2
    assert "--copies only go with --training-set" in capsys.readouterr().err
    other = learn(clustered_vectors(500, 16, seed=1), 4)
    (tmp_path / "other.npz").write_bytes(other.to_bytes())
    with pytest.raises(ModelError, match="learned on 16-d embeddings; efficientnet_lite0_marks with gem pooling makes "
                                         "1280-d"):
        load_model(ModelSpec(whitening_uri=str(tmp_path / "other.npz")))


@pytest.mark.slow
def test_an_index_of_whitened_vectors_is_searched_by_image_with_the_whitening(image_set, tmp_path, capsys):
    root, _ = image_set
    store = Store(str(tmp_path / "store"))
    run_embed(root, store, ModelSpec(), "raw")
    assert main(["whiten", "--store", store.url, "--dim", "8", "--json"]) == 0
    uri = json.loads(capsys.readouterr().out)["uri"]
    whitened = run_embed(root, store, ModelSpec(whitening_uri=uri), "whitened")
    assert main(["build-index", "--store", store.url, "--index", "w", "--embeddings", whitened["fingerprint_id"],
                 "--publish", "--queries", "5", "--master", "in-process"]) == 0
    capsys.readouterr()
    # The worker rebuilds the model from the manifest (whitening included) and embeds the query with it.
    query = root / "photos" / "astronaut.jpg"
    assert main(["search", "--store", store.url, "--index", "w", str(query), "--k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]["hits"][0]
    assert hit["image_id"] == "photos/astronaut.jpg" and hit["cosine"] == pytest.approx(1.0, abs=1e-3)

    # An exported bundle carries the whitening: a host without the source store serves it by image.
    bundle = tmp_path / "bundle"
    assert main(["export", "--store", store.url, "--index", "w", "--dest", str(bundle), "--master", "in-process"]) == 0
    (tmp_path / "store").rename(tmp_path / "moved-away")
    assert main(["verify", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["search", "--store", str(bundle), "--index", "w", str(query), "--k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]["hits"][0]
    assert hit["image_id"] == "photos/astronaut.jpg" and hit["cosine"] == pytest.approx(1.0, abs=1e-3)
    # A bundle whose model points outside itself (as exports wrote them before) fails verification.
    [manifest_path] = bundle.glob("indexes/w/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["whitening_uri"] = uri
    manifest_path.write_text(json.dumps(manifest))
    assert main(["verify", str(bundle)]) == 2
    assert "not self-contained" in capsys.readouterr().err
