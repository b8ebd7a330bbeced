"""Index versions in the store: immutable folders committed by their manifest, a LATEST pointer, rollback,
retention and listing. A version without a manifest does not exist for readers."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from lookalike.core.errors import ArtefactError, ConfigError
from lookalike.core.layout import IndexLayout, index_latest_key, index_prefix
from lookalike.core.manifest import IndexManifest, ManifestError, ManifestMissing, new_run_id, read_manifest, utc_now
from lookalike.core.store import Store

log = logging.getLogger(__name__)
KIND = "index"
VERSION_PATTERN = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{6}$")


class VersionError(ArtefactError):
    """An index version is missing, incomplete or damaged; the message says what to do."""


def new_version_id() -> str:
    """Sortable by time, unique even for two builds in the same second."""
    return new_run_id()


def write_file(store: Store, key: str, data: bytes) -> dict[str, Any]:
    """Write one file of a version; returns its entry for the manifest (key, bytes, sha256)."""
    store.write_bytes(key, data)
    return {"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def upload_file(store: Store, key: str, local_path: str) -> dict[str, Any]:
    """Upload a large local file (streamed, multipart on S3) and return its manifest entry."""
    digest = hashlib.sha256()
    size = 0
    with open(local_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
            size += len(block)
    store.upload(local_path, key)
    return {"key": key, "bytes": size, "sha256": digest.hexdigest()}


def read_latest(store: Store, name: str) -> dict[str, Any] | None:
    """The LATEST pointer ({"version", "previous", "updated_at"}); None before the first publish."""
    key = index_latest_key(name)
    try:
        pointer = store.read_json(key)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        raise VersionError(f"{store.child_url(key)} is damaged (not JSON: {e}): point it at a complete version "
                           f"with `lookalike publish --name {name} --rollback VERSION`") from e
    if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
        raise VersionError(f"{store.child_url(key)} is damaged (not an object naming a version): point it at a "
                           f"complete version with `lookalike publish --name {name} --rollback VERSION`")
    return pointer


def latest_version(store: Store, name: str) -> str | None:
    pointer = read_latest(store, name)
    return pointer["version"] if pointer else None


def set_latest(store: Store, name: str, version: str) -> None:
    read_index_manifest(store, name, version)  # only a complete version can become LATEST
    try:
        previous = latest_version(store, name)
    except VersionError:
        previous = None  # a damaged LATEST is what a rollback repairs
    store.write_json(index_latest_key(name), {"version": version, "previous": previous if previous != version else None,
                                        "updated_at": utc_now()})


def read_index_manifest(store: Store, name: str, version: str | None = None) -> IndexManifest:
    """The manifest of a complete version (LATEST when none is named)."""
    version = version or latest_version(store, name)
    if version is None:
        raise VersionError(f"index {name!r} has no published version in {store.url}: run "
                           "`lookalike build-index --publish` first")
    try:
        return read_manifest(store, IndexLayout(store, name, version).manifest, KIND)
    except ManifestMissing as e:
        raise VersionError(f"index {name!r} has no complete version {version!r} (no manifest); "
                           f"`lookalike indexes list --name {name}` shows the complete ones") from e
    except ManifestError as e:
        raise VersionError(f"index {name!r} version {version!r} cannot be read: {e}; roll LATEST back to another "
                           "version or rebuild") from e


def verify_file(data: bytes, entry: dict[str, Any]) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry["bytes"] or digest != entry["sha256"]:
        raise VersionError(f"{entry['key']} is damaged: sha256 {digest[:12]}… ({len(data)} bytes), the manifest "
                           f"says {entry['sha256'][:12]}… ({entry['bytes']} bytes); republish or roll back")


def list_versions(store: Store, name: str) -> list[dict[str, Any]]:
    """Every version folder, newest first, with whether it is complete, LATEST, and its headline figures; a
    damaged manifest or LATEST is reported in its row, never fatal to the listing."""
    try:
        latest = latest_version(store, name)
    except VersionError as e:
        log.warning("%s", e)
        latest = None
    rows = []
    for key in store.list(index_prefix(name)):
        version = key.rsplit("/", 1)[-1]
        if not VERSION_PATTERN.match(version):
            continue
        try:
            m = read_manifest(store, IndexLayout(store, name, version).manifest, KIND)
        except ManifestMissing:
            rows.append({"version": version, "complete": False, "latest": False})
            continue
        except ManifestError as e:
            rows.append({"version": version, "complete": False, "latest": False, "damaged": str(e)})
            continue
        rows.append({"version": version, "complete": True, "latest": version == latest,
                     "ntotal": m.ntotal, "factory": m["factory"], "created_at": m.get("created_at", ""),
                     "recall_at_10": (m.get("operating_point") or {}).get("recall_at_10", 0.0)})
    return sorted(rows, key=lambda r: r["version"], reverse=True)


def retain(store: Store, name: str, keep: int, stale_after: timedelta = timedelta(hours=24)) -> list[str]:
    """Delete all but the newest `keep` complete versions, never LATEST or its predecessor, and incomplete
    versions (crashed builds) older than `stale_after`. Returns the deleted versions."""
    if keep < 1:
        raise ConfigError("--keep must be >= 1")
    pointer = read_latest(store, name) or {}
    protected = {pointer.get("version"), pointer.get("previous")}
    now = datetime.now(timezone.utc)
    deleted = []
    complete_seen = 0
    for row in list_versions(store, name):
        version = row["version"]
        if row.get("damaged"):
            continue  # left for a person to look at: deleting is not retention's call
        if row["complete"]:
            complete_seen += 1
            if complete_seen <= keep or version in protected:
                continue
        else:
            started = datetime.strptime(VERSION_PATTERN.match(version).group(1), "%Y%m%dT%H%M%SZ")
            if now - started.replace(tzinfo=timezone.utc) < stale_after:
                continue  # may be a build still running
        # The manifest goes first, so a reader never sees a complete-looking version with missing files.
        store.delete(IndexLayout(store, name, version).manifest)
        store.delete(IndexLayout(store, name, version).prefix, recursive=True)
        store.delete(IndexLayout(store, name, version).scratch_prefix, recursive=True)
        deleted.append(version)
        log.info("deleted index version %s/%s", name, version)
    return deleted
