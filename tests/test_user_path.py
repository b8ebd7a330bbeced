"""The path a new user walks with the `lookalike` command, on Spark local[2] and a local store: a join that leaves
the catalogue alone, a failed night that recovers the way its message says, and what the command tells the user."""

import json
from pathlib import Path

import pytest

from lookalike.cli.main import main
from lookalike.core.store import Store
from lookalike.embed.versions import fingerprints, latest_run_id
from lookalike.index import publish

from imagefactory import PHOTOS, write_photo_crops

NAME = "marks"


def cli(args: list[str], capsys) -> tuple[int, dict | str]:
    """Run `lookalike ARGS`; its JSON output when it printed JSON, else what it wrote to stderr."""
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 and out.strip().startswith("{") else out + err)


def reindex(images: Path, store: Path, *extra: str) -> list[str]:
    return ["reindex", "--images", str(images), "--store", str(store), "--index", NAME, "--master", "local[2]",
            "--images-per-task", "8", "--json", *extra]


@pytest.fixture
def catalogue(tmp_path) -> Path:
    root = tmp_path / "marks"
    root.mkdir()
    write_photo_crops(root, PHOTOS[:4], per_photo=4)
    return root


def test_a_join_of_query_images_never_moves_the_catalogue(spark, catalogue, tmp_path, capsys):
    store_dir, queries = tmp_path / "store", tmp_path / "queries"
    queries.mkdir()
    write_photo_crops(queries, PHOTOS[:2], per_photo=2, seed=5)
    rc, first = cli(reindex(catalogue, store_dir), capsys)
    assert rc == 0 and first["status"] == "published", first
    store = Store(str(store_dir))
    [fingerprint] = fingerprints(store)
    catalogue_run = latest_run_id(store, fingerprint)

    rc, joined = cli(["join", "--store", str(store_dir), "--index", NAME, "--query-images", str(queries), "--k", "3",
                      "--master", "local[2]", "--json"], capsys)
    assert rc == 0, joined
    assert joined["counts"]["queries"] == 4 and joined["counts"]["pairs"] == 12
    # The queries were embedded under the join's own run, with the catalogue's model.
    assert joined["queries"]["embeddings"] == f"joins/{joined['run_id']}/queries/{fingerprint}/{joined['run_id']}"
    assert fingerprints(store) == [fingerprint] and latest_run_id(store, fingerprint) == catalogue_run

    # The next build indexes the catalogue, not the queries ...
    rc, built = cli(["build-index", "--store", str(store_dir), "--index", NAME, "--master", "local[2]", "--json"],
                    capsys)
    assert rc == 0 and built["ntotal"] == 16 and built["source"]["run_id"] == catalogue_run, built
    # ... and the next night finds nothing changed: nothing embedded, LATEST where it was.
    rc, night = cli(reindex(catalogue, store_dir), capsys)
    assert rc == 0 and night["status"] == "unchanged", night
    assert (night["images"]["new"], night["images"]["removed"], night["images"]["embedded"]) == (0, 0, 0)
    assert publish.latest_version(store, NAME) == first["latest"]["after"]
