"""Where every artefact lives in the store: the one module that spells store keys, and the one parser of the
references users write for them (`FINGERPRINT[/RUN_ID]`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lookalike.core.errors import ConfigError
from lookalike.core.store import Store

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LATEST = "LATEST"


def check_id(value: str, what: str) -> str:
    """A name that becomes one segment of a store key (an index, a version, a run, a fingerprint), wherever it
    comes from (a user, a LATEST pointer, a manifest): never a path that leads elsewhere in the store."""
    if not isinstance(value, str) or not RUN_ID_PATTERN.match(value):
        raise ConfigError(f"{what} {value!r}: use letters, digits, '.', '_' and '-' (at most 128), starting with a "
                          "letter or digit")
    return value

# The files of an index version (and of an exported bundle, which is a version in a store of its own).
INDEX_FILE = "index.faiss"
IVFDATA_FILE = "index.ivfdata"      # on-disk inverted lists of a large merged index
TRAINED_FILE = "trained.faiss"      # the empty trained index, kept for incremental updates
IDS_FILE = "ids.parquet"
VECTORS_FILE = "vectors.f16.npy"    # the vectors re-scoring reads
INDEX_MANIFEST = "manifest.json"
RUN_MANIFEST = "_MANIFEST.json"     # embeddings runs and joins


def part_name(task: int) -> str:
    """Zero-padded, so a listing sorts in task order."""
    return f"part-{task:05d}.parquet"


TASKS_FOLDER = "_tasks"


def marker_name(task: int) -> str:
    return f"{TASKS_FOLDER}/task-{task:05d}.json"


class _Folder:
    """A folder of the store; its keys are named relative to its prefix."""

    @property
    def prefix(self) -> str:
        raise NotImplementedError

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


class _TaskRun(_Folder):
    """A run of tasks that commit one part and one marker each, then a manifest written last."""

    @property
    def manifest(self) -> str:
        return self.key(RUN_MANIFEST)

    def part(self, task: int) -> str:
        return self.key(part_name(task))

    def marker(self, task: int) -> str:
        return self.key(marker_name(task))

    @property
    def markers(self) -> str:
        """The folder of the tasks' commit markers."""
        return self.key(TASKS_FOLDER)


EMBEDDINGS_PREFIX = "embeddings"
TRAINING_DATA_PREFIX = "training-data"
TRAINING_PREFIX = "training"


@dataclass(frozen=True)
class TrainingDataLayout(_TaskRun):
    """training-data/<name>/{part-*.parquet, _MANIFEST.json}: rendered images with their group and split."""

    store: Store
    name: str

    @property
    def prefix(self) -> str:
        return f"{TRAINING_DATA_PREFIX}/{self.name}"


@dataclass(frozen=True)
class TrainingLayout(_Folder):
    """training/<run_id>/{checkpoints/step-*.pt, checkpoints/LATEST, best.pt, best.words.pt (words runs),
    history.json, _MANIFEST.json}"""

    store: Store
    run_id: str

    @property
    def prefix(self) -> str:
        return f"{TRAINING_PREFIX}/{self.run_id}"

    @property
    def manifest(self) -> str:
        return self.key(RUN_MANIFEST)

    def checkpoint(self, step: int) -> str:
        return self.key(f"checkpoints/step-{step:08d}.pt")

    @property
    def latest_checkpoint(self) -> str:
        return self.key(f"checkpoints/{LATEST}")

    @property
    def best(self) -> str:
        return self.key("best.pt")

    @property
    def best_words(self) -> str:
        """The word-space map of a words run's best weights, beside them (model/devise.py's format)."""
        return self.key("best.words.pt")

    @property
    def history(self) -> str:
        return self.key("history.json")

    @property
    def progress(self) -> str:
        """The step rank 0 reached, written every few seconds: how the driver shows a run's progress."""
        return self.key("progress.json")


def embeddings_latest_key(fingerprint_id: str, namespace: str = EMBEDDINGS_PREFIX) -> str:
    return f"{namespace}/{fingerprint_id}/{LATEST}"


def check_namespace(namespace: str) -> str:
    """A folder of embeddings versions: `embeddings` (the catalogues'), or one a job keeps to itself (a join's
    query images live under the join's run, so that no catalogue's LATEST ever moves for them)."""
    parts = namespace.split("/")
    if not namespace or namespace.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"embeddings namespace {namespace!r}: a relative store key such as 'embeddings'")
    return namespace


@dataclass(frozen=True)
class EmbeddingsLayout(_TaskRun):
    """<namespace>/<fingerprint>/<run_id>/{part-*.parquet, errors/, features/, _tasks/, _plan.parquet,
    _plan.json, _carry.parquet, _failed.json, _MANIFEST.json}; the namespace is `embeddings` for every catalogue."""

    store: Store
    fingerprint_id: str
    run_id: str
    namespace: str = EMBEDDINGS_PREFIX

    def __post_init__(self) -> None:
        check_id(self.fingerprint_id, "model fingerprint")
        check_id(self.run_id, "run id")
        check_namespace(self.namespace)

    @property
    def prefix(self) -> str:
        return f"{self.namespace}/{self.fingerprint_id}/{self.run_id}"

    @property
    def plan(self) -> str:
        return self.key("_plan.parquet")

    @property
    def plan_info(self) -> str:
        """Written last when planning, so a plan is whole once this exists."""
        return self.key("_plan.json")

    @property
    def carry(self) -> str:
        return self.key("_carry.parquet")

    @property
    def failed(self) -> str:
        """Written when a run failed its error rate: the tasks a rerun re-plans (embed.repair)."""
        return self.key("_failed.json")

    @property
    def errors(self) -> str:
        return self.key("errors")

    def errors_part(self, task: int) -> str:
        return self.key(f"errors/{part_name(task)}")

    def features_part(self, task: int) -> str:
        """Local features of the rows of part(task), row for row (features/part-*.parquet)."""
        return self.key(f"{FEATURES_FOLDER}/{part_name(task)}")


FEATURES_FOLDER = "features"


def features_part_of(part_key: str) -> str:
    """The features part row-aligned with an embeddings part (which may belong to an earlier run)."""
    folder, name = part_key.rsplit("/", 1)
    return f"{folder}/{FEATURES_FOLDER}/{name}"


@dataclass(frozen=True)
class EmbeddingsRef:
    """`FINGERPRINT` (its LATEST) or `FINGERPRINT/RUN_ID`, as users write an embeddings version."""

    fingerprint_id: str
    run_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> EmbeddingsRef:
        fingerprint_id, _, run_id = text.strip().strip("/").partition("/")
        if not fingerprint_id or "/" in run_id:
            raise ConfigError(f"embeddings {text!r}: write FINGERPRINT or FINGERPRINT/RUN_ID")
        if run_id and not RUN_ID_PATTERN.match(run_id):
            raise ConfigError(f"embeddings {text!r}: {run_id!r} is not a run id")
        return cls(fingerprint_id, run_id or None)

    def __str__(self) -> str:
        return f"{self.fingerprint_id}/{self.run_id}" if self.run_id else self.fingerprint_id


def index_prefix(name: str) -> str:
    return f"indexes/{check_id(name, 'index name')}"


def index_latest_key(name: str) -> str:
    return f"{index_prefix(name)}/{LATEST}"


def lease_key(name: str) -> str:
    """The lease of the nightly run of one index."""
    return f"{index_prefix(name)}/_lease.json"


@dataclass(frozen=True)
class IndexLayout(_Folder):
    """indexes/<name>/<version>/{index.faiss, [index.ivfdata], trained.faiss, ids.parquet, vectors.f16.npy,
    manifest.json}; build scratch under indexes/<name>/_build/<version>/."""

    store: Store
    name: str
    version: str

    def __post_init__(self) -> None:
        check_id(self.name, "index name")
        check_id(self.version, f"version of index {self.name!r}")

    @property
    def prefix(self) -> str:
        return f"{index_prefix(self.name)}/{self.version}"

    @property
    def manifest(self) -> str:
        return self.key(INDEX_MANIFEST)

    @property
    def scratch_prefix(self) -> str:
        return f"{index_prefix(self.name)}/_build/{self.version}"

    def scratch(self, filename: str) -> str:
        return f"{self.scratch_prefix}/{filename}"

    # The build's scratch files: one training sample and one partial index per embeddings part.
    def sample(self, part: int) -> str:
        return self.scratch(f"sample-{part:05d}.npy")

    def partial(self, part: int) -> str:
        return self.scratch(f"partial-{part:05d}.faiss")

    @property
    def trained(self) -> str:
        return self.scratch(TRAINED_FILE)

    @property
    def queries(self) -> str:
        return self.scratch("queries.npy")


@dataclass(frozen=True)
class JoinLayout(_TaskRun):
    """joins/<run_id>/{part-*.parquet, _tasks/, _plan.json, clusters.parquet, _MANIFEST.json, queries/}"""

    store: Store
    run_id: str

    def __post_init__(self) -> None:
        check_id(self.run_id, "join run id")

    @property
    def prefix(self) -> str:
        return f"joins/{self.run_id}"

    @property
    def queries_namespace(self) -> str:
        """Where the join's query images are embedded (queries/<fingerprint>/<run_id>/): the join's own, never a
        catalogue's version nor the previous version of a catalogue's next run."""
        return self.key("queries")

    @property
    def plan(self) -> str:
        return self.key("_plan.json")

    @property
    def clusters(self) -> str:
        return self.key("clusters.parquet")


@dataclass(frozen=True)
class ReindexLayout:
    """reindex/<name>/<run_id>/{report.json, summary.txt, whitening-sample.parquet}; reindex/<name>/LAST.json:
    the newest report."""

    store: Store
    name: str

    @property
    def prefix(self) -> str:
        return f"reindex/{self.name}"

    def report(self, run_id: str) -> str:
        return f"{self.prefix}/{run_id}/report.json"

    def summary(self, run_id: str) -> str:
        return f"{self.prefix}/{run_id}/summary.txt"

    def whitening_sample(self, run_id: str) -> str:
        return f"{self.prefix}/{run_id}/whitening-sample.parquet"

    @property
    def last(self) -> str:
        return f"{self.prefix}/LAST.json"

    @property
    def lease(self) -> str:
        return lease_key(self.name)


WHITENING_PREFIX = "whitening"  # STORE/whitening/<fingerprint>-<dim>d-<sha12>.npz


def whitening_stem(fingerprint_id: str, dim: int) -> str:
    """How the whitenings learned for one model and output size start their names (several may exist)."""
    return f"{fingerprint_id}-{dim}d-"


def whitening_key(fingerprint_id: str, dim: int, sha12: str) -> str:
    return f"{WHITENING_PREFIX}/{whitening_stem(fingerprint_id, dim)}{sha12}.npz"
