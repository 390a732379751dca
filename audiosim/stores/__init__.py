"""Vector stores: one small contract (`VectorStore`) with interchangeable backends.

Backends are imported only when opened, so ``import audiosim.stores`` loads none of them; a backend whose
optional dependencies are missing says which extra to install.

A *store spec* names a backend and where it keeps its vectors, as a user types it after ``--store``:

=============================  ==========================================================================
``faiss``                      Faiss files in the library folder (the default)
``annoy``                      Annoy files in the library folder, memory-mapped
``milvus:///abs/path/vec.db``  Milvus Lite: a local file, no server (``milvus://rel/path.db`` is relative)
``http://host:19530``          a Milvus server or cluster (``https://`` too)
``postgresql://user@host/db``  PostgreSQL with the pgvector extension
=============================  ==========================================================================

Milvus and PostgreSQL specs take ``?prefix=NAME`` to name the collections/tables (default ``audiosim``:
``audiosim_segments``, ``audiosim_files``), so several libraries can share one server.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from audiosim.errors import StoreError
from audiosim.stores.base import UnknownIdError, VectorStore, redact_url

__all__ = ["BACKENDS", "StoreSpec", "UnknownIdError", "VectorStore", "open_store", "parse_store_spec"]

# backend name -> "module:class"; the class takes (path, name, dim, **options).
BACKENDS: dict[str, str] = {
    "faiss": "audiosim.stores.faiss_store:FaissStore",
    "annoy": "audiosim.stores.annoy_store:AnnoyStore",
    "milvus": "audiosim.stores.milvus_store:MilvusStore",
    "pgvector": "audiosim.stores.pgvector_store:PgvectorStore",
}
REMOTE_BACKENDS = frozenset({"milvus", "pgvector"})  # their vectors live outside the library folder
DEFAULT_PREFIX = "audiosim"


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """A parsed ``--store`` value: the backend and the options its class takes."""

    backend: str
    options: dict = dataclasses.field(default_factory=dict)
    text: str = "faiss"  # normalised, as remembered by the library

    @property
    def location(self) -> str:
        """Where the vectors are, for ``stats`` (without a password)."""
        if self.backend == "milvus":
            return redact_url(self.options["uri"])
        if self.backend == "pgvector":
            return redact_url(self.options["url"])
        return "library folder"


def parse_store_spec(spec: str | None) -> StoreSpec:
    """Parse a store spec (see the module docstring); `StoreError` naming the accepted forms otherwise."""
    text = (spec or "faiss").strip()
    if text in ("faiss", "annoy"):
        return StoreSpec(text, {}, text)
    parts = urlsplit(text)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", DEFAULT_PREFIX)
    if not prefix.replace("_", "").isalnum() or not prefix[0].isalpha():
        raise StoreError(f"bad prefix {prefix!r} in the store spec {redact_url(text)}: use letters, digits and _")
    rest = urlunsplit(parts._replace(query=urlencode(query)))
    if parts.scheme == "milvus":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise StoreError(f"store spec {text!r} names no file: use milvus:///path/to/vectors.db")
        uri = os.path.abspath(os.path.expanduser(path))
        normal = f"milvus://{uri}" + (f"?prefix={prefix}" if prefix != DEFAULT_PREFIX else "")
        return StoreSpec("milvus", {"uri": uri, "prefix": prefix}, normal)
    if parts.scheme in ("http", "https") and parts.netloc:
        return StoreSpec("milvus", {"uri": rest, "prefix": prefix}, text)
    if parts.scheme.split("+")[0] in ("postgresql", "postgres") and (parts.netloc or parts.query):
        url = urlunsplit(urlsplit(rest)._replace(scheme="postgresql"))
        return StoreSpec("pgvector", {"url": url, "prefix": prefix}, text)
    raise StoreError(
        f"unknown vector store {redact_url(text)!r}: use faiss, annoy, milvus:///path/vectors.db, "
        "http://milvus-host:19530 or postgresql://user@host/db")


def drop_remote_store(spec: StoreSpec, name: str) -> None:
    """Delete the table/collection of store ``name`` on a server, whatever it holds (another dimension too)."""
    if spec.backend == "pgvector":
        from audiosim.stores.pgvector_store import drop_table

        drop_table(name, **spec.options)
    elif spec.backend == "milvus":
        from audiosim.stores.milvus_store import drop_collection

        drop_collection(name, **spec.options)
    else:
        raise StoreError(f"the {spec.backend} store is not on a server")


def open_store(backend: str, *, path: Path, name: str, dim: int, **options: object) -> VectorStore:
    """Open (or create) the store ``name`` of ``backend`` under the folder ``path``.

    `StoreError` for an unknown backend, a missing extra, or an option the backend does not take.
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
