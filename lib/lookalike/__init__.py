"""lookalike: content-based image retrieval at catalogue scale.

    import lookalike

    index = lookalike.open_index("store/", "marks")           # a published index, in this process
    for hit in index.search("query.png", k=5):                  # or ids, vectors, texts: search_ids, ...
        print(hit.rank, hit.score, hit.image_id)

    vectors = lookalike.embed_images(["a.png", "b.png"])      # (2, dim) float32, the embed job's vectors

    report = lookalike.reindex(lookalike.ReindexConfig.of("marks/", "store/", "marks", master="in-process"))

    with lookalike.Client("http://worker:8000") as client:     # a query worker or router, over HTTP
        hits = client.search("query.png")

Names are loaded on first use, so `import lookalike` itself costs nothing (executors import the package too).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lookalike._version import __version__

# Public name → the module that defines it.
_EXPORTS = {
    "open_index": "lookalike.api.index", "Index": "lookalike.api.index",
    "embed_images": "lookalike.api.embedding",
    "Client": "lookalike.api.client", "SearchRefused": "lookalike.api.client",
    "reindex": "lookalike.api.jobs", "embed": "lookalike.api.jobs", "build_index": "lookalike.api.jobs",
    "join": "lookalike.api.jobs", "export": "lookalike.api.jobs", "evaluate": "lookalike.api.jobs",
    "ReindexConfig": "lookalike.api.jobs", "EmbedConfig": "lookalike.api.jobs",
    "BuildIndexConfig": "lookalike.api.jobs", "JoinConfig": "lookalike.api.jobs", "ExportConfig": "lookalike.api.jobs",
    "EvaluateConfig": "lookalike.api.jobs",
    "Hit": "lookalike.retrieval.hit", "Explanation": "lookalike.retrieval.explanation",
    "propose_parts": "lookalike.api.parts", "Part": "lookalike.image.part",
    "ModelSpec": "lookalike.model.spec",
    "LookalikeError": "lookalike.core.errors", "ConfigError": "lookalike.core.errors",
    "InputError": "lookalike.core.errors", "JobFailed": "lookalike.core.errors",
}
__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # the same names for type checkers and editors (`X as X`: a re-export)
    from lookalike.api.client import Client as Client
    from lookalike.api.client import SearchRefused as SearchRefused
    from lookalike.api.embedding import embed_images as embed_images
    from lookalike.api.index import Index as Index
    from lookalike.api.index import open_index as open_index
    from lookalike.api.jobs import BuildIndexConfig as BuildIndexConfig
    from lookalike.api.jobs import EmbedConfig as EmbedConfig
    from lookalike.api.jobs import EvaluateConfig as EvaluateConfig
    from lookalike.api.jobs import ExportConfig as ExportConfig
    from lookalike.api.jobs import JoinConfig as JoinConfig
    from lookalike.api.jobs import ReindexConfig as ReindexConfig
    from lookalike.api.jobs import build_index as build_index
    from lookalike.api.jobs import embed as embed
    from lookalike.api.jobs import evaluate as evaluate
    from lookalike.api.jobs import export as export
    from lookalike.api.jobs import join as join
    from lookalike.api.jobs import reindex as reindex
    from lookalike.api.parts import propose_parts as propose_parts
    from lookalike.core.errors import ConfigError as ConfigError
    from lookalike.core.errors import InputError as InputError
    from lookalike.core.errors import JobFailed as JobFailed
    from lookalike.core.errors import LookalikeError as LookalikeError
    from lookalike.image.part import Part as Part
    from lookalike.model.spec import ModelSpec as ModelSpec
    from lookalike.retrieval.explanation import Explanation as Explanation
    from lookalike.retrieval.hit import Hit as Hit


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
