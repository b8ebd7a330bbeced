"""Manifests: the JSON written last that commits a run or a version; readers trust them, not listings."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import uuid
from typing import Any

from lookalike._version import __version__
from lookalike.core.errors import ArtefactError
from lookalike.core.store import Store

FORMAT_VERSION = 1


class ManifestError(ArtefactError):
    """A manifest is missing, damaged, of the wrong kind, or from a newer format than this code reads."""


class ManifestMissing(ManifestError):
    """No manifest at all: the run or version never finished (readers treat it as not there)."""


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    """A new run or version id: sortable by time, and unique even for two runs started in the same second
    (a bare timestamp made the second one 'resume' the first and return its manifest)."""
    return f"{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        sha = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def new_manifest(kind: str, **fields: Any) -> dict[str, Any]:
    """A manifest as plain JSON values, so the caller holds exactly what a reader will read back."""
    manifest = {"kind": kind, "format_version": FORMAT_VERSION, "created_at": utc_now(),
                "code_version": code_version(), **fields}
    return json.loads(json.dumps(manifest, default=str))


class Manifest(dict):
    """A manifest as read back: its JSON object, checked on read for the fields every reader relies on, with
    typed accessors for them. A dict, so it prints and re-serialises as it was written."""

    kind = ""
    required: tuple[str, ...] = ()

    def __init__(self, data: dict[str, Any], where: str):
        super().__init__(data)
        self.where = where
        missing = [k for k in self.required if k not in data]
        if missing:
            raise ManifestError(f"{where} is damaged: the {self.kind} manifest has no {', '.join(missing)}")


class EmbeddingsManifest(Manifest):
    kind = "embeddings"
    required = ("run_id", "fingerprint_id", "fingerprint", "counts", "files")

    @property
    def run_id(self) -> str:
        return self["run_id"]

    @property
    def fingerprint_id(self) -> str:
        return self["fingerprint_id"]

    @property
    def dim(self) -> int:
        return int(self["fingerprint"]["dim"])

    @property
    def recorded_model(self) -> dict[str, Any] | None:
        """The model spec the run recorded (None for vectors made outside lookalike)."""
        return (self.get("config") or {}).get("model")


# Search parameters renamed in a release, old name → today's: the shortlist re-scored exactly was "rerank" (a word
# index/rerank.py's re-ranking methods own now). Manifests of older versions are read under today's names, and the
# HTTP API and the Python API accept the old names for one more release.
RENAMED_SEARCH_PARAMS = {"rerank": "rescore"}


def _search_names_of_today(point: Any) -> Any:
    if not isinstance(point, dict):
        return point
    renamed = {RENAMED_SEARCH_PARAMS.get(k, k): v for k, v in point.items()}
    if isinstance(renamed.get("params"), dict):
        renamed["params"] = _search_names_of_today(renamed["params"])
    return renamed


class IndexManifest(Manifest):
    kind = "index"
    required = ("name", "version", "fingerprint_id", "dim", "ntotal", "factory", "default_search", "files",
                "source")

    def __init__(self, data: dict[str, Any], where: str):
        data = dict(data)
        for field in ("default_search", "operating_point"):
            if field in data:
                data[field] = _search_names_of_today(data[field])
        if isinstance(data.get("recall_table"), list):
            data["recall_table"] = [_search_names_of_today(row) for row in data["recall_table"]]
        super().__init__(data, where)

    @property
    def name(self) -> str:
        return self["name"]

    @property
    def version(self) -> str:
        return self["version"]

    @property
    def fingerprint_id(self) -> str:
        return self["fingerprint_id"]

    @property
    def dim(self) -> int:
        return int(self["dim"])

    @property
    def ntotal(self) -> int:
        return int(self["ntotal"])

    @property
    def source_run_id(self) -> str | None:
        """The embeddings run the version was built from."""
        return self["source"].get("run_id")

    @property
    def recorded_model(self) -> dict[str, Any] | None:
        """The model spec that made the vectors, as the build copied it from the embeddings (older versions: None)."""
        return self.get("model")


MANIFEST_TYPES: dict[str, type[Manifest]] = {m.kind: m for m in (EmbeddingsManifest, IndexManifest)}


def read_manifest(store: Store, key: str, kind: str) -> dict[str, Any]:
    """The manifest at key, checked: a JSON object of this kind and a format this code reads; the typed class
    of its kind where there is one. Anything else is a ManifestError naming the file."""
    where = store.child_url(key)
    try:
        manifest = store.read_json(key)
    except FileNotFoundError as e:
        raise ManifestMissing(f"no manifest at {where}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{where} is damaged: not JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where} is damaged: a JSON {type(manifest).__name__}, not an object")
    if manifest.get("kind") != kind:
        raise ManifestError(f"{where} is a {manifest.get('kind')!r} manifest, expected {kind!r}")
    try:
        version = int(manifest.get("format_version", 0))
    except (TypeError, ValueError) as e:
        raise ManifestError(f"{where} is damaged: format_version {manifest.get('format_version')!r}") from e
    if version > FORMAT_VERSION:
        raise ManifestError(f"{where} has format version {version}; this lookalike reads up to {FORMAT_VERSION}: "
                            "upgrade lookalike")
    typed = MANIFEST_TYPES.get(kind)
    return typed(manifest, where) if typed else manifest
