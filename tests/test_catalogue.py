"""The images table: listed from folders and prefixes (local and S3) or read from tables, checked up front."""

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from lookalike.embed.catalogue import CatalogueError, load_catalogue


def test_folder_listing_is_recursive_with_relative_ids(image_set):
    root, expected = image_set
    table = load_catalogue(str(root))
    assert table.column_names == ["image_id", "uri", "source_tag", "listed_sha256"]
    assert table["image_id"].to_pylist() == sorted(expected)
    assert table["uri"][0].as_py() == f"{root}/{sorted(expected)[0]}"
    # Each image's listing entry, from the same calls: its mtime and size (what a night compares).
    first = root / sorted(expected)[0]
    kind, mtime, size = table["source_tag"][0].as_py().split(":")
    assert (kind, float(mtime), int(size)) == ("mtime", first.stat().st_mtime, first.stat().st_size)


def test_s3_prefix_listing(s3_store, image_set):
    root, expected = image_set
    fs = fsspec.filesystem("s3", **s3_store.options)
    fs.put(str(root) + "/", s3_store.url.replace("s3://", "") + "/images/", recursive=True)
    table = load_catalogue(f"{s3_store.url}/images", s3_store.options)
    assert table["image_id"].to_pylist() == sorted(expected)
    assert table["uri"][0].as_py().startswith(f"{s3_store.url}/images/")
    assert all(tag.startswith("etag:") for tag in table["source_tag"].to_pylist())


class LockedFolderFileSystem(LocalFileSystem):
    """The local filesystem under `locked://`, refusing to list any folder named `locked`."""

    protocol = ("locked",)

    def ls(self, path, detail=True, **kwargs):
        if path.rstrip("/").endswith("/locked"):
            raise PermissionError(f"listing {path} is not allowed")
        return super().ls(path, detail=detail, **kwargs)


fsspec.register_implementation("locked", LockedFolderFileSystem, clobber=True)


def test_a_folder_that_cannot_be_listed_fails_the_listing_instead_of_dropping_its_images(image_set):
    """Listed a directory at a time: one that cannot be listed must not look like a folder whose images were
    removed."""
    root, expected = image_set
    (root / "locked").mkdir()
    (root / "locked" / "x.png").write_bytes(b"not read")
    with pytest.raises(CatalogueError, match="cannot list images root .*PermissionError"):
        load_catalogue(f"locked://{root}")
    (root / "locked" / "x.png").unlink()
    (root / "locked").rmdir()
    assert load_catalogue(f"locked://{root}")["image_id"].to_pylist() == sorted(expected)


def test_table_input_carries_metadata_and_keeps_string_ids(tmp_path):
    csv = tmp_path / "images.csv"
    csv.write_text("image_id,uri,nice_class\n007,/a/7.jpg,25\n010,/a/10.jpg,9\n")
    table = load_catalogue(str(csv))
    assert table["image_id"].to_pylist() == ["007", "010"]
    assert table["nice_class"].to_pylist() == ["25", "9"]
    pq.write_table(pa.table({"uri": ["/x/b.png", "/x/a.png"], "image_id": ["b", "a"], "owner": ["p", "q"]}),
                   tmp_path / "images.parquet")
    table = load_catalogue(str(tmp_path / "images.parquet"))
    assert table.column_names == ["image_id", "uri", "owner", "source_tag", "listed_sha256"]
    assert table.to_pydict() == {"image_id": ["a", "b"], "uri": ["/x/a.png", "/x/b.png"], "owner": ["q", "p"],
                                 "source_tag": [None, None], "listed_sha256": [None, None]}  # nothing vouched for


@pytest.mark.parametrize("rows, message", [
    ("image_id,uri\na,/1.jpg\na,/2.jpg\n", "duplicate image_id values, e.g. \\['a'\\]"),
    ("id,uri\na,/1.jpg\n", "lacks column\\(s\\) \\['image_id'\\]"),
    ("image_id,uri\n", "is empty"),
    ("image_id,uri,embedding\na,/1.jpg,x\n", "lookalike writes itself"),
])
def test_bad_tables_fail_before_any_work(tmp_path, rows, message):
    path = tmp_path / "t.csv"
    path.write_text(rows)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(str(path))


def test_unreachable_or_empty_roots(tmp_path, s3_store):
    with pytest.raises(CatalogueError, match="not a folder or prefix"):
        load_catalogue(str(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(CatalogueError, match="no images under"):
        load_catalogue(str(tmp_path))
    with pytest.raises(CatalogueError, match="does not exist"):
        load_catalogue(str(tmp_path / "missing.parquet"))
    with pytest.raises(CatalogueError, match="not a folder or prefix"):
        load_catalogue(f"{s3_store.url}/empty-prefix", s3_store.options)
