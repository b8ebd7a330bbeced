"""Each unusual-but-valid file decodes correctly; each broken one gives one readable, stable error kind."""

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.dev.imagefactory import broken_images, jpeg_bytes, photo, unusual_images
from lookalike.image.decode import ImageError, decode


@pytest.mark.parametrize("name", sorted(unusual_images()))
def test_unusual_images_decode_to_upright_rgb(name):
    decoded = decode(unusual_images()[name], target_size=224)
    assert decoded.image.mode == "RGB"
    assert decoded.width > 0 and decoded.height > 0


@pytest.mark.parametrize("name", sorted(broken_images()))
def test_broken_images_raise_their_error_kind(name):
    data, kind = broken_images()[name]
    with pytest.raises(ImageError) as err:
        decode(data, target_size=224)
    assert err.value.stage == "decode"
    assert err.value.kind == kind
    assert len(err.value.message) > 10


def test_exif_orientation_is_applied_and_reported_as_displayed():
    decoded = decode(unusual_images()["rotated_exif.jpg"], 224)
    assert (decoded.width, decoded.height) == (64, 128)  # stored 128×64, displayed rotated
    assert decoded.image.size == (64, 128)


def test_sixteen_bit_png_keeps_its_tones():
    gray = np.asarray(photo("chelsea").convert("L"), dtype=np.float64)
    decoded = np.asarray(decode(unusual_images()["sixteen_bit.png"], 224).image.convert("L"), dtype=np.float64)
    assert np.abs(decoded - gray).mean() < 1.0  # scaled 16→8 bit, not clipped to white


def test_large_jpeg_decodes_in_draft_mode_but_reports_full_size():
    decoded = decode(unusual_images()["large.jpg"], 224)
    assert (decoded.width, decoded.height) == (2400, 2400)
    assert 448 <= decoded.image.width < 2400


def test_pixel_limit_is_configurable():
    data = jpeg_bytes(Image.new("RGB", (300, 300)))
    with pytest.raises(ImageError, match="exceeds the limit of 50,000") as err:
        decode(data, 224, max_pixels=50_000)
    assert err.value.kind == "too_many_pixels"
    assert decode(data, 224, max_pixels=90_000).width == 300


def test_cmyk_colours_survive():
    red = Image.new("RGB", (32, 32), (220, 20, 20))
    buf = io.BytesIO()
    red.convert("CMYK").save(buf, "JPEG", quality=95)
    r, g, b = decode(buf.getvalue(), 224).image.getpixel((16, 16))
    assert r > 180 and g < 70 and b < 70
