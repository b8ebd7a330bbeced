"""Local features for geometric verification: keypoints and descriptors of an image with OpenCV, a capped
number per image, in a compact form that can be stored beside its embedding and matched without OpenCV's
matchers.

RootSIFT (Arandjelović & Zisserman 2012): SIFT descriptors L1-normalised and square-rooted, so that their dot
product is the Hellinger kernel; stored as float16 (256 B a keypoint). ORB (binary, 32 B a keypoint) is the
cheaper alternative. Images are converted to grey on white (logos' transparency is white, as the global model
sees it) at a fixed longest side, so keypoint coordinates of catalogue and query images are comparable in
scale only up to the transform that verification estimates anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

from lookalike.image.feature_spec import FeatureSettings


def use_opencv_threads(n: int) -> None:
    """OpenCV's threads inside one extraction (its default is every CPU of the node, not of the task)."""
    cv2.setNumThreads(max(1, n))


@dataclass(frozen=True)
class LocalFeatures:
    xy: np.ndarray           # (n, 2) float32 keypoint positions, pixels at the extraction size
    descriptors: np.ndarray  # (n, 128) float16 unit RootSIFT rows, or (n, 32) uint8 ORB bits

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def nbytes(self) -> int:
        return self.xy.nbytes + self.descriptors.nbytes

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(positions, descriptors) as raw little-endian bytes: how tables and version files store them."""
        return self.xy.astype("<f4").tobytes(), self.descriptors.tobytes()


def grey(image: Image.Image, size: int) -> np.ndarray:
    """The image as uint8 grey on white, its longest side `size` pixels."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = ImageOps.contain(image.convert("L"), (size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def extract(image: Image.Image, settings: FeatureSettings | None = None) -> LocalFeatures:
    settings = settings or FeatureSettings()
    pixels = grey(image, settings.image_size)
    if settings.kind == "orb":
        detector = cv2.ORB_create(nfeatures=settings.max_keypoints)
    else:
        detector = cv2.SIFT_create(nfeatures=settings.max_keypoints)
    keypoints, descriptors = detector.detectAndCompute(pixels, None)
    if descriptors is None or not keypoints:
        width = 32 if settings.kind == "orb" else 128
        return LocalFeatures(np.zeros((0, 2), np.float32),
                             np.zeros((0, width), np.uint8 if settings.kind == "orb" else np.float16))
    # SIFT may return a few more than asked (ties in response); the strongest are kept.
    order = np.argsort([-k.response for k in keypoints], kind="stable")[:settings.max_keypoints]
    xy = np.array([keypoints[i].pt for i in order], dtype=np.float32)
    descriptors = descriptors[order]
    if settings.kind == "orb":
        return LocalFeatures(xy, descriptors.astype(np.uint8))
    return LocalFeatures(xy, root_sift(descriptors))


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """L1-normalise, square-root: unit L2 rows whose dot product is the Hellinger kernel."""
    d = descriptors.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
    return np.sqrt(d).astype(np.float16)


def mirrored(image: Image.Image) -> Image.Image:
    """SIFT descriptors are not mirror-invariant: a mirrored copy is matched through the mirrored query."""
    return ImageOps.mirror(image)
