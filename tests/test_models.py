"""Backbones load their real weights strictly; pooling heads and fingerprints behave as documented."""

import io

import pytest
import torch
import torchvision
from PIL import Image

from lookalike.dev.imagefactory import photo
from lookalike.image.decode import to_tensor
from lookalike.model.loading import cached_model, load_model
from lookalike.model.pooling import RMAC, GeM, _rmac_regions, make_pooling
from lookalike.model.spec import ModelError, ModelSpec, Preprocessing, fingerprint_id

CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def top_classes(model, name: str, k: int = 3) -> list[str]:
    crop = Preprocessing(resize="crop", mean=(0.5,) * 3, std=(0.5,) * 3)
    x = to_tensor(photo(name, 512), crop)[None]
    with torch.inference_mode():
        # timm's own head: the classifier the weights were trained with
        logits = model.module.backbone(model.module.normalise(x))
    return [CATEGORIES[i] for i in logits[0].topk(k).indices.tolist()]


def test_bundled_lite0_weights_classify_real_photos():
    imagenet = cached_model(ModelSpec(name="efficientnet_lite0"), "cpu")
    assert top_classes(imagenet, "coffee")[0] == "espresso"
    assert top_classes(imagenet, "chelsea")[0] in CAT_CLASSES


def test_embeddings_are_unit_length_float32(model):
    x = torch.stack([to_tensor(photo(n), model.preprocessing) for n in ("coffee", "rocket")])
    with torch.inference_mode():
        v = model.module(x)
    assert v.dtype == torch.float32 and v.shape == (2, 1280)
    assert torch.allclose(v.norm(dim=1), torch.ones(2), atol=1e-5)
    assert float(v[0] @ v[1]) < 0.99  # different photos, different vectors


def test_other_backbone_loads_weights_from_a_store_uri(tmp_path, s3_store):
    import fsspec
    net = torchvision.models.resnet18(weights=None)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    uri = f"{s3_store.url}/weights/resnet18.pth"
    with fsspec.open(uri, "wb", **s3_store.options) as f:
        f.write(buf.getvalue())
    loaded = load_model(ModelSpec(name="resnet18", weights_uri=uri, pooling="rmac",
                                  weights_options=s3_store.options))
    assert loaded.dim == 512
    x = to_tensor(photo("coffee"), loaded.preprocessing)[None]
    with torch.inference_mode():
        ours = loaded.module.backbone.layer4(torch.zeros(1, 256, 7, 7))
        direct = net.eval().layer4(torch.zeros(1, 256, 7, 7))
        assert torch.allclose(ours, direct)  # the very weights we saved, strictly loaded
        assert loaded.module(x).shape == (1, 512)


def test_wrong_weights_and_missing_weights_fail_with_what_to_do(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="do not fit model 'resnet50'"):
        load_model(ModelSpec(name="resnet50", weights_uri=str(path)))
    with pytest.raises(ModelError, match="needs --weights"):
        load_model(ModelSpec(name="resnet50"))
    with pytest.raises(ModelError, match="weights not found"):
        load_model(ModelSpec(name="resnet18", weights_uri=str(tmp_path / "nope.pth")))
    with pytest.raises(ModelError, match="unknown model"):
        ModelSpec(name="alexnet9000")


@pytest.mark.slow
def test_vit_patch_tokens_pool_like_a_feature_map(tmp_path):
    net = torchvision.models.vit_b_16(weights=None)
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": net.state_dict()}, path)  # checkpoints that wrap the state dict load too
    loaded = load_model(ModelSpec(name="vit_b_16", weights_uri=str(path), pooling="gem"))
    assert loaded.dim == 768 and not loaded.channels_last
    # What the vector is, computed from torchvision's own forward: the encoder's output tokens, the class token
    # left out, the 14 × 14 patch tokens pooled by GeM as a 14 × 14 map is, normalised.
    x = to_tensor(photo("coffee"), loaded.preprocessing)[None]
    captured = {}
    net.eval().encoder.register_forward_hook(lambda _m, _i, out: captured.update(tokens=out))
    with torch.inference_mode():
        net((x.float() / 255 - 0.5) / 0.5)  # the preprocessing's mean and std, which the module applies itself
        patches = captured["tokens"][:, 1:]                      # (1, 196, 768): the class token dropped
        assert patches.shape == (1, 196, 768)
        as_map = patches.transpose(1, 2).reshape(1, 768, 14, 14)
        expected = torch.nn.functional.normalize(GeM(p=loaded.module.pooling.p)(as_map), dim=-1)
        ours = loaded.module(x)
        with_class_token = torch.nn.functional.normalize(
            GeM(p=loaded.module.pooling.p)(captured["tokens"].transpose(1, 2)[..., None]), dim=-1)
    assert torch.allclose(ours, expected, atol=1e-4)
    assert not torch.allclose(ours, with_class_token, atol=1e-4)  # the class token is not pooled in


def test_gem_spans_average_to_max():
    x = torch.rand(2, 8, 5, 7) + 0.01
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(-2, -1)), atol=1e-5)
    assert torch.allclose(GeM(p=200.0)(x), x.amax(dim=(-2, -1)), rtol=0.05)
    assert torch.isfinite(GeM(p=3.0)(x - 0.5)).all()  # negatives are clamped, never NaN


def test_rmac_regions_follow_the_reference_grid():
    # Square 7×7 map, L=3: 1 + 4 + 9 regions of sides 7, 4, 3 (the global one is added separately).
    regions = _rmac_regions(7, 7, 3)
    assert [r[2] for r in regions] == [7] + [4] * 4 + [3] * 9
    assert all(t + s <= 7 and left + s <= 7 for t, left, s, _ in regions)
    # A wide map gets extra columns so neighbouring regions overlap ~40%.
    wide = _rmac_regions(7, 14, 3)
    assert len(wide) > len(regions)
    out = RMAC()(torch.rand(2, 16, 7, 7))
    assert out.shape == (2, 16)
    with pytest.raises(ValueError, match="unknown pooling"):
        make_pooling("median")


def test_fingerprint_changes_with_anything_that_changes_the_vectors(model):
    base = model.fingerprint
    assert model.fingerprint_id.startswith("efficientnet_lite0_marks-")
    for key, value in [("pooling", "avg"), ("weights_sha256", "0" * 64), ("dim", 640)]:
        assert fingerprint_id({**base, key: value}) != model.fingerprint_id


def test_multi_scale_sums_the_unit_descriptors_of_each_scale(model):
    """scales=(1, 0.5): the descriptor at the model's input size plus the one at half of it, each L2-normalised,
    normalised again; recorded in the fingerprint (single-scale fingerprints do not name scales at all, so
    stores made before multi-scale keep their ids)."""
    multi = load_model(ModelSpec(scales=[1, 0.5]))  # as a manifest records it: a JSON list
    assert multi.spec.scales == (1.0, 0.5) and "scales" not in model.fingerprint
    assert multi.fingerprint["scales"] == [1.0, 0.5] and multi.fingerprint_id != model.fingerprint_id
    images = torch.stack([to_tensor(photo(n, 300), model.preprocessing) for n in ("chelsea", "rocket")])
    half = torch.nn.functional.interpolate(images.float(), scale_factor=0.5, mode="bilinear", antialias=True)
    module = model.module
    with torch.inference_mode():
        full = module(images)
        small = torch.nn.functional.normalize(module.pooling(module._features(
            module.backbone, (half - module.mean) / module.std)).float(), dim=-1)
        expected = torch.nn.functional.normalize(full + small, dim=-1)
        got = multi.module(images)
    assert torch.allclose(got, expected, atol=1e-4)
    assert 0.8 < float((got * full).sum(dim=1).min()) < 0.9999  # near the single-scale vector, not equal


@pytest.mark.slow
def test_multi_scale_needs_a_backbone_that_takes_other_sizes(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(torchvision.models.vit_b_16(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="needs one input size, drop --scales"):
        load_model(ModelSpec(name="vit_b_16", weights_uri=str(path), scales=(1.0, 0.5)))
    with pytest.raises(ModelError, match="distinct factors"):
        ModelSpec(scales=(1.0, 1.0))


def test_rgba_is_composited_on_white():
    from lookalike.image.decode import to_rgb
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
