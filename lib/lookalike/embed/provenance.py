"""Which model made a version's vectors, and whether a model or other vectors fit them: the one answer used by
the embed task, the query worker, join, evaluate and the reindex."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.core.errors import InputError
from lookalike.core.manifest import IndexManifest, ManifestError
from lookalike.core.store import Store
from lookalike.embed.versions import EmbeddingsVersion, open_version
from lookalike.model.loading import LoadedModel, cached_model
from lookalike.model.spec import ModelSpec


class ModelMismatch(InputError):
    """Vectors of two embedding spaces met (a model other than the version's, or two versions of different
    models): their scores would mean nothing. The message names both and what to do."""


@dataclass(frozen=True)
class Provenance:
    """The embedding space of a version's vectors: always its fingerprint id and dimension; the model spec when
    the version recorded it (vectors made outside lookalike have none)."""

    describe: str          # "index logos/20261201T...", "embeddings efficientnet_lite0-.../run"
    fingerprint_id: str
    dim: int
    spec: ModelSpec | None

    def require_spec(self, fix: str) -> ModelSpec:
        if self.spec is None:
            raise ModelMismatch(f"{self.describe} does not record the model of its vectors: {fix}")
        return self.spec

    def check_model(self, model_fingerprint_id: str, fix: str, user: str = "the model at hand") -> None:
        """A model embeds into this space only if it makes this fingerprint (same weights, input, pooling...)."""
        if model_fingerprint_id != self.fingerprint_id:
            raise ModelMismatch(f"{self.describe} holds vectors of model {self.fingerprint_id}, but {user} makes "
                                f"{model_fingerprint_id}: {fix}")

    def check_vectors(self, other: Provenance, fix: str) -> None:
        """Vectors of `other` may be searched against these only in the same space."""
        if other.fingerprint_id != self.fingerprint_id or other.dim != self.dim:
            raise ModelMismatch(f"{other.describe} was embedded by {other.fingerprint_id} (dim {other.dim}) but "
                                f"{self.describe} holds vectors of {self.fingerprint_id} (dim {self.dim}): scores "
                                f"across models mean nothing. {fix}")

    def load_model(self, device: str, fix: str) -> LoadedModel:
        """The recorded model, loaded (once per process), checked to still make this space."""
        model = cached_model(self.require_spec(fix), device)
        self.check_model(model.fingerprint_id, "its weights changed since; use the weights it was made with")
        return model


def of_embeddings(version: EmbeddingsVersion) -> Provenance:
    return Provenance(f"embeddings {version.layout.prefix}", version.layout.fingerprint_id, version.dim,
                      version.model_spec())


def of_index(store: Store, manifest: IndexManifest) -> Provenance:
    """From an index version's manifest, or (versions built before it recorded the model) from the manifest of
    the embeddings it was built from."""
    spec = None
    if manifest.recorded_model is not None:
        spec = ModelSpec.from_recorded(manifest.recorded_model, store.options, store.child_url())
    elif manifest.source_run_id is not None:
        try:
            spec = open_version(store, manifest.fingerprint_id, manifest.source_run_id).model_spec()
        except (ManifestError, FileNotFoundError):
            spec = None  # the source was deleted or made outside lookalike: the index still serves by vector
    return Provenance(f"index {manifest.name}/{manifest.version}", manifest.fingerprint_id, manifest.dim, spec)
