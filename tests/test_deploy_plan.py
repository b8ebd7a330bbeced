"""The shipped cluster settings against the memory their tasks need (deploy/pod_plan.py, the arithmetic of
deploy/SCALING.md): no Python worker capped below what torch maps, every pod's limit above what runs in it,
and the embed job run with each shipped executor's Python and batch settings."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.dev import imagefactory
from lookalike.model.cards import whitening_helps
from lookalike.model.loading import load_model
from lookalike.model.spec import DEFAULT_WHITEN_DIM, ModelSpec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy"))
import pod_plan  # noqa: E402

LOOKALIKE = Path(sys.executable).parent / "lookalike"


def test_every_shipped_pod_has_the_memory_its_processes_need():
    pods = pod_plan.shipped_pods()
    assert {(p.source, p.role) for p in pods} >= {("reindex.yaml", "executor"), ("reindex.yaml", "driver"),
                                                  ("kubernetes.conf", "executor"), ("kubernetes.conf", "driver"),
                                                  ("standalone.conf", "executor")}
    assert [problem for pod in pods for problem in pod.problems()] == []
    # The check catches what shipped before: a Python worker capped at 32g / 8 cores, a 24g driver heap with
    # nothing for the driver's Python.
    [executor, driver] = pod_plan.operator_pods(REPO / "deploy" / "k8s" / "reindex.yaml")
    capped = dataclasses.replace(executor, pyspark_mib=32 << 10, overhead_mib=4 << 10)
    assert any("address space at 4096 MiB" in p for p in capped.problems())
    heavy = dataclasses.replace(driver, heap_mib=24 << 10, overhead_mib=2458)
    assert any("driver pod gets" in p for p in heavy.problems())


def test_every_shipped_volume_is_where_its_process_writes_and_holds_what_it_writes():
    disks = pod_plan.shipped_disks()
    assert {(d.source, d.what) for d in disks} == {("reindex.yaml", "build driver's scratch"),
                                                    ("query-worker.yaml", "query worker's version cache")}
    assert [problem for disk in disks for problem in disk.problems()] == []
    # The check catches what shipped before: the build in the container's /tmp, and the worker's two versions
    # (350 GiB at 10M logos) on a 100 GiB cache volume; and a cache dir that no volume holds.
    build, serve = disks
    assert dataclasses.replace(build, request_bytes=0, path="", used_at="/tmp").problems()
    assert dataclasses.replace(serve, request_bytes=100 << 30).problems()
    assert dataclasses.replace(serve, path="/tmp", used_at="/var/cache/lookalike").problems()


def test_the_plan_sizes_the_vectors_the_default_reindex_writes():
    """The shipped model's card decides whether the nightly whitens (to DEFAULT_WHITEN_DIM) or indexes its raw
    descriptors: the volumes and memory of the plan are sized for that."""
    helps, measured = whitening_helps(ModelSpec())
    assert measured is not None, "the shipped model's card must say whether whitening helps it"
    assert (DEFAULT_WHITEN_DIM if helps else load_model(ModelSpec()).dim) == pod_plan.VECTOR_DIM


def test_scaling_md_shows_the_plan_of_the_shipped_files():
    text = (REPO / "deploy" / "SCALING.md").read_text()
    assert pod_plan.table() in text, "deploy/SCALING.md: paste the output of `python deploy/pod_plan.py`"
    assert pod_plan.disk_table() in text, "deploy/SCALING.md: paste the output of `python deploy/pod_plan.py`"
    assert f"{pod_plan.CATALOGUE_IMAGES:,}" in text
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


@pytest.mark.slow
def test_the_embed_job_runs_with_each_shipped_executor_s_python_and_batch_settings(catalogue, tmp_path):
    seen = set()
    for pod in pod_plan.shipped_pods():
        args = pod_plan.local_embed_args(pod)
        if pod.role != "executor" or tuple(args) in seen:
            continue
        seen.add(tuple(args))
        done = embed(catalogue, tmp_path / f"store-{len(seen)}", args)
        assert done.returncode == 0, (pod.source, args, done.stderr[-3000:])
        assert "136 rows (136 embedded" in done.stdout, (pod.source, done.stdout)
    # What the operator manifest shipped before: 32g over 8 cores caps each worker at 4 GiB, and it dies.
    [executor, _] = pod_plan.operator_pods(REPO / "deploy" / "k8s" / "reindex.yaml")
    capped = embed(catalogue, tmp_path / "store-capped",
                   pod_plan.local_embed_args(dataclasses.replace(executor, pyspark_mib=32 << 10)))
    assert capped.returncode == 2, capped.stderr[-2000:]  # a setting to fix, said in one line, not a traceback
    assert re.search(r"a Python worker ran out of memory \((MemoryError|Cannot allocate memory|can't allocate "
                     r"memory|failed to map segment)\)\. If spark.executor.pyspark.memory is set, unset it",
                     capped.stderr), capped.stderr[-2000:]


def test_the_build_writes_its_local_files_where_it_is_told_and_checks_their_room_first(tmp_path, monkeypatch):
    from lookalike.core.errors import ConfigError
    from lookalike.core.scratch import scratch, scratch_root
    from lookalike.core.spark import IN_PROCESS
    from lookalike.core.store import Store
    from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
    from lookalike.index import build as index_build

    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(300, 16, seed=1), parts=2)
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")

    def build(**options):
        return index_build.run(index_build.BuildIndexConfig(store=store.url, name="t", master=IN_PROCESS,
                                                            queries=20, **options))

    # Which folder: --scratch-dir, then $LOOKALIKE_SCRATCH_DIR, then Spark's local dirs, then the temp folder.
    monkeypatch.setenv("SPARK_LOCAL_DIRS", f"{not_a_folder},/elsewhere")
    with pytest.raises(ConfigError, match="from SPARK_LOCAL_DIRS"):
        build()
    monkeypatch.setenv("LOOKALIKE_SCRATCH_DIR", str(not_a_folder))
    with pytest.raises(ConfigError, match="from LOOKALIKE_SCRATCH_DIR"):
        build()
    with pytest.raises(ConfigError, match="from --scratch-dir"):
        build(scratch_dir=str(not_a_folder / "x"))
    given = tmp_path / "scratch"
    given.mkdir()
    assert build(scratch_dir=str(given))["ntotal"] == 300
    assert scratch_root(str(given)) == str(given) and list(given.iterdir()) == []  # removed afterwards
    with scratch("probe-", str(given)) as folder:
        assert Path(folder).parent == given
    with pytest.raises(ConfigError, match=r"needs about .* GiB of local scratch space and .* free"), \
            scratch("probe-", str(given), needs_bytes=1 << 60):
        pass


def three_versions(tmp_path):
    from lookalike.core.spark import IN_PROCESS
    from lookalike.core.store import Store
    from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
    from lookalike.index import build as index_build

    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(4000, 64, seed=2), parts=1)
    versions = [index_build.run(index_build.BuildIndexConfig(store=store.url, name="t", master=IN_PROCESS,
                                                             queries=10, publish=True, seed=i))
                for i in range(3)]
    return store, versions


def swap_to_a_damaged_third(store, versions, cache: Path):
    """Serve the first version, swap to the second, then try a third whose vectors are damaged in the store."""
    from lookalike.serve.worker import ServedIndex, WorkerSettings

    served = ServedIndex(store, WorkerSettings("t", str(cache)))
    served.start(watch=False, version=versions[0]["version"])
    served._load(versions[1]["version"])
    damaged = next(f for f in versions[2]["files"] if f["key"].endswith(".npy"))
    store.write_bytes(damaged["key"], b"not the file the manifest names")
    with pytest.raises(Exception, match="sha256|size|bytes|damaged"):
        served._load(versions[2]["version"])
    assert served.current.version == versions[1]["version"]
    return sorted(p.name for p in (cache / "t").iterdir() if p.is_dir())


@pytest.fixture
def small_disk(tmp_path):
    """A cache folder on a file system of its own, sized in the test (tmpfs: needs root)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()

    def mount(size_bytes: int) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        return folder
    yield mount
    # Lazily: the test's index is still mapped from it; the kernel frees it once nothing holds it.
    subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)


def test_a_query_worker_drops_its_older_predecessor_only_when_the_disk_needs_the_room(tmp_path, small_disk):
    """With room, a failed swap leaves the predecessor cached (a rollback to it is instant); on a disk sized for
    two versions (deploy/SCALING.md) the predecessor goes before the download, so the swap never needs three."""
    store, versions = three_versions(tmp_path)
    v1 = versions[0]["version"]
    assert v1 in swap_to_a_damaged_third(store, versions, tmp_path / "roomy")
    from lookalike.index.footprint import cached_bytes
    version_bytes = max(cached_bytes(v["files"]) for v in versions)
    tight = small_disk(int(2.5 * version_bytes))  # two versions and half of one, not three
    assert v1 not in swap_to_a_damaged_third(store, versions, tight)
