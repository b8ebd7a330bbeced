"""A night reads only what changed: the listing's size + mtime/ETag (or an images table's etag/version/content_sha256)
decides what is carried over unread; reads are counted on a store wrapper, not inferred from the report."""

import os
import threading
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from PIL import Image
from support.servers import S3Store

from lookalike.core.errors import InputError
from lookalike.core.store import Store
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import open_version


class CountingFileSystem(LocalFileSystem):
    """The local filesystem under `counting://`, counting every file opened for reading and the bytes read."""

    protocol = ("counting",)
    opened: Counter = Counter()
    bytes_read: Counter = Counter()
    lock = threading.Lock()

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "r" in mode:
            with self.lock:
                self.opened[os.path.basename(path)] += 1
            read = f.read

            def counted(*args):
                data = read(*args)
                with self.lock:
                    self.bytes_read[os.path.basename(path)] += len(data)
                return data
            f.read = counted
        return f

    @classmethod
    def reset(cls) -> None:
        cls.opened.clear()
        cls.bytes_read.clear()


fsspec.register_implementation("counting", CountingFileSystem, clobber=True)


def mark(path: Path, hue: int, mtime: float | None = None) -> None:
    """A 96×96 BMP (the same byte size whatever its colours): a disc of one hue on white."""
    yy, xx = np.mgrid[:96, :96]
    rgb = np.full((96, 96, 3), 255, np.uint8)
    disc = (yy - 48) ** 2 + (xx - 40 - hue % 17) ** 2 < (20 + hue % 13) ** 2
    rgb[disc] = [(hue * 37) % 256, (hue * 91) % 256, (hue * 53) % 256]
    Image.fromarray(rgb).save(path, format="BMP")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def night(images: str, store: str, **kw) -> dict:
    CountingFileSystem.reset()
    config = EmbedConfig(images=images, store=store, master="in-process", images_per_task=4, local_features=None,
                         **kw)
    return embed.run(config)


def vectors_by_id(store_url: str, manifest: dict, options: dict | None = None) -> dict[str, np.ndarray]:
    store = Store(store_url, options or {})
    version = open_version(store, manifest["fingerprint_id"], manifest["run_id"])
    table = pa.concat_tables([store.read_parquet(k, ["image_id", "embedding"]) for k in version.parts])
    return dict(zip(table["image_id"].to_pylist(), np.stack(table["embedding"].to_numpy(zero_copy_only=False)),
                    strict=True))


@pytest.fixture()
def catalogue(tmp_path) -> Path:
    root = tmp_path / "catalogue"
    root.mkdir()
    for i in range(10):
        mark(root / f"mark-{i}.bmp", i, mtime=1_700_000_000 + i)
    return root


def test_a_night_reads_only_new_and_changed_objects_and_carries_rewritten_identical_bytes(catalogue, tmp_path):
    images, store = f"counting://{catalogue}", str(tmp_path / "store")
    first = night(images, store)
    assert first["counts"]["new"] == 10 and first["change_detection"] == {"mode": "first", "untagged": 0}
    assert set(CountingFileSystem.opened) == {f"mark-{i}.bmp" for i in range(10)}

    size = (catalogue / "mark-3.bmp").stat().st_size
    mark(catalogue / "mark-3.bmp", 33, mtime=1_800_000_000)          # changed bytes, the same size
    assert (catalogue / "mark-3.bmp").stat().st_size == size
    data = (catalogue / "mark-5.bmp").read_bytes()
    (catalogue / "mark-5.bmp").write_bytes(data)                      # rewritten with identical bytes
    os.utime(catalogue / "mark-5.bmp", (1_800_000_000, 1_800_000_000))
    mark(catalogue / "mark-new.bmp", 77)                               # added
    second = night(images, store)

    assert set(CountingFileSystem.opened) == {"mark-3.bmp", "mark-5.bmp", "mark-new.bmp"}
    c = second["counts"]
    assert (c["unchanged_by_listing"], c["read"], c["hashed"], c["new"], c["carried_by_hash"], c["carried"]) == \
        (8, 3, 3, 2, 1, 9)
    assert c["bytes_read"] == sum(CountingFileSystem.bytes_read.values()) == 3 * size
    assert second["change_detection"]["mode"] == "listing"
    before, after = vectors_by_id(store, first), vectors_by_id(store, second)
    assert set(after) == set(before) | {"mark-new.bmp"}
    assert np.array_equal(after["mark-5.bmp"], before["mark-5.bmp"])
    assert np.array_equal(after["mark-7.bmp"], before["mark-7.bmp"])
    assert not np.allclose(after["mark-3.bmp"], before["mark-3.bmp"])

    third = night(images, store)  # nothing changed: nothing read at all
    assert not CountingFileSystem.opened and third["counts"]["read"] == 0 and third["counts"]["carried"] == 11

    rehashed = night(images, store, rehash=True)  # the weekly check trusts no listing
    assert len(CountingFileSystem.opened) == 11 and rehashed["change_detection"]["mode"] == "rehash"
    assert (rehashed["counts"]["read"], rehashed["counts"]["new"], rehashed["counts"]["carried_by_hash"]) == (11, 0, 11)


def test_an_images_table_with_etags_or_hashes_is_trusted_the_same_way(catalogue, tmp_path):
    store = str(tmp_path / "store")
    ids = [f"mark-{i}.bmp" for i in range(10)]
    uris = [f"counting://{catalogue}/{i}" for i in ids]
    table = tmp_path / "images.parquet"
    pq.write_table(pa.table({"image_id": ids, "uri": uris, "etag": [f"e{i}" for i in range(10)]}), table)
    night(str(table), store)

    mark(catalogue / "mark-2.bmp", 22)  # the catalogue's own system says so: a new etag for mark-2 only
    pq.write_table(pa.table({"image_id": ids, "uri": uris, "etag": [f"e{i}" + ("b" if i == 2 else "")
                                                                    for i in range(10)]}), table)
    second = night(str(table), store)
    assert set(CountingFileSystem.opened) == {"mark-2.bmp"}
    assert (second["counts"]["unchanged_by_listing"], second["counts"]["new"]) == (9, 1)

    # A table that vouches for content hashes: a known hash under a new id is carried unread.
    version = open_version(Store(store), second["fingerprint_id"], second["run_id"])
    known = dict(zip(*version.read_all(["image_id", "content_sha256"]).to_pydict().values(), strict=True))
    pq.write_table(pa.table({"image_id": ["copy-of-7"], "uri": [f"counting://{catalogue}/missing.bmp"],
                             "content_sha256": [known["mark-7.bmp"]]}), table)
    third = night(str(table), store)
    assert not CountingFileSystem.opened and third["counts"]["carried"] == 1 and third["counts"]["failed"] == 0
    assert third["counts"]["unchanged_by_listing"] == 1

    pq.write_table(pa.table({"image_id": ["x"], "uri": uris[:1], "content_sha256": ["not-a-hash"]}), table)
    with pytest.raises(InputError, match="64 hex digits"):
        night(str(table), store)


def test_a_changed_object_of_the_same_size_is_found_by_its_etag_on_s3(s3_store: S3Store, catalogue, tmp_path):
    url, options = s3_store.url, s3_store.options
    fs, base = fsspec.core.url_to_fs(url, **options)
    images = f"{url}-images"
    fs.put(str(catalogue) + "/", images.removeprefix("s3://") + "/", recursive=True)
    first = night(images, url, storage_options=options)
    assert first["counts"]["new"] == 10

    mark(tmp_path / "changed.bmp", 44)  # same size as every mark, different bytes: only the ETag says so
    fs.put_file(str(tmp_path / "changed.bmp"), images.removeprefix("s3://") + "/mark-4.bmp")
    second = night(images, url, storage_options=options)
    c = second["counts"]
    assert (c["unchanged_by_listing"], c["read"], c["new"], c["ids_changed"]) == (9, 1, 1, 1)
    assert second["change_detection"] == {"mode": "listing", "untagged": 0}
    tags = open_version(Store(url, options), second["fingerprint_id"], second["run_id"]).read_all(
        ["image_id", "source_tag"]).to_pydict()
    assert all(t.startswith("etag:") for t in tags["source_tag"])


def test_a_task_reads_only_the_carry_row_groups_of_the_hashes_it_meets(tmp_path):
    """The carry index spans the catalogue; a lookup reads the footer and the one row group that can hold it."""
    import hashlib

    from lookalike.embed.carry import ROW_GROUP_ROWS, CarryLookup, write_carry
    n = 5 * ROW_GROUP_ROWS
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    store = Store(str(tmp_path / "store"))
    # A hash stored twice (p2 repeats p0's first ten) is carried from its first place.
    for key, part in (("p0", hashes[:n // 2]), ("p1", hashes[n // 2:]), ("p2", hashes[:10])):
        store.write_parquet(key, pa.table({"content_sha256": part}))
    (tmp_path / "spill").mkdir()
    assert write_carry(store, "_carry.parquet", ["p0", "p1", "p2"], str(tmp_path / "spill")) == n
    written = store.read_parquet("_carry.parquet")
    assert written["content_sha256"].to_pylist() == sorted(hashes)  # sorted end to end across the spill buckets
    assert pq.ParquetFile(store.path("_carry.parquet")).metadata.row_group(0).num_rows <= ROW_GROUP_ROWS
    lookup = CarryLookup(store, "_carry.parquet")
    assert lookup.locate(hashes[7]) == ("p0", 7) and lookup.row_groups_read == 1
    assert lookup.locate(hashes[n // 2 + 3]) == ("p1", 3)
    assert "0" * 64 not in lookup and hashlib.sha256(b"other").hexdigest() not in lookup
    assert lookup.row_groups_read <= 3 and lookup.part_key(2) == "p2"
