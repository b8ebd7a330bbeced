"""A join's text queries: a UTF-8 text file, one query a line, embedded on the driver by the base's word-space text
encoder into one Parquet part of the join's run (the text is the query's id), searched as any query part."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from lookalike.core.errors import ConfigError
from lookalike.core.schemas import embedding_type
from lookalike.core.store import Store, read_url
from lookalike.embed.provenance import Provenance
from lookalike.retrieval.word_queries import WordQueries

TEXT_QUERIES = "queries/texts.parquet"  # under the join's run


def read_text_queries(url: str, options: dict[str, Any]) -> list[str]:
    """The file's non-blank lines, stripped, each once, in their order."""
    try:
        text = read_url(url, options, "read text queries").decode("utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"--query-texts {url}: no such file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"--query-texts {url} is not UTF-8 text ({e}): give one text query a line") from e
    texts = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not texts:
        raise ConfigError(f"--query-texts {url} has no text query: give one a line")
    return texts


def embed_text_queries(store: Store, url: str, base: Provenance, key: str) -> dict[str, Any]:
    """The texts of `url` as word-space vectors of the base's model, written to `key`: what the plan records."""
    texts = read_text_queries(url, store.options)
    model = base.load_model("cpu", "text queries are embedded by the model the base records")
    if model.word_space is None:
        raise ConfigError(f"{base.describe} holds visual vectors: text queries need a base embedded with --space words "
                          "(or conse)")
    vectors = np.ascontiguousarray(WordQueries(model).embed_texts(texts), dtype=np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), type=embedding_type(model.dim))
    nbytes = store.write_parquet(key, pa.table({"image_id": texts, "embedding": embedding}))
    return {"key": key, "rows": len(texts), "bytes": nbytes, "source": url,
            "text_encoder": model.word_space["text_encoder"]}
