"""Where a host keeps its local copies of index versions (query workers, `lookalike search`, join executors): a
version's files are copied there once, checked, and memory-mapped from there."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LOOKALIKE_CACHE_DIR"


def default_cache_dir() -> str:
    """$LOOKALIKE_CACHE_DIR, else ~/.cache/lookalike (a version can take gigabytes: point it at a large disk)."""
    return os.environ.get(CACHE_ENV) or os.path.join(Path.home(), ".cache", "lookalike")
