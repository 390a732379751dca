"""The vector-store contract every backend (Faiss, Milvus, pgvector, Annoy...) fulfils.

The metadata database is the source of truth. A store only maps 64-bit ids (the database's segment ids,
never reused) to float32 vectors and answers nearest-neighbour queries over them, so it can always be
rebuilt from the database. One writer thread adds and removes; reader threads may search and get at the
same time, so every backend guards its state with a lock.

The helpers at the bottom check and normalise arrays the same way for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from audiosim.errors import StoreError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11


class UnknownIdError(StoreError, KeyError):
    """``get`` was asked for ids the store does not hold; ``ids`` lists them (int64)."""

    def __init__(self, message: str, *, ids: np.ndarray) -> None:
        super().__init__(message)
        self.ids = ids

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class VectorStore(ABC):
    """Nearest-neighbour index of float32 vectors keyed by int64 ids.

    Distances are Euclidean (not squared). Ids are non-negative; ``-1`` pads results.
    """

    dim: int

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors; an id already present is replaced.

        Parameters
        ----------
        ids : np.ndarray [shape=(n,), dtype=int64]
        vectors : np.ndarray [shape=(n, dim), dtype=float32]
        """

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; unknown ids are ignored. Returns how many were present."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, *, allow_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors of each query, nearest first.

        Parameters
        ----------
        queries : np.ndarray [shape=(m, dim), dtype=float32]
        k : int
        allow_ids : np.ndarray [shape=(a,), dtype=int64] or None
            Only these ids may be returned (ids not in the store are ignored).

        Returns
        -------
        distances : np.ndarray [shape=(m, k), dtype=float32]
            Euclidean distances, ascending; ``inf`` where there are fewer than ``k`` candidates.
        ids : np.ndarray [shape=(m, k), dtype=int64]
            ``-1`` where there are fewer than ``k`` candidates.
        """

    def neighbour_graph(
        self, ids: np.ndarray, k: int, *, vectors: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest of each of ``ids`` among ``ids`` (itself included), for a map's neighbour graph.

        ``ids`` are sorted, unique and all in the store; ``vectors`` (their vectors, in that order) may be
        given to spare reading them again. ``progress(done, total)`` is called as rows are done and may
        raise to cancel. Returns ``(distances, ids)`` shaped ``(len(ids), k)`` like `search`. This default
        searches the store in chunks restricted to ``ids``; a backend may build the graph in one batch.
        """
        ids = as_ids(ids)
        vectors = self.get(ids) if vectors is None else vectors
        n = len(ids)
        parts = []
        for i in range(0, n, NEIGHBOUR_GRAPH_CHUNK):
            parts.append(self.search(vectors[i:i + NEIGHBOUR_GRAPH_CHUNK], k, allow_ids=ids))
            if progress is not None:
                progress(min(n, i + NEIGHBOUR_GRAPH_CHUNK), n)
        if not parts:
            return empty_result(0, k)
        return np.concatenate([d for d, _ in parts]), np.concatenate([f for _, f in parts])

    @abstractmethod
    def get(self, ids: np.ndarray) -> np.ndarray:
        """Vectors of ``ids`` in the given order, shape ``(n, dim)``; `UnknownIdError` if any is missing."""

    @abstractmethod
    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean array, one entry per id: is it in the store?"""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """All ids in the store (int64, ascending)."""

    @abstractmethod
    def count(self) -> int:
        """How many vectors the store holds."""

    @abstractmethod
    def save(self) -> None:
        """Make the current state durable, atomically: a crash leaves the old or the new state."""

    @abstractmethod
    def close(self) -> None:
        """Release resources. Does not save: call `save` at commit points."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One line for ``audiosim stats``, e.g. ``"faiss flat (1234 vectors)"``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- argument checks shared by the backends ---------------------------------------------------------


def as_ids(ids: object, *, allow_negative: bool = False) -> np.ndarray:
    """``ids`` as a contiguous int64 vector.

    Stored ids are non-negative (``-1`` pads results), so `StoreError` on a negative id unless
    ``allow_negative`` (lookups, where a negative id is simply not present).
    """
    arr = np.ascontiguousarray(np.asarray(ids).reshape(-1))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"vector ids must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if not allow_negative and arr.size and arr.min() < 0:
        raise StoreError("vector ids must be non-negative")
    return arr


def as_vectors(vectors: object, dim: int, *, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` array of finite values."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise StoreError(f"{what} must have shape (n, {dim}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise StoreError(f"{what} contain NaN or infinite values")
    return arr


def last_occurrence(ids: np.ndarray) -> np.ndarray:
    """Row indices that keep the last occurrence of each id (a batch that repeats an id: the last wins)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_in_reversed)


def isin_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``values`` are in the ascending array ``sorted_ids``."""
    if len(sorted_ids) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[pos] == values


class SortedIdsMixin:
    """``count``, ``ids`` and ``contains`` for a store that keeps its ids as an ascending array ``_ids``
    guarded by ``_lock`` (Faiss and Annoy)."""

    _ids: np.ndarray
    _lock: object

    def count(self) -> int:
        with self._lock:
            return len(self._ids)

    def ids(self) -> np.ndarray:
        with self._lock:
            return self._ids.copy()

    def contains(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        with self._lock:
            return isin_sorted(ids, self._ids)


def add_args(ids: object, vectors: object, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The checked arguments of :meth:`VectorStore.add`: int64 ids, float32 (n, dim) vectors, one each."""
    ids = as_ids(ids)
    vectors = as_vectors(vectors, dim)
    if len(ids) != len(vectors):
        raise StoreError(f"{len(ids)} ids for {len(vectors)} vectors")
    return ids, vectors


def search_args(queries: object, k: object, dim: int) -> tuple[np.ndarray, int]:
    """The checked arguments of :meth:`VectorStore.search`: queries as float32 (n, dim), k >= 0."""
    queries = as_vectors(queries, dim, what="queries")
    k = int(k)
    if k < 0:
        raise StoreError(f"k must be >= 0, got {k}")
    return queries, k


def empty_result(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows of ``k`` padding results."""
    return np.full((m, k), np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)


def exact_search(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest among ``(ids, vectors)`` by brute force, padded like `VectorStore.search`.

    For the backends that fall back to it: small filters, vectors added since an index was built.
    Candidates are chosen with the fast ``|q|^2 - 2 q.v + |v|^2`` form, then their distances are computed
    again as ``|q - v|`` (the fast form loses precision far from the origin).
    """
    m = len(queries)
    distances_k, ids_k = empty_result(m, k)
    kk = min(k, len(ids))
    if kk == 0 or m == 0:
        return distances_k, ids_k
    norms = (vectors * vectors).sum(1)
    step = max(1, EXACT_CHUNK_ELEMENTS // max(len(ids), kk * vectors.shape[1]))  # bounded memory
    for start in range(0, m, step):
        q = np.ascontiguousarray(queries[start:start + step], dtype=np.float32)
        squared = norms[None, :] - 2 * (q @ vectors.T)
        rows = np.argpartition(squared, kk - 1, axis=1)[:, :kk] if kk < len(ids) else \
            np.tile(np.arange(kk), (len(q), 1))
        exact = np.sqrt(((vectors[rows] - q[:, None, :]) ** 2).sum(2))
        order = np.argsort(exact, axis=1, kind="stable")
        distances_k[start:start + len(q), :kk] = np.take_along_axis(exact, order, axis=1)
        ids_k[start:start + len(q), :kk] = ids[np.take_along_axis(rows, order, axis=1)]
    return distances_k, ids_k


NEIGHBOUR_GRAPH_CHUNK = 4096  # rows per search when a neighbour graph is built by searching the store
EXACT_CHUNK_ELEMENTS = 8_000_000  # query x vector distances held at once by exact_search (32 MB)


def merge_results(
    parts: list[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Combine per-query candidate lists (each padded with ``inf``/``-1``) into the ``k`` nearest, no duplicates."""
    distances = np.concatenate([d for d, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    out_d, out_i = empty_result(len(distances), k)
    for row in range(len(distances)):
        valid = ids[row] >= 0
        d, i = distances[row][valid], ids[row][valid]
        order = np.argsort(d, kind="stable")
        _, first = np.unique(i[order], return_index=True)
        keep = order[np.sort(first)][:k]
        out_d[row, : len(keep)], out_i[row, : len(keep)] = d[keep], i[keep]
    return out_d, out_i


def require_extra(module: str, *, backend: str, extra: str) -> object:
    """Import ``module`` for ``backend``, or a `StoreError` that names the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise StoreError(
            f"the {backend} vector store needs the {extra!r} extra: pip install 'audiosim[{extra}]' ({exc})"
        ) from None


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and ``stats``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
