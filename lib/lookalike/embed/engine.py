"""The embedding engine: image URIs in, unit vectors or error records out. Runs with or without Spark."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import time
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lookalike.core.progress import tick
from lookalike.image.colour import colour_histogram
from lookalike.image.decode import ImageError, decode, to_tensor
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from lookalike.image.local_features import LocalFeatures, extract
from lookalike.image.read import read_image_bytes
from lookalike.model.loading import LoadedModel

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


@functools.lru_cache(maxsize=1)
def retain_freed_memory() -> bool:
    """Keep freed memory in the process heap instead of handing it back to the OS (glibc only).

    A forward pass allocates tens of MB of activations per batch. By default glibc serves blocks that size
    with fresh mmaps and unmaps them on free, so every batch pays page faults and page zeroing. Measured on
    this 2-core machine, 2,000 logos through EfficientNet-Lite0: 43.6 img/s before, 75.0 img/s after. The
    price is that the worker's RSS stays at its peak, which an embedding worker reaches on its first batch.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False  # not glibc: nothing to tune


CPU_BATCH, GPU_BATCH = 8, 64


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass. On a CPU a batch's activations live in the worker's own memory, and a small batch
    already keeps a core busy: a larger one raises the worker's peak memory for the same images per second
    (bench/embed_memory.py). On a GPU activations are on the device and larger batches pay."""
    return GPU_BATCH if device.type == "cuda" else CPU_BATCH


@dataclass(frozen=True)
class Embedded:
    index: int
    content_sha256: str
    width: int
    height: int
    vector: np.ndarray  # float32, unit length
    features: LocalFeatures | None = None  # with EmbeddingEngine.local_features
    colours: bytes | None = None  # the image's colour histogram (image/colour.py)


@dataclass(frozen=True)
class Known:
    """The bytes hash to content embedded in an earlier version: nothing to compute."""
    index: int
    content_sha256: str


@dataclass(frozen=True)
class Failed:
    index: int
    stage: str
    kind: str
    message: str


Result = Embedded | Known | Failed


@dataclass
class EngineStats:
    images: int = 0
    embedded: int = 0
    known: int = 0
    failed: int = 0
    hashed: int = 0         # images read whole and hashed (every image but those that failed to be read)
    bytes_read: int = 0
    read_s: float = 0.0     # summed over IO threads
    decode_s: float = 0.0   # summed over IO threads (decode + resize + normalise)
    model_s: float = 0.0    # forward passes, wall time
    wall_s: float = 0.0

    def add(self, other: EngineStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        d = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}
        d["images_per_s"] = round(self.images / self.wall_s, 2) if self.wall_s else None
        return d


@dataclass(frozen=True)
class _Prepared:
    index: int
    content_sha256: str
    width: int
    height: int
    tensor: torch.Tensor
    features: LocalFeatures | None
    colours: bytes


@dataclass
class EmbeddingEngine:
    """Reads and decodes on a thread pool while the model runs batches, so compute never waits on IO.

    PIL and fsspec release the GIL while they decode and read, so threads overlap with the forward
    pass; on a GPU the batch is pinned and copied asynchronously.
    """

    model: LoadedModel
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int | None = None  # None: default_batch_size(device)
    io_threads: int = 4
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    storage_options: dict[str, Any] = field(default_factory=dict)
    local_features: FeatureSettings | None = None  # extracted in the IO threads from the same decoded image
    # Images read, decoded or waiting in a batch at once: what bounds the engine's memory beyond the model's.
    # None: 2 batches or 4 per IO thread, whichever is more.
    images_in_flight: int | None = None

    def __post_init__(self):
        retain_freed_memory()
        self.batch_size = self.batch_size or default_batch_size(self.device)

    def run(self, uris: Sequence[str], known_hashes: Container[str] = frozenset(),
            on_result: Callable[[Result], None] | None = None) -> Iterator[Result]:
        """Yield one result per uri, in input order."""
        stats = self.stats = EngineStats(images=len(uris))
        start = time.perf_counter()
        window = self.images_in_flight or max(2 * self.batch_size, 4 * self.io_threads)
        batch: list[_Prepared] = []
        with ThreadPoolExecutor(self.io_threads, thread_name_prefix="lookalike-io") as pool:
            pending: deque[Future] = deque()
            submitted = 0
            while submitted < len(uris) or pending:
                while submitted < len(uris) and len(pending) < window:
                    pending.append(pool.submit(self._prepare, submitted, uris[submitted], known_hashes))
                    submitted += 1
                item, read_s, decode_s, nbytes = pending.popleft().result()
                stats.hashed += not (isinstance(item, Failed) and item.stage == "read")
                stats.read_s += read_s
                stats.decode_s += decode_s
                stats.bytes_read += nbytes
                if isinstance(item, _Prepared):
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        yield from self._emit(self._forward(batch), on_result)
                        batch = []
                else:
                    # Known and Failed results may overtake images still waiting in the batch: callers
                    # get every result exactly once and match them by index.
                    yield from self._emit([item], on_result)
            if batch:
                yield from self._emit(self._forward(batch), on_result)
        stats.wall_s = time.perf_counter() - start

    def embed_all(self, uris: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
        """The uris' vectors as one matrix, for callers that want no shards (evaluation, benches): rows in input
        order for the uris that could be used, and for each that could not, its index and the reason."""
        vectors: dict[int, np.ndarray] = {}
        failed: dict[int, str] = {}
        for r in self.run(uris):
            if isinstance(r, Embedded):
                vectors[r.index] = r.vector
            else:
                failed[r.index] = f"{r.kind}: {r.message}"
            tick()
        rows = [vectors[i] for i in sorted(vectors)]
        return (np.stack(rows) if rows else np.zeros((0, self.model.dim), np.float32)), failed

    def _emit(self, results: list[Result], on_result) -> Iterator[Result]:
        for r in results:
            if isinstance(r, Embedded):
                self.stats.embedded += 1
            elif isinstance(r, Known):
                self.stats.known += 1
            else:
                self.stats.failed += 1
            if on_result:
                on_result(r)
            yield r

    def _prepare(self, index: int, uri: str, known_hashes: Container[str]):
        t0 = time.perf_counter()
        try:
            data = self._read(uri)
        except ImageError as e:
            return Failed(index, e.stage, e.kind, e.message), time.perf_counter() - t0, 0.0, 0
        sha = hashlib.sha256(data).hexdigest()
        t1 = time.perf_counter()
        if sha in known_hashes:
            return Known(index, sha), t1 - t0, 0.0, len(data)
        try:
            decoded = decode(data, self.model.preprocessing.image_size, self.max_pixels)
            tensor = to_tensor(decoded.image, self.model.preprocessing)
            features = extract(decoded.image, self.local_features) if self.local_features else None
            item: Result | _Prepared = _Prepared(index, sha, decoded.width, decoded.height, tensor, features,
                                                 colour_histogram(decoded.image))
        except ImageError as e:
            item = Failed(index, e.stage, e.kind, e.message)
        except Exception as e:  # a decoder bug on one image must not take the task down
            item = Failed(index, "decode", "decoder_error", f"{type(e).__name__}: {e}")
        return item, t1 - t0, time.perf_counter() - t1, len(data)

    def _read(self, uri: str) -> bytes:
        return read_image_bytes(uri, self.storage_options, self.max_bytes)

    def forward(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) uint8 batch → (B, dim) float32 unit vectors, on the engine's device."""
        return self.model.embed_batch(images, self.device)

    def _forward(self, batch: list[_Prepared]) -> list[Embedded]:
        t0 = time.perf_counter()
        vectors = self.forward(torch.stack([p.tensor for p in batch]))
        self.stats.model_s += time.perf_counter() - t0
        return [Embedded(p.index, p.content_sha256, p.width, p.height, vectors[i], p.features, p.colours)
                for i, p in enumerate(batch)]
