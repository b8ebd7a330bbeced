"""The training set from real registry packages, and data-parallel training on local Spark: two TorchDistributor
processes, a few steps that fit the data, a SIGKILL after the first checkpoint and a resume from it, and the best
weights loading as a model through --weights."""

import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from support.cli import store_option_args

from lookalike.cli.main import main
from lookalike.core.errors import ConfigError
from lookalike.core.store import Store
from lookalike.dev import imagefactory
from lookalike.model.cards import model_card
from lookalike.model.loading import load_model
from lookalike.model.spec import ModelError, ModelSpec
from lookalike.model.whitening import Whitening
from lookalike.retrieval.class_focus import class_focus
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.limits import QueryError
from lookalike.training.concepts import canonical, concept_keys, name_key, singular
from lookalike.training.data import TrainingDataConfig, brand_group, read_split, split_of
from lookalike.training.data import run as build_training_set
from lookalike.training.validation import embed_pngs
from lookalike.training.whitening_effect import HELPS_MIN_MAP_GAIN

pytestmark = pytest.mark.network

SMALL = {"brand_sets": (("@iconify-json/bxl", "1.2.4"), ("@iconify-json/cib", "1.2.3"),
                        ("@iconify-json/fa6-brands", "1.2.6")),
         "concept_sets": (("@iconify-json/tabler", "1.2.41"), ("@iconify-json/lucide", "1.2.137")),
         "max_brands": 40, "max_concepts": 20}


@pytest.fixture(scope="module")
def store(s3_server, tmp_path_factory) -> Store:
    store = Store(f"s3://{s3_server.new_bucket()}/store", s3_server.options)
    build_training_set(TrainingDataConfig(store=store.url, storage_options=store.options,
                                          data_dir=str(tmp_path_factory.mktemp("training-data")), **SMALL))
    return store


def test_names_meet_on_their_brand_or_concept_and_held_out_sets_are_refused():
    assert brand_group("github-dark") == brand_group("square-github") == brand_group("github-original-wordmark") \
        == brand_group("GitHub") == "github"
    assert brand_group("3ds-max-logo-block") == "3dsmax" and brand_group("500px-5") == "500px"
    assert name_key("camera-outline") == "camera" and name_key("arrow-left") == "arrow-left"
    assert split_of("brand:github") == split_of("brand:github") and \
        {split_of(f"brand:{i}") for i in range(200)} == {"train", "validation", "test"}
    for held_out in ("@iconify-json/noto", "@iconify-json/fluent-emoji-flat", "@iconify-json/twemoji",
                     "papirus-icon-theme"):
        with pytest.raises(ConfigError, match="independent evaluation"):
            TrainingDataConfig(store="/tmp/x", concept_sets=((held_out, "1.0.0"),))


def test_plurals_and_synonyms_meet_and_a_longer_name_keeps_what_it_draws():
    assert [singular(w) for w in ("users", "batteries", "boxes", "watches", "people", "leaves", "houses")] == \
        ["user", "battery", "box", "watch", "person", "leaf", "house"]
    assert [singular(w) for w in ("glasses", "bus", "compass", "news", "scissors", "gas", "cross")] == \
        ["glasses", "bus", "compass", "news", "scissors", "gas", "cross"]
    assert canonical("users") == canonical("person") == canonical("account") == "user"
    assert canonical("bin") == canonical("delete") == canonical("trashes") == "trash"
    assert canonical("magnifying-glass") == "search" and canonical("settings") == canonical("cogs") == "gear"
    assert canonical("person-add") == "user-plus"  # one thing and mark words: the thing's synonym
    assert canonical("view-grid") == "view-grid" and canonical("call-split") == "call-split"  # not inside a name
    assert canonical("arrow-left") == "arrow-left"


def test_a_name_joins_its_head_noun_only_when_safe_and_never_across_the_split():
    names = [(c, n) for c in ("a", "b", "c") for n in ("cart", "lion", "head", "man", "coffee", "cup", "sign")] + \
        [("a", "shopping-cart"), ("b", "lion-head"), ("c", "coffee-cup"), ("a", "running-man"),
         ("b", "cart-plus"), ("c", "2-cup"), ("d", "carts"), ("d", "rupiah-sign"), ("d", "apple-cup"),
         ("d", "cart-24px")]
    same_side = concept_keys(names, lambda key: "train")
    assert same_side["a", "shopping-cart"] == "cart" and same_side["d", "carts"] == "cart"  # a qualifier; a plural
    assert same_side["b", "lion-head"] == "lion-head"      # the qualifier is itself a concept: not a head
    assert same_side["c", "coffee-cup"] == "coffee-cup"    # likewise
    assert same_side["a", "running-man"] == "running-man"  # a pose changes the drawing
    assert same_side["b", "cart-plus"] == "cart-plus"      # the head is a sign, not the cart
    assert same_side["c", "2-cup"] == "2-cup"              # a number
    assert same_side["d", "rupiah-sign"] == "rupiah-sign"  # a sign, a face, a box hold another thing
    assert concept_keys(names, lambda key: "train", brands={"apple"})["d", "apple-cup"] == "apple-cup"  # a brand
    assert same_side["d", "apple-cup"] == "cup" and same_side["d", "cart-24px"] == "cart"
    sides = {"cart": "test", "shopping-cart": "train", "carts": "test"}
    across = concept_keys(names, lambda key: sides.get(key, "train"))
    assert across["a", "shopping-cart"] == "shopping-cart"  # stays on its own side under its own key
    assert across["d", "carts"] == "cart"
    for (collection, name), key in across.items():  # a drawing's side is its own name's, whatever the merges
        assert sides.get(key, "train") == sides.get(name_key(name), "train"), (collection, name)


@pytest.mark.slow
def test_the_training_set_holds_groups_drawn_by_several_collections_each_on_one_side_of_the_split(store):
    m = build_training_set(TrainingDataConfig(store=store.url, storage_options=store.options, **SMALL))  # built
    counts = m["counts"]
    brands, concepts = sum(counts["groups"]["brand"].values()), sum(counts["groups"]["concept"].values())
    assert sum(counts["brands_by_collections"].values()) == brands and 30 <= brands <= 40 and 15 <= concepts <= 20
    assert {p["name"]: p["licence"] for p in m["packages"]}["@iconify-json/fa6-brands"] == "CC-BY-4.0"
    seen: dict[str, str] = {}
    for split in ("train", "validation", "test"):
        table = read_split(store, "default", split)
        for group in table["group"].to_pylist():
            assert seen.setdefault(group, split) == split  # no group on two sides
        for row in table.filter(pc.field("kind") == "concept").select(["image_id"]).to_pylist():
            # whatever the merges, a drawing is on its own name's side (the same under every version of the rules)
            assert split_of(f"concept:{name_key(row['image_id'].split('/', 1)[1])}") == split
        groups = table.group_by("group").aggregate([("collection", "count_distinct")])
        assert min(groups["collection_count_distinct"].to_pylist()) >= 2
    assert len(seen) == brands + concepts and read_split(store, "default", "train").num_rows > brands
    with pytest.raises(ConfigError, match="one of train"):
        read_split(store, "default", "everything")


def test_each_restyle_redraws_a_mark_and_the_shipped_model_still_knows_most_of_them(store):
    from PIL import Image

    from lookalike.training.augment import STYLE_RESTYLES
    train = read_split(store, "default", "train")
    first = {}
    for group, png in zip(train["group"].to_pylist(), train["png"].to_pylist(), strict=True):
        first.setdefault(group, png)
    marks = [Image.open(io.BytesIO(png)).convert("RGB") for png in list(first.values())[:24]]
    model = load_model(ModelSpec(name="efficientnet_lite0_marks", image_size=160))
    originals = embed_pngs(model, [imagefactory.png_bytes(m) for m in marks])
    found = {}
    for restyle, _ in STYLE_RESTYLES:
        name = restyle.__name__
        redrawn = [restyle(m, random.Random(i)) for i, m in enumerate(marks)]
        again = [restyle(m, random.Random(i)) for i, m in enumerate(marks)]
        assert all(r.size == m.size and r.mode == "RGB" for r, m in zip(redrawn, marks, strict=True)), name
        assert all(r.tobytes() == a.tobytes() for r, a in zip(redrawn, again, strict=True)), name  # seeded
        changed = np.mean([(np.abs(np.asarray(r, np.int16) - np.asarray(m, np.int16)).max(axis=2) > 40).mean() > 0.002
                           for r, m in zip(redrawn, marks, strict=True)])
        assert changed >= 0.9, name  # it redraws, it does not pass the mark through
        vectors = embed_pngs(model, [imagefactory.png_bytes(r) for r in redrawn])
        found[name] = float(np.mean((vectors @ originals.T).argmax(axis=1) == np.arange(len(marks))))
    # A restyle the model cannot see through at all would teach noise; one it always sees through teaches little.
    assert min(found.values()) >= 0.25 and np.mean(list(found.values())) >= 0.6, found


@pytest.mark.slow
def test_distributed_training_fits_its_data_resumes_after_a_kill_and_its_weights_load(store, tmp_path):
    args = ["train", "--store", store.url, *store_option_args(store.options), "--run-id", "tiny", "--steps", "9",
            "--batch-size", "8", "--m-per-group", "2", "--image-size", "128", "--checkpoint-every", "3",
            "--validate-every", "3", "--no-augment", "--lr", "1e-3", "--master", "local[2]"]
    killed_after_a_checkpoint(args, store, "tiny")
    assert main([*args, "--json", "--out", str(tmp_path / "out")]) == 0
    m = json.loads(store.read_text("training/tiny/_MANIFEST.json"))
    history = store.read_json("training/tiny/history.json")
    assert history["resumed"] and history["resumed"][0] in (3, 6)  # it went on from a checkpoint
    at_resume = [loss for step, loss in history["probe"] if step == history["resumed"][0]]
    assert len(at_resume) == 2 and at_resume[0] == pytest.approx(at_resume[1], rel=1e-4)  # the model came back
    assert 0 < history["start"]["mAP"] <= 1  # the ImageNet weights' figures, where training started
    assert [v["step"] for v in m["validation"]] == [3, 6, 9]
    probe = [loss for _, loss in history["probe"]]
    assert probe[-1] < probe[0], probe  # the fixed probe batch's loss went down
    assert m["data"]["counts"]["images"] > 50 and m["recipe"]["processes"] == 2

    # The best weights are an EfficientNet-Lite0 state dict (fp16): they load through --weights into the default
    # (marks) architecture like any other, their untouched ImageNet classifier dropped.
    card = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert card["sha256"] == m["files"]["weights"]["sha256"] and card["best"] == m["best"]
    # The card says what a PCA-whitening does to the weights on the validation groups (what the reindex follows),
    # and sits beside the weights in the store too, where --weights finds it.
    assert card["whitening"] == m["whitening"] and isinstance(m["whitening"]["helps"], bool), m["whitening"]
    measured = [m["whitening"][kind] for kind in ("brand", "concept") if "raw" in m["whitening"][kind]]
    assert measured and all(0 < x[way]["mAP"] <= 1 for x in measured for way in ("raw", "whitened")), measured
    assert m["whitening"]["helps"] == (m["whitening"]["mAP_gain"] >= HELPS_MIN_MAP_GAIN)
    in_store = ModelSpec(weights_uri=store.child_url(m["files"]["weights"]["key"]), weights_options=store.options)
    assert model_card(in_store)["whitening"] == m["whitening"]
    trained = load_model(ModelSpec(weights_uri=str(tmp_path / "out" / "tiny.pt"), image_size=128))
    imagenet = load_model(ModelSpec(name="efficientnet_lite0", image_size=128))
    assert trained.weights_sha256 == m["files"]["weights"]["sha256"] != imagenet.weights_sha256
    photo = [imagefactory.jpeg_bytes(imagefactory.photo("coffee", 128))]
    a, b = QueryEmbedder(trained).embed(photo), QueryEmbedder(imagenet).embed(photo)
    assert 0.5 < float(a[0] @ b[0]) < 0.99999 and np.isclose(np.linalg.norm(a[0]), 1.0)


def killed_after_a_checkpoint(args: list[str], store: Store, run: str) -> None:
    """`lookalike train ARGS` killed (the driver, its JVM and the training processes: one process group) once a
    checkpoint is in, before the run finished."""
    proc = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    latest, deadline = f"training/{run}/checkpoints/LATEST", time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not store.exists(latest):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.exists(latest) and not store.exists(f"training/{run}/_MANIFEST.json")


def test_the_words_objective_brings_drawings_to_their_names_resumes_and_serves_as_a_word_space(store, tmp_path):
    args = ["train", "--store", store.url, *store_option_args(store.options), "--run-id", "words", "--objective",
            "words", "--steps", "9", "--batch-size", "8", "--m-per-group", "2", "--image-size", "128",
            "--checkpoint-every", "3", "--validate-every", "3", "--no-augment", "--lr", "1e-3", "--master", "local[2]"]
    killed_after_a_checkpoint(args, store, "words")
    assert main([*args, "--json", "--out", str(tmp_path / "out")]) == 0
    m = json.loads(store.read_text("training/words/_MANIFEST.json"))
    history = store.read_json("training/words/history.json")
    assert history["resumed"] and history["resumed"][0] in (3, 6)
    # The projection came back with the backbone: the fixed probe batch's loss on the restored model is the loss
    # measured before the checkpoint (a fresh projection would give another).
    at_resume = [loss for step, loss in history["probe"] if step == history["resumed"][0]]
    assert len(at_resume) == 2 and at_resume[0] == pytest.approx(at_resume[1], rel=1e-4), history["probe"]
    probe = [loss for _, loss in history["probe"]]
    assert probe[-1] < probe[0], probe  # the fixed probe batch's drawings came nearer their names
    # Validated as the word space is used: validation concepts' names search validation drawings.
    assert [v["step"] for v in m["validation"]] == [3, 6, 9]
    assert all(0 <= v["P@1"] <= 1 and 0 < v["mAP"] <= 1 and "R@10" in v for v in m["validation"])
    assert m["whitening"] is None and m["word_space"]["into"]["name"] == "all-MiniLM-L6-v2"
    assert m["word_space"]["sha256"] == m["files"]["words"]["sha256"]

    # The run's weights and map serve as a word space: --space words --weights (in the store, or copied by --out).
    weights = store.child_url(m["files"]["weights"]["key"])
    words = load_model(ModelSpec(space="words", weights_uri=weights, weights_options=store.options))
    assert words.dim == 384 and words.preprocessing.image_size == 128
    assert words.fingerprint["word_space"]["sha256"] == m["files"]["words"]["sha256"]
    assert words.fingerprint_id != load_model(ModelSpec(space="words")).fingerprint_id  # not the shipped space
    copied = load_model(ModelSpec(space="words", weights_uri=str(tmp_path / "out" / "words.pt")))
    assert copied.fingerprint_id == words.fingerprint_id
    drawings = read_split(store, "default", "train")
    vectors = embed_pngs(words, drawings["png"].to_pylist()[:4])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    tags = words.module.pooling.tags(torch.from_numpy(vectors), 3)  # named by its training phrases and ImageNet's
    assert all(len(t) == 3 for t in tags) and "tabby" in words.module.pooling.vocabulary
    # Without its map, or with weights trained for marks, the word space says what to do.
    (tmp_path / "out" / "words.words.pt").unlink()
    with pytest.raises(ModelError, match="missing: keep it beside the weights"):
        load_model(ModelSpec(space="words", weights_uri=str(tmp_path / "out" / "words.pt")))
    (tmp_path / "out" / "words.json").unlink()
    with pytest.raises(ModelError, match="--objective words"):
        load_model(ModelSpec(space="words", weights_uri=str(tmp_path / "out" / "words.pt")))


@pytest.mark.slow
def test_a_whitening_learned_from_the_training_sets_pairs_serves_as_the_models_last_layer(store, capsys):
    base = ["whiten", "--store", store.url, *store_option_args(store.options), "--training-set", "default",
            "--model", "efficientnet_lite0", "--image-size", "128", "--dim", "64", "--json"]
    # The train split's ~100 drawings alone are fewer pairs than the 1,280 dimensions: the message says so.
    assert main(base) == 2
    assert "matching pairs cannot whiten 1280-d vectors" in capsys.readouterr().err
    assert main([*base, "--copies", "14"]) == 0  # each drawing's synthetic copies are pairs with it
    out = json.loads(capsys.readouterr().out)
    assert (out["dim_in"], out["dim_out"]) == (1280, 64) and "synthetic copies" in out["learned_from"]
    whitened = load_model(ModelSpec(name="efficientnet_lite0", image_size=128, whitening_uri=out["uri"],
                                    weights_options=store.options))
    assert whitened.dim == 64 and whitened.fingerprint["whitening"]["sha256"]
    # The model's last layer is that whitening: its vectors are the raw model's vectors whitened. (Whether a
    # learned whitening helps is tests/test_whitening.py's question, on data large enough to answer it: from this
    # tiny train split it does not, on the validation groups.)
    pngs = read_split(store, "default", "validation")["png"].to_pylist()
    raw = embed_pngs(load_model(ModelSpec(name="efficientnet_lite0", image_size=128)), pngs)
    stored = Whitening.from_bytes(store.read_bytes(out["uri"].removeprefix(store.url + "/")), out["uri"])
    np.testing.assert_allclose(embed_pngs(whitened, pngs), stored.apply(raw), atol=2e-4)
    assert main([*base, "--copies", "14", "--space", "words"]) == 2
    assert "without one" in capsys.readouterr().err


def test_the_shipped_marks_model_loads_by_name_with_the_weights_its_card_names():
    from importlib import resources

    from lookalike.model.loading import cached_model
    shipped = resources.files("lookalike.model").joinpath("artefacts", "lite0-marks.pt")
    card = json.loads(resources.files("lookalike.model").joinpath("artefacts", "lite0-marks.json").read_text())
    assert shipped.stat().st_size <= 25 << 20 and card["data"]["packages"] and card["test"]["trained gem:320"]
    marks, imagenet = cached_model(ModelSpec(), "cpu"), cached_model(ModelSpec(name="efficientnet_lite0"), "cpu")
    assert marks.spec.name == "efficientnet_lite0_marks"  # the default
    assert marks.weights_sha256 == card["sha256"] and marks.fingerprint_id != imagenet.fingerprint_id
    assert marks.dim == imagenet.dim == 1280 and marks.preprocessing == imagenet.preprocessing
    # Its features no longer feed the ImageNet classifier: what reads it says which model has one.
    with pytest.raises(ModelError, match="ImageNet classifier.*--model efficientnet_lite0"):
        load_model(ModelSpec(name="efficientnet_lite0_marks", space="conse"))
    with pytest.raises(QueryError, match="class-weighted search needs .*--model efficientnet_lite0"):
        class_focus(marks, "tabby")
    # The word spaces default to the ImageNet model their map and classifier were made with.
    assert ModelSpec(space="words").name == ModelSpec(space="conse").name == "efficientnet_lite0"
