"""Image bytes → an RGB image → the model's input tensor, with every failure named by a stable error kind."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from lookalike.core.errors import InputError
from lookalike.image.limits import DEFAULT_MAX_PIXELS
from lookalike.model.spec import Preprocessing

_INTERPOLATION = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
_PIL_INTERPOLATION = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_EXIF_ORIENTATION = 0x0112


class ImageError(InputError):
    """One image could not be used; becomes one row of the errors table."""

    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(f"{stage}/{kind}: {message}")
        self.stage = stage
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, oriented, possibly reduced by JPEG draft mode
    width: int          # of the full image as displayed (after EXIF orientation)
    height: int


def decode(data: bytes, target_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode bytes into an upright RGB image; raises ImageError with a readable reason."""
    if not data:
        raise ImageError("decode", "empty", "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL warns (and past 2× its own limit raises) about bombs; we apply our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageError("decode", "too_many_pixels", str(e)) from e
    except UnidentifiedImageError as e:
        raise ImageError("decode", "not_an_image",
                         f"not a readable image format ({len(data):,} bytes)") from e
    except Exception as e:
        raise ImageError("decode", "corrupt", f"cannot open image: {e}") from e

    width, height = img.size
    if width * height > max_pixels:
        raise ImageError("decode", "too_many_pixels",
                         f"{width}×{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
                         "(possible decompression bomb)")
    try:
        # For JPEG the EXIF block sits in the header; PNG may load the image to find it, hence inside the try.
        if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        if img.format == "JPEG":
            # Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale, far faster for a large photo, which still
            # keeps at least twice the pixels the model sees.
            img.draft("RGB", (2 * target_size, 2 * target_size))
        img.seek(0)  # first frame of an animation
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
    except ImageError:
        raise
    except OSError as e:
        kind = "truncated" if "truncated" in str(e) else "corrupt"
        raise ImageError("decode", kind, f"cannot decode image: {e}") from e
    except Exception as e:
        raise ImageError("decode", "corrupt", f"cannot decode image: {type(e).__name__}: {e}") from e
    return Decoded(rgb, width, height)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: transparency composited on white, 16-bit and float scaled, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_tensor(image: Image.Image, pre: Preprocessing) -> torch.Tensor:
    """An RGB image resized per the recipe, as a (3, S, S) uint8 tensor.

    Normalisation happens in the model, on its device: uint8 batches cross PCIe at a quarter of the bytes,
    and the decode threads do less arithmetic.
    """
    size = pre.image_size
    if pre.resize == "crop":
        image = TF.center_crop(TF.resize(image, int(size / 0.875), _INTERPOLATION[pre.interpolation]), size)
    elif pre.resize == "squash":
        image = image.resize((size, size), _PIL_INTERPOLATION[pre.interpolation])
    else:  # pad: whole image, aspect kept, centred on white
        scale = size / max(image.size)
        w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(image.resize((w, h), _PIL_INTERPOLATION[pre.interpolation]), ((size - w) // 2, (size - h) // 2))
        image = canvas
    return TF.pil_to_tensor(image)
