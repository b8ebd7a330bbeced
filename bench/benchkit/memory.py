"""Memory as the benches measure it: a process's peak resident set, sampled on a thread, and its anonymous part."""

from __future__ import annotations

import os
import threading
import time


class RssSampler:
    """Peak resident memory of this process (the Spark driver) while a block runs, sampled every 50 ms:
    ru_maxrss would also count the data generation before it."""

    def __init__(self):
        self.peak = 0
        self.peak_anon = 0  # without mapped files, which the page cache can drop: what must fit in memory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        self.peak = max(self.peak, current_rss())
        self.peak_anon = max(self.peak_anon, anonymous_rss())

    def _run(self):
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_gib(self) -> float:
        return self.peak / 2**30


def anonymous_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one_run(table: str, fold: bool, batch: int, threads: int, io_threads: int = 2) -> dict:
    """One engine run over the table's images in this process: img/s, peak RSS (VmHWM) and peak address space
    (VmPeak, what an RLIMIT_AS caps)."""
    import pyarrow.parquet as pq
    import torch

    from lookalike.embed.engine import EmbeddingEngine
    from lookalike.image.feature_spec import FeatureSettings
    from lookalike.model.loading import load_model
    from lookalike.model.spec import ModelSpec

    torch.set_num_threads(threads)
    uris = pq.read_table(table)["uri"].to_pylist()
    engine = EmbeddingEngine(load_model(ModelSpec(), "cpu", fold_norms=fold), batch_size=batch,
                             io_threads=io_threads, local_features=FeatureSettings())
    t0 = time.perf_counter()
    done = sum(1 for _ in engine.run(uris))
    elapsed = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        status = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmHWM", "VmPeak"))}
    return {"images": done, "images_per_s": done / elapsed, "peak_rss_mb": status["VmHWM"] // 1024,
            "peak_address_space_mb": status["VmPeak"] // 1024}
