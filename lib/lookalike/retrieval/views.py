"""The local features of query images, for geometric verification: each image's and its mirror's, extracted on
threads of their own (OpenCV releases the GIL)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from lookalike.core.cpus import available_cpus
from lookalike.core.deadline import checkpoint
from lookalike.image.budget import DecodeLimits, declared_pixels
from lookalike.image.decode import decode
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.local_features import LocalFeatures, extract, grey, mirrored


@functools.cache
def _feature_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(2, available_cpus()), thread_name_prefix="lookalike-features")


def query_views(images: Sequence[bytes], settings: FeatureSettings, limits: DecodeLimits
                ) -> list[list[LocalFeatures]]:
    """Each image's local features and its mirror's (the bytes were checked when the image was embedded). Each
    image is decoded within the pixel budget, as embedding does, and only its grey picture at the features' size
    outlives the decode."""
    pictures = []
    for data in images:
        small = feature_picture(data, settings, limits)
        pictures += [small, mirrored(small)]
    features = list(_feature_threads().map(lambda picture: extract(picture, settings), pictures))
    return [features[i:i + 2] for i in range(0, len(features), 2)]


def feature_picture(data: bytes, settings: FeatureSettings, limits: DecodeLimits) -> Image.Image:
    """The grey picture local features are extracted from (longest side settings.image_size): their keypoints
    are pixels of it."""
    checkpoint()
    with limits.budget.hold(declared_pixels(data)):
        return Image.fromarray(grey(decode(data, settings.image_size, limits.max_pixels).image, settings.image_size),
                               "L")


def views_of(data: bytes, settings: FeatureSettings, limits: DecodeLimits) -> tuple[list[LocalFeatures], int]:
    """One image's views (itself, then its mirror) and the width of the picture they were extracted from."""
    small = feature_picture(data, settings, limits)
    return [extract(small, settings), extract(mirrored(small), settings)], small.width
