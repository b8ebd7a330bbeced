"""What the API accepts as an image: a path or URI, the file's bytes, or a PIL image; turned into bytes, the form
every search path checks and decodes within its limits."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

from lookalike.core.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

ImageLike = Union[str, "os.PathLike[str]", bytes, "Image.Image"]


def is_one_image(value: Any) -> bool:
    """One image, not a list of them (a path is a str, bytes are a sequence: neither is a list)."""
    from PIL import Image
    return isinstance(value, str | bytes | bytearray | os.PathLike | Image.Image)


def as_uri(path: str | os.PathLike[str]) -> str:
    """A URI as it is; a local path made absolute."""
    text = os.fspath(path)
    return text if "://" in text else os.path.abspath(text)


def image_bytes(image: ImageLike, read: Callable[[str], bytes]) -> bytes:
    """The bytes of one image: a path or URI read by `read` (given the URI), bytes as given, a PIL image saved
    losslessly as PNG."""
    from PIL import Image
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, Image.Image):
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()
    if isinstance(image, str | os.PathLike):
        return read(as_uri(image))
    raise InputError(f"an image is a path or URI, bytes or a PIL image, not {type(image).__name__}")


def images_of(images: ImageLike | Sequence[ImageLike]) -> tuple[list[ImageLike], bool]:
    """(the images as a list, whether one image was given rather than a list)."""
    if is_one_image(images):
        return [images], True  # type: ignore[list-item]
    listed = list(images)  # type: ignore[arg-type]
    if not listed:
        raise InputError("no image given: give one, or a list of them")
    return listed, False


def label(image: ImageLike, position: int) -> str:
    """How a query is named in answers: its path or URI, else its position."""
    return os.fspath(image) if isinstance(image, str | os.PathLike) else str(position)
