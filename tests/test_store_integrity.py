"""What a store promises across runs: a night interrupted between a version's manifest and its LATEST finishes its
pointers when resumed, and a store copied or moved elsewhere works from its new place (its manifests name the
files inside it by their keys). Real images, the bundled model, the in-process master, local stores."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.cli.main import main
from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, jpeg_bytes, photo, random_crop, write_photo_crops
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import fingerprints, latest_run_id

NAME = "marks"


def reindex(images: Path, store: Path, *extra: str) -> list[str]:
    return ["reindex", "--images", str(images), "--store", str(store), "--index", NAME, "--master", "in-process",
            "--json", *extra]


def night(args: list[str], capsys) -> dict:
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    return json.loads(capsys.readouterr().out)


def test_a_night_killed_between_its_manifest_and_latest_finishes_both_when_resumed(tmp_path, capsys):
    images, store_dir = tmp_path / "images", tmp_path / "store"
    images.mkdir()
    write_photo_crops(images, PHOTOS[:3], per_photo=3)
    first = night(reindex(images, store_dir), capsys)
    store = Store(str(store_dir))
    [fingerprint] = fingerprints(store)
    # The next night's changes, embedded by its run, which dies right after committing the manifest: LATEST
    # still names the first night's version.
    (images / "new.jpg").write_bytes(jpeg_bytes(random_crop(photo("coins", 256), np.random.default_rng(1))))
    (images / "coffee-0.jpg").unlink()
    run_id = "night-2"
    embed.run(EmbedConfig(images=str(images), store=str(store_dir), master="in-process", run_id=run_id))
    store.write_text(f"embeddings/{fingerprint}/LATEST", first["run_id"] + "\n")

    resumed = night(reindex(images, store_dir, "--run-id", run_id), capsys)
    assert resumed["status"] == "published" and resumed["images"]["indexed"] == 9
    assert latest_run_id(store, fingerprint) == run_id  # the pointer the first attempt would have moved
    # So the next night, with nothing changed, embeds nothing and publishes nothing.
    quiet = night(reindex(images, store_dir), capsys)
    assert quiet["status"] == "unchanged" and quiet["images"]["embedded"] == 0, quiet["images"]


@pytest.mark.slow
def test_a_store_moved_elsewhere_serves_and_reindexes_from_its_new_place(tmp_path, capsys):
    images, store_dir = tmp_path / "images", tmp_path / "store"
    images.mkdir()
    write_photo_crops(images, PHOTOS[:4], per_photo=4)
    # 16 images are enough to learn a whitening to 8 dimensions (1.5 images per dimension): the first night
    # learns it into this store and embeds the catalogue under it.
    first = night(reindex(images, store_dir, "--whiten", "8"), capsys)
    assert first["whitening"]["status"] == "learned" and first["status"] == "published"
    moved = tmp_path / "elsewhere" / "store"
    shutil.copytree(store_dir, moved)
    shutil.rmtree(store_dir)  # nothing of the old place is left to read

    hits = tmp_path / "hits.json"
    assert main(["search", "--store", str(moved), "--index", NAME, str(images / "rocket-1.jpg"), "--k", "1",
                 "--json", "--cache-dir", str(tmp_path / "cache")]) == 0, capsys.readouterr().err[-2000:]
    hits.write_text(capsys.readouterr().out)
    assert json.loads(hits.read_text())["results"][0]["hits"][0]["image_id"] == "rocket-1.jpg"
    again = night(reindex(images, moved, "--whiten", "8"), capsys)
    assert again["status"] == "unchanged" and again["whitening"]["status"] == "in use"
    assert again["whitening"]["uri"].startswith(str(moved))
    assert not store_dir.exists()
