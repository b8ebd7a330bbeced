"""Keyword arguments of the Python API renamed in a release, accepted for one more with a DeprecationWarning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from lookalike.core.manifest import RENAMED_SEARCH_PARAMS

F = TypeVar("F", bound=Callable[..., Any])

def accepts_renamed(fn: F) -> F:
    """`fn` also takes the old names of its keywords: each says to use the new one; both at once is an error."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for old, new in RENAMED_SEARCH_PARAMS.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{old} is the deprecated name of {new}: give {new} alone")
                warnings.warn(f"{fn.__qualname__}: {old}= is deprecated, use {new}=", DeprecationWarning,
                              stacklevel=2)
                kwargs[new] = kwargs.pop(old)
        return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
