"""Vector stores: one small contract (`VectorStore`) with interchangeable backends.

Backends are imported only when opened, so ``import audiosim.stores`` does not load faiss.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from audiosim.errors import StoreError
from audiosim.stores.base import UnknownIdError, VectorStore

__all__ = ["BACKENDS", "UnknownIdError", "VectorStore", "open_store"]

# backend name -> "module:class"; the class takes (path, name, dim, **options).
BACKENDS: dict[str, str] = {
    "faiss": "audiosim.stores.faiss_store:FaissStore",
}


def open_store(backend: str, *, path: Path, name: str, dim: int, **options: object) -> VectorStore:
    """Open (or create) the store ``name`` of ``backend`` under the folder ``path``.

    `StoreError` for an unknown backend or an option the backend does not take.
    """
    target = BACKENDS.get(backend)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise StoreError(f"unknown vector store backend {backend!r}; known backends: {known}")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        inspect.signature(cls).bind(Path(path), name, dim, **options)
    except TypeError as exc:
        raise StoreError(f"bad options for the {backend} vector store: {exc}") from None
    return cls(Path(path), name, dim, **options)
