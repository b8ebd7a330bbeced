"""Tiny real images for tests and benches: photos bundled with scikit-image (a test dependency), unusual-but-valid
files, broken ones, large keypoint-rich ones."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw

# Distinct photos that ship inside scikit-image (no download); `cat` is the same picture as `chelsea`.
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "coins",
          "colorwheel")


def photo(name: str, size: int = 128) -> Image.Image:
    data = getattr(skimage.data, name)()
    if isinstance(data, tuple):  # stereo pairs
        data = data[0]
    img = Image.fromarray(data).convert("RGB")
    img.thumbnail((size, size), Image.Resampling.BICUBIC)
    return img


def jpeg_bytes(img: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height but holds one empty row: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def unusual_images() -> dict[str, bytes]:
    """Valid files in modes and formats that trip naive decoders; each must embed correctly."""
    base = photo("chelsea")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    frames = [photo(n, 64) for n in ("coffee", "rocket")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    sixteen = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)  # mode I;16
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    return {
        "cmyk.jpg": jpeg_bytes(base.convert("CMYK")),
        "sixteen_bit.png": png_bytes(sixteen),
        "animated.gif": gif.getvalue(),
        "rgba.png": png_bytes(rgba),
        "palette.png": png_bytes(base.convert("P", palette=Image.Palette.ADAPTIVE)),
        "gray_alpha.png": png_bytes(base.convert("LA")),
        "rotated_exif.jpg": jpeg_bytes(base.crop((0, 0, 128, 64)), exif=exif.tobytes()),
        "large.jpg": jpeg_bytes(photo("astronaut", 512).resize((2400, 2400))),
    }


def broken_images() -> dict[str, tuple[bytes, str]]:
    """Files that cannot be embedded, with the error_kind each must be reported as."""
    good = jpeg_bytes(photo("coffee"))
    rng = np.random.default_rng(7)
    return {
        "corrupt.jpg": (bytes(rng.integers(0, 256, 4000, dtype=np.uint8)), "not_an_image"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
        "empty.jpg": (b"", "empty"),
        "text.jpg": (b"this is not an image, it is a note\n" * 20, "not_an_image"),
        "bomb.png": (png_header_only(30_000, 30_000), "too_many_pixels"),
        "bad_body.png": (png_bytes(photo("rocket"))[:60] + b"\0" * 500, "corrupt"),
    }


def write_image_set(root: Path, photos: tuple[str, ...] = PHOTOS, unusual: bool = True,
                    broken: bool = True) -> dict[str, str]:
    """Write a folder of images; returns image_id -> expected outcome ('ok' or the error_kind)."""
    expected: dict[str, str] = {}
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(photos):
        rel = f"photos/{name}.jpg" if i % 2 == 0 else f"photos/nested/{name}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(photo(name)) if rel.endswith(".jpg") else png_bytes(photo(name)))
        expected[rel] = "ok"
    if unusual:
        for name, data in unusual_images().items():
            (root / "unusual").mkdir(exist_ok=True)
            (root / "unusual" / name).write_bytes(data)
            expected[f"unusual/{name}"] = "ok"
    if broken:
        for name, (data, kind) in broken_images().items():
            (root / "broken").mkdir(exist_ok=True)
            (root / "broken" / name).write_bytes(data)
            expected[f"broken/{name}"] = kind
    return expected


def write_photo_crops(root: Path, photos: tuple[str, ...] = PHOTOS, per_photo: int = 5, seed: int = 0,
                      prefix: str = "") -> list[str]:
    """Several different crops of each photo as JPEGs (`<photo>-<i>.jpg`): a catalogue big enough to train a
    small IVF index, with near neighbours that belong together. Returns the written file names."""
    rng = np.random.default_rng(seed)
    names = []
    for name in photos:
        full = photo(name, size=256)
        for i in range(per_photo):
            names.append(f"{prefix}{name}-{i}.jpg")
            (root / names[-1]).write_bytes(jpeg_bytes(random_crop(full, rng)))
    return names


def random_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    scale = rng.uniform(0.6, 0.9)
    cw, ch = int(w * scale), int(h * scale)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch)).resize((128, 128), Image.Resampling.BICUBIC)


def keypoint_rich_png(side: int, seed: int) -> bytes:
    """A keypoint-rich 1-bit image of side × side pixels (side > 600), a few dozen KB as a PNG: small to send,
    large to decode."""
    image = Image.new("1", (side, side), 1)
    pen = ImageDraw.Draw(image)
    for i in range(60):
        x, y = (seed * 7919 + i * 104729) % (side - 600), (seed * 104723 + i * 7907) % (side - 600)
        pen.ellipse((x, y, x + 200 + i * 5, y + 150 + i * 7), outline=0, width=9)
        pen.rectangle((y, x, y + 300, x + 120), fill=0)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()
