"""Manifests: the JSON written last that commits a run or a version; readers trust them, not listings."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import uuid
from typing import Any

from lookalike import __version__
from lookalike.core.errors import ArtefactError
from lookalike.core.store import Store

FORMAT_VERSION = 1


class ManifestError(ArtefactError):
    """A manifest is missing, of the wrong kind, or from a newer format than this code reads."""


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


def read_manifest(store: Store, key: str, kind: str) -> dict[str, Any]:
    try:
        manifest = store.read_json(key)
    except FileNotFoundError as e:
        raise ManifestError(f"no manifest at {store.child_url(key)}") from e
    if manifest.get("kind") != kind:
        raise ManifestError(f"{store.child_url(key)} is a {manifest.get('kind')!r} manifest, expected {kind!r}")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ManifestError(f"{store.child_url(key)} has format version {manifest['format_version']}; this "
                            f"lookalike reads up to {FORMAT_VERSION}: upgrade lookalike")
    return manifest
