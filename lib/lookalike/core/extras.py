"""The optional parts of lookalike and what each needs installed (the extras of pyproject.toml): a role that lacks
one gets a one-line message naming the extra to install, not an ImportError from deep inside."""

from __future__ import annotations

import importlib.util
import sys

from lookalike.core.errors import ConfigError

# extra → the modules it provides (by import name).
EXTRAS = {
    "spark": ("pyspark",),
    "serve": ("fastapi", "uvicorn", "multipart", "prometheus_client"),
    "words": ("sentence_transformers",),
    "train": ("pyspark", "pytorch_metric_learning"),
    "report": ("matplotlib",),
}


def require(extra: str, what: str) -> None:
    """Raise ConfigError saying what to install when a module of `extra` is missing."""
    missing = [m for m in EXTRAS[extra] if not _installed(m)]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}, which this environment lacks: "
                          f"pip install 'lookalike[{extra}]'")


def _installed(module: str) -> bool:
    if module in sys.modules:  # None there means an import of it is blocked
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
