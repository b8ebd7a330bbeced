"""The path a new user walks with the `lookalike` command, on Spark local[2] and a local store: a join that leaves
the catalogue alone, a failed night that recovers the way its message says, and what the command tells the user."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.cli.main import main
from lookalike.core.errors import EXIT_FAILED
from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, broken_images, jpeg_bytes, photo, write_photo_crops
from lookalike.embed.versions import fingerprints, latest_run_id
from lookalike.index import publish

NAME = "marks"


def cli(args: list[str], capsys) -> tuple[int, dict | str]:
    """Run `lookalike ARGS`; its JSON output when it printed JSON, else what it wrote to stderr."""
    rc = main(args)
    out, err = capsys.readouterr()
    try:
        return rc, json.loads(out) if rc == 0 else out + err
    except json.JSONDecodeError:  # text, or JSON lines
        return rc, out + err


def reindex(images: Path, store: Path, *extra: str) -> list[str]:
    return ["reindex", "--images", str(images), "--store", str(store), "--index", NAME, "--master", "local[2]",
            "--images-per-task", "8", "--json", *extra]


@pytest.fixture
def catalogue(tmp_path) -> Path:
    root = tmp_path / "marks"
    root.mkdir()
    write_photo_crops(root, PHOTOS[:4], per_photo=4)
    return root


@pytest.mark.slow
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

    # An id is the image's path relative to the folder, extension included: a bare name is answered with near ids.
    rc, message = cli(["search", "--store", str(store_dir), "--index", NAME, "--id", "Coffee"], capsys)
    assert rc == 2 and "not in index version" in message and "extension included" in message, message
    assert "did you mean 'coffee-0.jpg', 'coffee-1.jpg', 'coffee-2.jpg'?" in message

    # The next build indexes the catalogue, not the queries ...
    rc, built = cli(["build-index", "--store", str(store_dir), "--index", NAME, "--master", "local[2]", "--json"],
                    capsys)
    assert rc == 0 and built["ntotal"] == 16 and built["source"]["run_id"] == catalogue_run, built
    # ... and the next night finds nothing changed: nothing embedded, LATEST where it was.
    rc, night = cli(reindex(catalogue, store_dir), capsys)
    assert rc == 0 and night["status"] == "unchanged", night
    assert (night["images"]["new"], night["images"]["removed"], night["images"]["embedded"]) == (0, 0, 0)
    assert publish.latest_version(store, NAME) == first["latest"]["after"]


@pytest.mark.slow
def test_a_night_failed_by_bad_files_recovers_by_doing_what_its_message_says(spark, catalogue, tmp_path, capsys):
    store_dir = tmp_path / "store"
    broken = broken_images()
    bad = {"zz-bad-0.jpg": broken["truncated.jpg"][0], "zz-bad-1.jpg": b"", "zz-bad-2.jpg": b"not an image"}
    for name, data in bad.items():  # sorted last: all in the last of three tasks
        (catalogue / name).write_bytes(data)
    rc, message = cli(reindex(catalogue, store_dir), capsys)
    assert rc == EXIT_FAILED, message
    assert "3 of 19 images failed (15.8%), above max_error_rate 5.0%" in message
    run_id = re.search(r"then rerun with --run-id (\S+)", message).group(1)
    store = Store(str(store_dir))
    [fingerprint] = fingerprints(store)
    tasks = f"embeddings/{fingerprint}/{run_id}/_tasks"
    committed = {key: store.read_bytes(key) for key in store.list(tasks)}
    assert len(committed) == 3
    # Why they failed, without reading Parquet by hand.
    rc, listed = cli(["errors", "--store", str(store_dir), "--embeddings", f"{fingerprint}/{run_id}", "--json"],
                     capsys)
    rows = [json.loads(line) for line in listed.splitlines()]
    assert rc == 0 and [(r["image_id"], r["error_kind"]) for r in rows] == [
        ("zz-bad-0.jpg", "truncated"), ("zz-bad-1.jpg", "empty"), ("zz-bad-2.jpg", "not_an_image")]

    # Run again unchanged: the same refusal (nothing can have passed), and no word of taking over a lease.
    rc, again = cli(reindex(catalogue, store_dir), capsys)
    assert rc == EXIT_FAILED and f"rerun with --run-id {run_id}" in again and "taking over" not in again, again

    # Fix the inputs (two bad files deleted, one replaced by a good image) and do what the message says.
    (catalogue / "zz-bad-0.jpg").unlink()
    (catalogue / "zz-bad-1.jpg").unlink()
    (catalogue / "zz-bad-2.jpg").write_bytes(jpeg_bytes(photo("coins", 200)))
    rc, night = cli(reindex(catalogue, store_dir, "--run-id", run_id), capsys)
    assert rc == 0 and night["status"] == "published", night
    assert night["run_id"] == run_id and night["images"]["failed"] == 0
    assert (night["images"]["listed"], night["images"]["indexed"]) == (17, 17)
    # Only the task that held the bad files ran again; the others' results were kept as they were.
    after = {key: store.read_bytes(key) for key in store.list(tasks)}
    assert [k for k in after if after[k] != committed[k]] == [f"{tasks}/task-00002.json"]
    ids = store.read_parquet(f"indexes/{NAME}/{night['latest']['after']}/ids.parquet", ["image_id"])
    assert "zz-bad-2.jpg" in ids["image_id"].to_pylist() and "zz-bad-0.jpg" not in ids["image_id"].to_pylist()


def test_the_jvm_s_output_is_quiet_unless_verbose_and_always_in_the_log_s_format(capsys):
    from lookalike.core.jvm_output import forward
    from lookalike.core.logs import configure
    jvm = (b"WARNING: Using incubator modules: jdk.incubator.vector\n"
           b"Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties\n"
           b"26/12/07 01:10:18 ERROR Executor: Exception in task 0.0\n"
           b'{"time": "2026-12-07T01:10:19", "level": "WARNING", "logger": "lookalike.embed.task", "message": "x"}\n'
           b"Traceback (most recent call last):\n")
    for verbose in (False, True):
        configure(verbose, "json", "off")
        forward(io.BytesIO(jvm), verbose)
        records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(r["logger"], r["level"]) for r in records] == [
            *([("spark.jvm", "INFO"), ("spark.jvm", "INFO")] if verbose else []),
            ("spark.Executor", "ERROR"), ("lookalike.embed.task", "WARNING"), ("spark.jvm", "WARNING")]
    configure(False, "text")  # as the command leaves it for the tests that follow


@pytest.mark.slow
def test_a_json_log_shows_each_long_step_with_its_figures_and_the_summary_once(catalogue, tmp_path):
    args = ["--log-format", "json", "--progress", "log", "--progress-interval", "0.5", "-v",
            *reindex(catalogue, tmp_path / "store")]
    done = subprocess.run([sys.executable, "-m", "lookalike.cli.main", *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "published"
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # one format on the stream: every line is a JSON object
    steps = {}
    for r in records:
        if "progress" in r:
            steps.setdefault(r["progress"]["stage"], []).append(r["progress"])
    embed = steps["embed"]
    assert [p["state"] for p in (embed[0], embed[-1])] == ["started", "done"]
    assert (embed[-1]["done"], embed[-1]["total"], embed[-1]["unit"]) == (16, 16, "images")
    assert embed[-1]["rate_per_s"] > 0 and embed[-1]["elapsed_s"] > 0
    # Steps shorter than the interval (the index's, at this size) leave no line: a small night's log stays short.
    assert all(p["elapsed_s"] >= 0.4 for lines_ in steps.values() for p in lines_ if p["state"] != "done")
    assert all(r["run_id"] for r in records if "progress" in r)  # the night's lines carry its id
    # With -v the JVM's start-up lines are shown, as JSON records of the `spark` loggers like every other line.
    assert any(r["logger"].startswith("spark.") for r in records)
    # -v says what each step does, and the summary once: on stdout, not again in the log.
    assert not any("PUBLISHED in" in r["message"] for r in records)
    assert any(r["logger"] == "lookalike.pipelines.reindex" and "published" in r["message"] for r in records)
