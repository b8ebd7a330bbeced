"""The shipped cluster settings against the memory their tasks need (deploy/memory_plan.py, the arithmetic of
deploy/SCALING.md): no Python worker capped below what torch maps, every pod's limit above what runs in it,
and the embed job run with each shipped executor's Python and batch settings."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import imagefactory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy"))
import memory_plan  # noqa: E402

LOOKALIKE = Path(sys.executable).parent / "lookalike"


def test_every_shipped_pod_has_the_memory_its_processes_need():
    pods = memory_plan.shipped_pods()
    assert {(p.source, p.role) for p in pods} >= {("reindex.yaml", "executor"), ("reindex.yaml", "driver"),
                                                  ("kubernetes.conf", "executor"), ("kubernetes.conf", "driver"),
                                                  ("standalone.conf", "executor")}
    assert [problem for pod in pods for problem in pod.problems()] == []
    # The check catches what shipped before: a Python worker capped at 32g / 8 cores, a 24g driver heap with
    # nothing for the driver's Python.
    [executor, driver] = memory_plan.operator_pods(REPO / "deploy" / "k8s" / "reindex.yaml")
    capped = dataclasses.replace(executor, pyspark_mib=32 << 10, overhead_mib=4 << 10)
    assert any("address space at 4096 MiB" in p for p in capped.problems())
    heavy = dataclasses.replace(driver, heap_mib=24 << 10, overhead_mib=2458)
    assert any("driver pod gets" in p for p in heavy.problems())


def test_scaling_md_shows_the_plan_of_the_shipped_files():
    text = (REPO / "deploy" / "SCALING.md").read_text()
    assert memory_plan.table() in text, "deploy/SCALING.md: paste the output of `python deploy/memory_plan.py`"
    assert f"{memory_plan.CATALOGUE_IMAGES:,}" in text
    for shipped in ("k8s/reindex.yaml", "conf/kubernetes.conf"):
        assert "10M images" in (REPO / "deploy" / shipped).read_text(), shipped


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    imagefactory.write_photo_crops(root, per_photo=17)  # 136 images: a full batch of 128 and more
    return root


def embed(catalogue: Path, store: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOOKALIKE), "embed", "--images", str(catalogue), "--store", str(store), *args],
                          capture_output=True, text=True, timeout=600)


def test_the_embed_job_runs_with_each_shipped_executor_s_python_and_batch_settings(catalogue, tmp_path):
    seen = set()
    for pod in memory_plan.shipped_pods():
        args = memory_plan.local_embed_args(pod)
        if pod.role != "executor" or tuple(args) in seen:
            continue
        seen.add(tuple(args))
        done = embed(catalogue, tmp_path / f"store-{len(seen)}", args)
        assert done.returncode == 0, (pod.source, args, done.stderr[-3000:])
        assert "136 rows (136 embedded" in done.stdout, (pod.source, done.stdout)
    # What the operator manifest shipped before: 32g over 8 cores caps each worker at 4 GiB, and it dies.
    [executor, _] = memory_plan.operator_pods(REPO / "deploy" / "k8s" / "reindex.yaml")
    capped = embed(catalogue, tmp_path / "store-capped",
                   memory_plan.local_embed_args(dataclasses.replace(executor, pyspark_mib=32 << 10)))
    assert capped.returncode != 0, capped.stdout
    assert re.search(r"MemoryError|Cannot allocate memory|failed to map segment", capped.stderr), capped.stderr[-2000:]
