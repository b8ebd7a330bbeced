"""Reading one image's bytes from any fsspec URL within a size limit, every failure named by a stable kind."""

from __future__ import annotations

from typing import Any

from lookalike.core.deadline import DeadlineExceeded
from lookalike.core.store import filesystem, retry_attempts, with_retries
from lookalike.image.decode import ImageError

# Error kinds an image can get past without its bytes changing (a store's hiccup, a permission granted since, an
# object listed before it could be read): a rerun of a failed run tries them again.
MAY_PASS_UNCHANGED = frozenset({"read_error", "permission_denied", "not_found"})


def read_image_bytes(uri: str, storage_options: dict[str, Any], max_bytes: int) -> bytes:
    """The bytes of one image, transient errors retried; every failure an ImageError with a stable kind."""
    try:
        fs, path = filesystem(uri, storage_options)

        def read() -> bytes:
            with fs.open(path, "rb") as f:
                return f.read(max_bytes + 1)
        data = with_retries(read, f"read {uri}", retry_attempts(fs))
    except FileNotFoundError as e:
        raise ImageError("read", "not_found", f"no object at {uri}") from e
    except PermissionError as e:
        raise ImageError("read", "permission_denied", f"access denied to {uri}: {e}") from e
    except IsADirectoryError as e:
        raise ImageError("read", "not_a_file", f"{uri} is a directory") from e
    except DeadlineExceeded:
        raise  # not the image's fault: its request ran out of time
    except Exception as e:
        raise ImageError("read", "read_error", f"cannot read {uri}: {type(e).__name__}: {e}") from e
    if len(data) > max_bytes:
        raise ImageError("read", "too_large", f"larger than the limit of {max_bytes:,} bytes")
    return data
