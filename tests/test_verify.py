"""Local-feature verification on real photos: rotated, cropped, rescaled, recoloured and mirrored copies are
verified against their original (RootSIFT and ORB), distinct photos are not, and fusion puts verified candidates
first."""

import numpy as np
import pytest

from lookalike.dev.alterations import altered
from lookalike.image.local_features import FeatureSettings, extract, mirrored
from lookalike.retrieval.verify import VerifySettings, fuse, inlier_counts

from imagefactory import PHOTOS, photo

SETTINGS = VerifySettings()


@pytest.fixture(scope="module")
def originals():
    return {name: photo(name, 320) for name in PHOTOS}


def views(image, settings: FeatureSettings):
    return [extract(image, settings), extract(mirrored(image), settings)]


@pytest.mark.parametrize("kind", ["rootsift", "orb"])
@pytest.mark.parametrize("alteration", ["rotate", "crop", "rescale", "mirror", "recolour", "jpeg-q40"])
def test_an_altered_copy_is_verified_against_its_original_and_no_other(originals, alteration, kind):
    settings = FeatureSettings(kind=kind)
    names = list(originals)
    catalogue = [extract(originals[n], settings) for n in names]
    for seed, name in enumerate(("coffee", "chelsea", "astronaut", "rocket")):
        counts = inlier_counts(views(altered(originals[name], alteration, seed), settings), catalogue, SETTINGS)
        own = counts[names.index(name)]
        others = np.delete(counts, names.index(name))
        assert own >= SETTINGS.min_inliers, (name, alteration, counts)
        assert others.max() < SETTINGS.min_inliers, (name, alteration, dict(zip(names, counts, strict=True)))


def test_features_are_capped_compact_and_empty_for_a_blank_image(originals):
    features = extract(originals["astronaut"], FeatureSettings(max_keypoints=100))
    assert len(features) == 100 and features.descriptors.dtype == np.float16
    assert np.allclose(np.linalg.norm(features.descriptors.astype(np.float32), axis=1), 1.0, atol=1e-2)
    assert features.xy.max() <= 320
    blank = extract(originals["coffee"].point(lambda _: 255))
    assert len(blank) == 0
    assert inlier_counts([blank], [features, None]).tolist() == [0, 0]


def test_fusion_lifts_verified_candidates_by_their_inliers():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    inliers = np.array([[2, 30, 0, 60]])   # the second and fourth are verified
    strict = VerifySettings(bonus=2.0, saturation=60)  # every verified one first, in inlier order
    assert np.argsort(-fuse(scores, inliers, strict), axis=1)[0].tolist() == [3, 1, 0, 2]
    # The default: 0.4 at 20 inliers or more; both saturate, so the verified keep their cosine order.
    assert np.argsort(-fuse(scores, inliers, SETTINGS), axis=1)[0].tolist() == [1, 3, 0, 2]
    assert fuse(scores, np.array([[5, 5, 5, 5]]), SETTINGS).tolist() == scores.tolist()  # 5 < 6: none verified
    with pytest.raises(ValueError, match="transform"):
        VerifySettings(transform="affine-ish")
