"""What a query worker serves: LATEST of one index, loaded through the local cache, with the model that
embeds query images, and a watcher that swaps to a new version without disturbing requests in flight."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any

from lookalike.core.errors import ArtefactError, ConfigError
from lookalike.core.store import Store
from lookalike.embed.provenance import of_index
from lookalike.image.budget import DecodeLimits, PixelBudget
from lookalike.index.footprint import cached_bytes
from lookalike.index.publish import latest_version, read_index_manifest
from lookalike.index.reader import IndexVersion, fetch_version, open_local, prune_cache
from lookalike.index.status import current_since
from lookalike.model.loading import cached_model
from lookalike.retrieval.calibration import ScoreCalibration
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.query import HIT_COLUMNS
from lookalike.serve.settings import WorkerSettings

log = logging.getLogger(__name__)


class ServeError(ArtefactError):
    """The worker cannot serve what it was asked to; the message says what to do."""


class ServedIndex:
    """Holds the version being served. Requests read `current` once and keep that object for their whole
    life, so a swap (one reference assignment) never changes an index under a running search; the old
    version is freed when its last request returns."""

    def __init__(self, store: Store, settings: WorkerSettings):
        self.store = store
        self.settings = settings
        self.current: IndexVersion | None = None
        self.embedder: QueryEmbedder | None = None
        self.pixel_budget = PixelBudget(settings.max_pixels_in_flight)  # one per worker, whatever the version
        self.loaded_at: float | None = None
        self.current_since: float | None = None  # when the index was last known current (index.status)
        self.swaps = 0
        self.load_failures = 0
        self.last_error: dict[str, Any] | None = None
        self._failed_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Measured when a version loads (a few thousand searches, off the request path), for the served version
        # and its predecessor, which requests begun before a swap still read.
        self._calibrations: dict[str, ScoreCalibration | None] = {}

    @property
    def decode_limits(self) -> DecodeLimits:
        """What reading one query image may take on this worker (its bytes, its pixels, the shared budget)."""
        return DecodeLimits(self.settings.max_bytes, self.settings.max_pixels, self.pixel_budget)

    def shown(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The metadata a hit or a comparison carries: the --show-columns ones, in their order, or all of it."""
        columns = self.settings.show_columns
        return {c: metadata[c] for c in columns if c in metadata} if columns else metadata

    def calibration(self, version: IndexVersion) -> ScoreCalibration | None:
        """The score calibration of a version this worker serves or served last; None for a catalogue too small to
        calibrate."""
        return self._calibrations.get(version.version)

    def start(self, watch: bool = True, version: str | None = None) -> None:
        """Load LATEST (or the given version) now, failing fast when it cannot be served, then watch LATEST."""
        version = version or latest_version(self.store, self.settings.name)
        if version is None:
            raise ServeError(f"index {self.settings.name!r} has no published version in {self.store.url}: run "
                             "`lookalike build-index --publish` first")
        self._load(version)
        self.current_since = current_since(self.store, self.settings.name)
        if watch:
            self._thread = threading.Thread(target=self._watch, name="lookalike-index-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def poll(self) -> bool:
        """Swap to LATEST if it moved and may be tried; True when a swap happened."""
        try:
            version = latest_version(self.store, self.settings.name)
            self.current_since = current_since(self.store, self.settings.name)
        except Exception as e:  # the store is down: keep serving what we have
            self._record_failure(None, f"cannot read LATEST: {type(e).__name__}: {e}")
            return False
        if version is None or (self.current and version == self.current.version):
            return False
        failed_at = self._failed_at.get(version)
        if failed_at is not None and time.monotonic() - failed_at < self.settings.retry_s:
            return False
        try:
            self._load(version)
        except Exception as e:
            self._failed_at[version] = time.monotonic()
            self._record_failure(version, str(e))
            log.error("not serving %s/%s (still serving %s; retrying in %.0fs): %s", self.settings.name, version,
                      self.current.version if self.current else "nothing", self.settings.retry_s, e)
            return False
        return True

    def status(self) -> dict[str, Any]:
        current = self.current
        return {
            "status": "ok" if current else "loading",
            "name": self.settings.name,
            "version": current.version if current else None,
            "ntotal": current.manifest["ntotal"] if current else 0,
            "dim": current.dim if current else None,
            "fingerprint_id": current.manifest["fingerprint_id"] if current else None,
            "image_search": self.embedder is not None,
            "loaded_at": self.loaded_at,
            "current_since": self.current_since,
            "swaps": self.swaps,
            "load_failures": self.load_failures,
            "last_error": self.last_error,
        }

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            self.poll()

    def _record_failure(self, version: str | None, message: str) -> None:
        self.load_failures += 1
        self.last_error = {"version": version, "error": message, "at": time.time()}

    def _load(self, version: str) -> None:
        with self._lock:  # one load at a time; requests never take this lock
            manifest = read_index_manifest(self.store, self.settings.name, version)
            embedder = self._embedder_for(manifest)
            self._make_room(manifest)
            local = fetch_version(self.store, manifest, self.settings.cache_dir)
            opened = open_local(local, manifest)
            self._check_columns(opened)
            calibration = ScoreCalibration.of(opened)
            previous = self.current
            self._calibrations = {version: calibration} | (
                {previous.version: self._calibrations.get(previous.version)} if previous else {})
            self.current, self.embedder, self.loaded_at = opened, embedder, time.time()
            self._failed_at.pop(version, None)
            if previous is not None:
                self.swaps += 1
                log.warning("now serving %s/%s (was %s)", self.settings.name, version, previous.version)
            # The predecessor stays cached: requests may still be reading it, and a rollback is then instant.
            prune_cache(self.settings.cache_dir, self.settings.name,
                        {version} | ({previous.version} if previous else set()))

    def _check_columns(self, version: IndexVersion) -> None:
        missing = [c for c in self.settings.show_columns if c not in version.ids.column_names or c in HIT_COLUMNS]
        if missing:
            shown = [c for c in version.ids.column_names if c not in HIT_COLUMNS]
            raise ServeError(f"--show-columns names {missing}, which {version.manifest['name']}/{version.version} "
                             f"does not have as metadata: its columns are {shown}")

    def _make_room(self, manifest: dict[str, Any]) -> None:
        """The older predecessor stays cached while the disk has room for the coming version beside it (a rollback
        to it is then instant); when it has not, it goes first, so that the cache never needs more than the
        served version and the coming one (deploy/SCALING.md sizes the volume for two)."""
        os.makedirs(self.settings.cache_dir, exist_ok=True)
        if shutil.disk_usage(self.settings.cache_dir).free < cached_bytes(manifest["files"]):
            keep = {manifest["version"]} | ({self.current.version} if self.current else set())
            for dropped in prune_cache(self.settings.cache_dir, self.settings.name, keep):
                log.warning("dropped %s/%s from the cache to make room for %s", self.settings.name, dropped,
                            manifest["version"])

    def _embedder_for(self, manifest: dict[str, Any]) -> QueryEmbedder | None:
        """The embedder for a version: the worker's model must be the one that made the version's vectors.
        The model is loaded once, for the first version that names it, and never changes afterwards."""
        embedder = self.embedder
        provenance = of_index(self.store, manifest)
        if embedder is None:
            spec = self.settings.model or provenance.spec
            if spec is None:
                log.warning("%s/%s does not name the model of its vectors: search by image is off (start the "
                            "worker with --model to turn it on)", manifest["name"], manifest["version"])
                return None
            try:
                model = cached_model(spec, self.settings.device)
            except Exception as e:
                raise ConfigError(f"cannot load the model {spec.name!r} for {manifest['name']}: {e}") from e
            embedder = QueryEmbedder(model, self.decode_limits, self.store.options)
        provenance.check_model(embedder.fingerprint_id, "start a worker with the model options the index was built "
                                                        "with", user="the query model of this worker")
        return embedder
