"""The embedding engine without Spark: vectors equal the model's, errors are records, known content is skipped."""

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.embed.engine import Embedded, EmbeddingEngine, Failed, Known
from lookalike.image.decode import decode, to_tensor


@pytest.mark.slow
def test_engine_vectors_match_a_direct_forward_pass(model, image_set):
    root, expected = image_set
    ids = sorted(expected)
    engine = EmbeddingEngine(model, batch_size=4, io_threads=3)
    results = list(engine.run([str(root / i) for i in ids]))
    assert sorted(r.index for r in results) == list(range(len(ids)))  # each input exactly once

    by_index = {r.index: r for r in results}
    for i, image_id in enumerate(ids):
        r = by_index[i]
        if expected[image_id] == "ok":
            assert isinstance(r, Embedded), (image_id, r)
            data = (root / image_id).read_bytes()
            assert r.content_sha256 == hashlib.sha256(data).hexdigest()
            x = to_tensor(decode(data, model.preprocessing.image_size).image, model.preprocessing)[None]
            with torch.inference_mode():
                direct = model.module(x.contiguous(memory_format=torch.channels_last))[0].numpy()
            np.testing.assert_allclose(r.vector, direct, atol=2e-5)
            assert abs(np.linalg.norm(r.vector) - 1) < 1e-5
        else:
            assert isinstance(r, Failed) and r.kind == expected[image_id], (image_id, r)
    s = engine.stats
    assert s.embedded + s.failed == len(ids) and s.model_s > 0 and s.decode_s > 0


def test_known_content_is_not_decoded_again(model, image_set):
    root, expected = image_set
    ok = [i for i in sorted(expected) if expected[i] == "ok"][:4]
    known = {hashlib.sha256((root / ok[0]).read_bytes()).hexdigest()}
    engine = EmbeddingEngine(model, batch_size=2)
    results = {r.index: r for r in engine.run([str(root / i) for i in ok], known)}
    assert isinstance(results[0], Known)
    assert all(isinstance(results[i], Embedded) for i in (1, 2, 3))
    assert engine.stats.known == 1


def test_missing_and_oversized_inputs_are_read_errors(model, image_set, tmp_path):
    root, _ = image_set
    engine = EmbeddingEngine(model, max_bytes=1000)
    results = {r.index: r for r in engine.run([str(tmp_path / "gone.jpg"), str(root / "unusual/large.jpg"),
                                               str(tmp_path)])}
    assert (results[0].stage, results[0].kind) == ("read", "not_found")
    assert (results[1].stage, results[1].kind) == ("read", "too_large")
    assert results[2].stage == "read"


@pytest.mark.slow
def test_permission_denied_object_is_an_error_row(tmp_path, image_set):
    """A real EACCES: root reads everything, so the engine runs as an unprivileged user when we are root."""
    root, _ = image_set
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((root / "photos/coffee.jpg").read_bytes())
    secret.chmod(0)
    tmp_path.chmod(0o755)
    script = textwrap.dedent(f"""
        from lookalike.embed.engine import EmbeddingEngine
        from lookalike.model.loading import cached_model
        from lookalike.model.spec import ModelSpec
        [r] = EmbeddingEngine(cached_model(ModelSpec(), "cpu")).run([{str(secret)!r}])
        print(r.stage, r.kind)
    """)
    cmd = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": "/tmp"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["read", "permission_denied"]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_size_does_not_change_vectors(model, image_set, batch_size):
    root, expected = image_set
    ok = [str(root / i) for i in sorted(expected) if expected[i] == "ok"][:5]
    reference = {r.index: r.vector for r in EmbeddingEngine(model, batch_size=5).run(ok)}
    results = list(EmbeddingEngine(model, batch_size=batch_size).run(ok))
    assert len(ok) == 5 and sorted(r.index for r in results) == list(range(5)) == sorted(reference)
    for r in results:
        assert isinstance(r, Embedded)
        np.testing.assert_allclose(r.vector, reference[r.index], atol=1e-5)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU on this machine"))])
def test_query_images_are_embedded_by_the_catalogue_forward_pass(image_set, device):
    """A query worker embeds an uploaded image exactly as the embed job embedded the same file (the same decode,
    preprocessing and forward pass: fp16 autocast on a GPU for both, so one fingerprint means one precision)."""
    from lookalike.model.loading import cached_model
    from lookalike.model.spec import ModelSpec
    from lookalike.retrieval.embedder import QueryEmbedder
    root, expected = image_set
    ok = [str(root / i) for i in sorted(expected) if expected[i] == "ok"][:6]
    model = cached_model(ModelSpec(), device)
    catalogue = {r.index: r.vector for r in EmbeddingEngine(model, device=torch.device(device)).run(ok)}
    images = [Path(p).read_bytes() for p in ok]
    queries = QueryEmbedder(model).embed(images)
    assert len(catalogue) == len(queries) == 6
    for i, vector in enumerate(queries):
        np.testing.assert_allclose(vector, catalogue[i], atol=1e-5 if device == "cpu" else 2e-3)
    if device == "cuda":  # autocast changes the digits, not the direction
        on_cpu = QueryEmbedder(cached_model(ModelSpec(), "cpu")).embed(images)
        assert (np.sum(on_cpu * queries, axis=1) > 0.999).all()
