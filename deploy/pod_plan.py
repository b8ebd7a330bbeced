"""The memory of every process the shipped cluster settings start, and the disks they write to, by the arithmetic
of deploy/SCALING.md ("Memory per pod", "Disk per pod"), for the catalogue size they are written for.

    python deploy/pod_plan.py          # the tables SCALING.md shows

`tests/test_deploy_plan.py` checks each shipped file against it (and that SCALING.md shows this table), so a
setting that would starve or kill its own tasks fails the tests, not a night.

Where the Python workers' memory belongs: `spark.executor.pyspark.memory` does not reserve memory, it caps each
Python worker's *address space* (RLIMIT_AS, the setting divided by the executor's cores), and torch reserves far
more address space than it touches (bench/pod_memory.py: 6.5 GiB of address space for 1.4 GiB resident at batch
8): a cap near the resident size kills the task (`DefaultCPUAllocator: can't allocate memory`, or torch's own
libraries fail to map). So the shipped settings leave it unset and give the Python workers'
memory to `spark.executor.memoryOverhead`, which is what Kubernetes adds to the pod's request and limit (and YARN to
the container's). The same holds on the driver, whose Python process plans the embed job, merges the index and
runs the recall sweep: a small JVM heap (`spark.driver.memory`) and a large `spark.driver.memoryOverhead`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY.parent / "lib"))

from lookalike.index.choice import choose_index  # noqa: E402  (the index the build would choose, no faiss)
from lookalike.index.footprint import FEATURES_BYTES_PER_LOGO, VersionFootprint  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30
CATALOGUE_IMAGES = 10_000_000   # what the shipped settings are sized for (the manifests say so too)
VECTOR_DIM = 1280  # the shipped model's vectors, indexed raw: its card measured that whitening does not help it

# Measured: `python bench/pod_memory.py` (600 logos, RootSIFT on, 8 IO threads, 1 torch thread, CPU, 2-core dev
# machine): a Python worker's peak resident memory (VmHWM) and peak address space (VmPeak) by batch size. On a
# CPU the batch's activations are in the worker's memory; on a GPU they are on the device, so these are upper
# bounds there.
WORKER_RSS_MIB = {8: 1399, 64: 3729, 128: 6391}
WORKER_ADDRESS_SPACE_MIB = {8: 6521, 64: 8809, 128: 11221}
CPU_BATCH, GPU_BATCH = 8, 64    # the engine's defaults (lookalike.embed.engine)
# Planning figure, not measured (no GPU here): host memory of one process's CUDA context with torch's CUDA
# libraries loaded. Measure with bench/pod_memory.py on a GPU node and replace.
CUDA_CONTEXT_MIB = 1024
# The driver's Python, measured (deploy/SCALING.md, "The build driver at 10M"; bench/plan_memory.py): the embed
# plan holds the catalogue table and its keys (126 + 90 B an image); the build, the index and 60 B an image of
# keys (the mapped vectors files are page cache, which the kernel reclaims); plus the interpreter with torch,
# faiss and Arrow loaded.
DRIVER_PLAN_BYTES_PER_IMAGE = 126 + 90
DRIVER_BUILD_BYTES_PER_IMAGE = 60
DRIVER_BASE_MIB = 2048
MARGIN = 1.15                   # headroom over the sum: allocator fragmentation, bursts of large images


def jvm_native_mib(heap_mib: int) -> int:
    """The JVM's own memory beside its heap (metaspace, threads, buffers): Spark's default overhead formula."""
    return max(384, math.ceil(0.10 * heap_mib))


@dataclass(frozen=True)
class Pod:
    """What one shipped file asks for one executor (or the driver), and what runs in it."""
    source: str
    role: str                 # "executor" or "driver"
    heap_mib: int
    overhead_mib: int | None  # None: the cluster manager adds nothing (standalone: the node's memory)
    pyspark_mib: int | None   # spark.executor.pyspark.memory, if set
    cores: int
    task_cpus: int
    gpu: bool
    gpu_tasks: int | None     # tasks the executor's GPU admits (amount / task amount), None without GPUs
    batch_size: int
    index_budget: int = 4 * GiB  # the build's --memory-budget: the largest index the driver may hold
    io_threads: int = 2          # the embed job's (lookalike embed --io-threads)
    images_per_task: int = 500

    @property
    def tasks(self) -> int:
        by_cpu = max(1, self.cores // self.task_cpus)
        return min(by_cpu, self.gpu_tasks) if self.gpu_tasks else by_cpu

    @property
    def limit_mib(self) -> int | None:
        """The pod's memory request and limit (heap + overhead + pyspark memory), None where nothing limits it."""
        if self.overhead_mib is None:
            return None
        return self.heap_mib + self.overhead_mib + (self.pyspark_mib or 0)

    def need_mib(self, catalogue_images: int = CATALOGUE_IMAGES) -> dict[str, int]:
        parts = {"JVM heap": self.heap_mib, "JVM native": jvm_native_mib(self.heap_mib)}
        if self.role == "executor":
            rss, n = worker_rss(self.batch_size), self.tasks
            parts[f"Python workers ({n} × {rss:,} MiB at batch {self.batch_size})"] = n * rss
            if self.gpu:
                parts[f"CUDA contexts ({n} × {CUDA_CONTEXT_MIB:,} MiB, planning)"] = n * CUDA_CONTEXT_MIB
        else:
            index = choose_index(catalogue_images, VECTOR_DIM, self.index_budget).bytes_per_vector * catalogue_images
            parts["driver Python (interpreter, plan, index, keys)"] = DRIVER_BASE_MIB + math.ceil(
                (catalogue_images * (DRIVER_PLAN_BYTES_PER_IMAGE + DRIVER_BUILD_BYTES_PER_IMAGE) + index) / MiB)
        return parts

    def problems(self, catalogue_images: int = CATALOGUE_IMAGES) -> list[str]:
        found = []
        if self.pyspark_mib is not None:
            cap = self.pyspark_mib // max(1, self.cores)
            found.append(f"{self.source}: spark.executor.pyspark.memory caps each Python worker's address space at "
                         f"{cap} MiB, and torch needs {worker_address_space(self.batch_size)} MiB at batch "
                         f"{self.batch_size}: leave it unset and give the memory to spark.executor.memoryOverhead")
        need = math.ceil(sum(self.need_mib(catalogue_images).values()) * MARGIN)
        if self.limit_mib is not None and self.limit_mib < need:
            found.append(f"{self.source}: the {self.role} pod gets {self.limit_mib} MiB (heap + overhead) but needs "
                         f"{need} MiB ({self.describe(catalogue_images)})")
        elif self.limit_mib is not None and self.heap_mib > max(4096, need // 4):
            found.append(f"{self.source}: the {self.role}'s JVM heap of {self.heap_mib} MiB is memory its Python "
                         "cannot use; keep the heap small and give the rest to the memory overhead")
        return found

    def describe(self, catalogue_images: int = CATALOGUE_IMAGES) -> str:
        return " + ".join(f"{v:,} {k}" for k, v in self.need_mib(catalogue_images).items())


def worker_rss(batch: int) -> int:
    return _at_batch(WORKER_RSS_MIB, batch)


def worker_address_space(batch: int) -> int:
    return _at_batch(WORKER_ADDRESS_SPACE_MIB, batch)


def _at_batch(measured: dict[int, int], batch: int) -> int:
    """Linear between the measured batch sizes, and beyond the largest at its slope."""
    sizes = sorted(measured)
    lo = max([s for s in sizes if s <= batch] or sizes[:1])
    hi = min([s for s in sizes if s > lo] or sizes[-1:])
    if lo == hi:
        lo, hi = sizes[-2], sizes[-1]
    slope = (measured[hi] - measured[lo]) / (hi - lo)
    return math.ceil(measured[lo] + slope * (batch - lo))


def parse_size_mib(text: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    text = str(text).strip().lower().rstrip("bi")
    return math.ceil(float(text[:-1]) * units[text[-1]]) if text[-1] in units else math.ceil(int(text) / MiB)


def job_argument(arguments: list[str], flag: str) -> str | None:
    return arguments[arguments.index(flag) + 1] if flag in arguments else None


def operator_pods(path: Path) -> list[Pod]:
    """The executor and driver of a Spark operator manifest (deploy/k8s/*.yaml)."""
    [doc] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    app = doc["spec"].get("template", doc["spec"])
    conf, arguments = app.get("sparkConf", {}), [str(a) for a in app.get("arguments", [])]
    executor, driver = app["executor"], app["driver"]
    gpu = "gpu" in executor
    task_gpu = float(conf.get("spark.task.resource.gpu.amount", 0) or 0)
    batch = int(job_argument(arguments, "--batch-size") or (GPU_BATCH if gpu else CPU_BATCH))
    pyspark = conf.get("spark.executor.pyspark.memory")
    budget = parse_size_mib(job_argument(arguments, "--memory-budget") or "4g") * MiB
    io_threads = int(job_argument(arguments, "--io-threads") or 2)
    per_task = int(job_argument(arguments, "--images-per-task") or 500)
    return [
        Pod(path.name, "executor", parse_size_mib(executor["memory"]), parse_size_mib(executor["memoryOverhead"]),
            parse_size_mib(pyspark) if pyspark else None, int(executor["cores"]),
            int(conf.get("spark.task.cpus", 1)), gpu, int(1 / task_gpu) if task_gpu else None, batch, budget,
            io_threads, per_task),
        Pod(path.name, "driver", parse_size_mib(driver["memory"]), parse_size_mib(driver["memoryOverhead"])
            if "memoryOverhead" in driver else jvm_native_mib(parse_size_mib(driver["memory"])), None,
            int(driver["cores"]), 1, False, None, batch, budget),
    ]


def read_conf(path: Path) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in path.read_text().splitlines() if line.strip() and
             not line.lstrip().startswith("#"))
    return {key: value.strip() for key, value in pairs}


def conf_pods(path: Path) -> list[Pod]:
    """The executor (and the driver, when the file sizes it) of a properties file (deploy/conf/*.conf)."""
    conf = read_conf(path)
    gpu = "spark.executor.resource.gpu.amount" in conf
    task_gpu = float(conf.get("spark.task.resource.gpu.amount", 0) or 0)
    overhead = conf.get("spark.executor.memoryOverhead")
    kubernetes = "spark.kubernetes.container.image" in conf
    pyspark = conf.get("spark.executor.pyspark.memory")
    pods = [Pod(path.name, "executor", parse_size_mib(conf.get("spark.executor.memory", "1g")),
                parse_size_mib(overhead) if overhead else (jvm_native_mib(1024) if kubernetes else None),
                parse_size_mib(pyspark) if pyspark else None, int(conf.get("spark.executor.cores", 1)),
                int(conf.get("spark.task.cpus", 1)), gpu, int(1 / task_gpu) if task_gpu else None,
                GPU_BATCH if gpu else CPU_BATCH)]
    if kubernetes:
        heap = parse_size_mib(conf.get("spark.driver.memory", "1g"))
        overhead = conf.get("spark.driver.memoryOverhead")
        pods.append(Pod(path.name, "driver", heap, parse_size_mib(overhead) if overhead else jvm_native_mib(heap),
                        None, int(conf.get("spark.driver.cores", 1)), 1, False, None, CPU_BATCH))
    return pods


def shipped_pods() -> list[Pod]:
    return [*operator_pods(DEPLOY / "k8s" / "reindex.yaml"), *conf_pods(DEPLOY / "conf" / "kubernetes.conf"),
            *conf_pods(DEPLOY / "conf" / "standalone.conf")]


PLAN_SPILL_BYTES_PER_IMAGE = 100  # the embed plan's spill files on the driver (bench/plan_memory.py)


def version_footprint(catalogue_images: int = CATALOGUE_IMAGES, budget: int = 4 * GiB) -> VersionFootprint:
    """An index version's files at this catalogue size: the default index within `budget`, 512-d re-scoring
    vectors, and RootSIFT keypoints at the logos' average (photos at the 256-keypoint cap take ~4× that)."""
    bytes_per_vector = choose_index(catalogue_images, VECTOR_DIM, budget).bytes_per_vector
    return VersionFootprint.of(catalogue_images, VECTOR_DIM, bytes_per_vector,
                               catalogue_images * FEATURES_BYTES_PER_LOGO)


@dataclass(frozen=True)
class Disk:
    """A volume a shipped manifest gives a process, and what the process writes to it."""
    source: str
    what: str
    request_bytes: int      # the volume's storage request (0: none, the container's writable layer)
    need_bytes: int         # by the formula, before headroom
    path: str               # where it is mounted
    used_at: str            # where the process writes (its cache or scratch folder)

    def problems(self) -> list[str]:
        found = []
        if not self.path or not self.used_at.startswith(self.path.rstrip("/") + "/") and self.used_at != self.path:
            found.append(f"{self.source}: the {self.what} goes to {self.used_at}, which no sized volume holds "
                         f"(volume at {self.path or 'nowhere'})")
        if self.request_bytes < self.need_bytes * MARGIN:
            found.append(f"{self.source}: the {self.what} volume requests {self.request_bytes / GiB:.0f} GiB and needs "
                         f"{self.need_bytes * MARGIN / GiB:.0f} GiB ({self.need_bytes / GiB:.0f} GiB + 15%)")
        return found


def storage_bytes(volume: dict) -> int:
    if "ephemeral" in volume:
        request = volume["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
    elif "emptyDir" in volume:
        request = volume["emptyDir"].get("sizeLimit", "0Gi")
    else:
        return 0
    return parse_size_mib(request) * MiB


def _mount(container: dict, volumes: dict[str, dict], prefix: str = "") -> tuple[str, int]:
    """The mount path and size of the container's first volume whose name starts with `prefix`."""
    for mount in container.get("volumeMounts", []):
        if mount["name"].startswith(prefix) and mount["name"] in volumes:
            return mount["mountPath"], storage_bytes(volumes[mount["name"]])
    return "", 0


def image_env(name: str) -> str | None:
    """A variable deploy/Dockerfile sets in the image (`ENV NAME=value`)."""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith(f"ENV {name}="):
            return line.split("=", 1)[1].strip()
    return None


def _env(container: dict, name: str) -> str | None:
    return next((e["value"] for e in container.get("env", []) if e["name"] == name), None)


def shipped_disks() -> list[Disk]:
    [reindex] = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "reindex.yaml").read_text()) if d]
    app = reindex["spec"]["template"]
    arguments = [str(a) for a in app.get("arguments", [])]
    budget = parse_size_mib(job_argument(arguments, "--memory-budget") or "4g") * MiB
    footprint = version_footprint(budget=budget)
    volumes = {v["name"]: v for v in app.get("volumes", [])}
    path, size = _mount(app["driver"], volumes)
    scratch = _env(app["driver"], "LOOKALIKE_SCRATCH_DIR") or "/tmp"
    build = Disk("reindex.yaml", "build driver's scratch", size,
                 footprint.build_scratch + CATALOGUE_IMAGES * PLAN_SPILL_BYTES_PER_IMAGE, path, scratch)

    worker = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "query-worker.yaml").read_text())
                  if d and d["kind"] == "Deployment")
    pod = worker["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = [str(c) for c in container["command"]]
    cache = job_argument(command, "--cache-dir") or _env(container, "LOOKALIKE_CACHE_DIR") or \
        image_env("LOOKALIKE_CACHE_DIR") or f"{_env(container, 'HOME') or '/root'}/.cache/lookalike"
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    mount = max((m for m in mounts if cache == m or cache.startswith(m.rstrip("/") + "/")), key=len, default="")
    volume = {v["name"]: v for v in pod["volumes"]}.get(mounts.get(mount, ""), {})
    serve = Disk("query-worker.yaml", "query worker's version cache", storage_bytes(volume), footprint.worker_cache,
                 mount, cache)
    return [build, serve]


def disk_table() -> str:
    f = version_footprint()
    rows = ["| file | volume | holds | needs | × 1.15 | requested |", "| --- | --- | --- | --- | --- | --- |"]
    holds = {"build driver's scratch": "one version's files + the exact scorer + the embed plan's spill",
             "query worker's version cache": "two versions (files + exact scorer): the served one and the one "
                                             "replacing it"}
    for disk in shipped_disks():
        rows.append(f"| `{disk.source}` | {disk.what} at `{disk.path}` | {holds[disk.what]} | "
                    f"{disk.need_bytes / GiB:,.0f} GiB | {disk.need_bytes * MARGIN / GiB:,.0f} GiB | "
                    f"{disk.request_bytes / GiB:,.0f} GiB |")
    rows.append("")
    rows.append(f"One version at {CATALOGUE_IMAGES:,} images: index {f.index / GiB:.1f} GiB, re-scoring vectors "
                f"{f.vectors / GiB:.1f} GiB, ids {f.ids / GiB:.1f} GiB, keypoints {f.features / GiB:.1f} GiB "
                f"({FEATURES_BYTES_PER_LOGO:,} B a logo): {f.files / GiB:.1f} GiB.")
    return "\n".join(rows)


def table() -> str:
    rows = ["| file | process | tasks | batch | needs (MiB) | × 1.15 | heap + overhead (MiB) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for pod in shipped_pods():
        need = sum(pod.need_mib().values())
        limit = "not limited (standalone: the node's memory)" if pod.limit_mib is None else f"{pod.limit_mib:,}"
        tasks = pod.tasks if pod.role == "executor" else "-"
        rows.append(f"| `{pod.source}` | {pod.role} | {tasks} | {pod.batch_size if pod.role == 'executor' else '-'} | "
                    f"{need:,}: {pod.describe()} | {math.ceil(need * MARGIN):,} | {limit} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    print()
    print(disk_table())
    for problem in [p for pod in shipped_pods() for p in pod.problems()] + [p for d in shipped_disks()
                                                                           for p in d.problems()]:
        print("PROBLEM:", problem)


def local_embed_args(pod: Pod) -> list[str]:
    """`lookalike embed` arguments that run a shipped executor's Python and batch settings on a local master:
    its tasks' CPUs, its batch size and IO threads, and the address-space cap each of its Python workers would
    get (on a local master Spark divides spark.executor.pyspark.memory by spark.executor.cores, 1 there)."""
    conf = {"spark.task.cpus": str(pod.task_cpus)}
    if pod.pyspark_mib is not None:
        conf["spark.executor.pyspark.memory"] = f"{pod.pyspark_mib // max(1, pod.cores)}m"
    args = ["--master", f"local[{pod.task_cpus}]", "--batch-size", str(pod.batch_size),
            "--io-threads", str(pod.io_threads), "--images-per-task", str(pod.images_per_task)]
    return args + [a for key, value in conf.items() for a in ("--spark-conf", f"{key}={value}")]
