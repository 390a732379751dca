"""Vectors in Annoy: a forest of random-projection trees, memory-mapped for search.

Annoy cannot add to or remove from an index once it is built, so the store keeps two things:

* every vector, in ``<name>.g<generation>.vectors.npy`` / ``.ids.npy`` (the source of truth, rewritten
  atomically at each save), and
* an Annoy index ``<name>.i<build>.annoy`` built over the vectors as they were at some save, with
  ``<name>.g<generation>.items.npy`` mapping each of its items to an id, or ``-1`` once that id was
  removed or replaced ("stale").

A search asks the Annoy index and also searches the vectors added since the build ("pending") exactly,
skipping stale items, so adds and removes are visible at once. When pending + stale exceed
`REBUILD_FRACTION` of the store (and `REBUILD_MIN` vectors), ``save`` builds a new index. The user never
sees the difference, only the cost, which a small store does not pay at all: below `REBUILD_MIN`
vectors everything is searched exactly.

``<name>.annoy.json`` (the manifest) names the current files; it is replaced last, by an atomic rename, so
a crash leaves the old or the new state. Files it does not name are left-overs and deleted at the next save.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import numpy as np

from audiosim.errors import StoreDimensionError, StoreError
from audiosim.stores.base import (
    add_args,
    SortedIdsMixin,
    isin_sorted,
    as_ids,
    empty_result,
    exact_search,
    last_occurrence,
    merge_results,
    require_extra,
    search_args,
    UnknownIdError,
    VectorStore,
)

annoy = require_extra("annoy", backend="annoy", extra="annoy")

FORMAT_VERSION = 1
N_TREES = 32  # with SEARCH_K_PER_RESULT: recall@50 1.0 on 100k clustered 59-d vectors, ~2 ms a query
SEARCH_K_PER_RESULT = 200  # Annoy search_k = this * wanted results (its default, n_trees * n, is too few)
REBUILD_MIN = 2_000  # fewer vectors than this (pending + stale) are searched exactly, never indexed
REBUILD_FRACTION = 0.1
EXACT_SUBSET_MAX = 50_000  # filters this small (or <= 10% of the store) are searched exactly
EXACT_SUBSET_FRACTION = 0.1

_DAMAGED = "vector store file {path} is damaged ({reason}); run `audiosim verify --repair` to rebuild it"


class AnnoyStore(SortedIdsMixin, VectorStore):
    """See the module docstring. ``path``/``name``/``dim`` as for `FaissStore`."""

    def __init__(self, path: Path, name: str, dim: int, *, n_trees: int = N_TREES) -> None:
        if int(dim) < 1:
            raise StoreError(f"vector dimension must be positive, got {dim}")
        self.dim, self.name, self.n_trees = int(dim), name, int(n_trees)
        self.folder = Path(path)
        self.manifest_path = self.folder / f"{name}.annoy.json"
        self._lock = threading.RLock()  # guards the swap of the arrays below; they are never mutated
        self._write_lock = threading.Lock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the vector store folder {self.folder}: {exc}") from exc
        self._ids = np.empty(0, np.int64)  # sorted
        self._vectors = np.empty((0, self.dim), np.float32)  # row i is the vector of _ids[i]
        self._indexed = np.empty(0, bool)  # row i's vector is a live item of the Annoy index
        self._items = np.empty(0, np.int64)  # Annoy item -> id, -1 when stale
        self._index = None
        self._index_file: str | None = None
        self._generation = 0
        self._closed = False
        self._dirty = not self.manifest_path.exists()
        if self.manifest_path.exists():
            self._load()
        if self._stale_count() > self._rebuild_threshold():
            self._rebuild()  # e.g. the index file was lost: in memory now, on disk at the next save

    # --- reading ------------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        with self._lock:
            n, built = len(self._ids), int(self._indexed.sum())
        return f"annoy trees={self.n_trees} ({n} vectors, {n - built} searched exactly until the next rebuild)"

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        with self._lock:
            self._check_open()
            stored_ids, vectors = self._ids, self._vectors
        rows = np.searchsorted(stored_ids, ids)
        present = (rows < len(stored_ids)) & (stored_ids[np.minimum(rows, len(stored_ids) - 1)] == ids) \
            if len(stored_ids) else np.zeros(len(ids), bool)
        if not present.all():
            missing = np.unique(ids[~present])
            shown = ", ".join(map(str, missing[:5].tolist())) + (", ..." if len(missing) > 5 else "")
            raise UnknownIdError(f"{len(missing)} id(s) not in the vector store: {shown}", ids=missing)
        return vectors[rows].copy()

    def search(
        self, queries: np.ndarray, k: int, *, allow_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, k = search_args(queries, k, self.dim)
        with self._lock:  # a consistent snapshot; searching it needs no lock
            self._check_open()
            ids, vectors, indexed, items, index = self._ids, self._vectors, self._indexed, self._items, self._index
        n = len(ids)
        if k == 0 or len(queries) == 0 or n == 0:
            return empty_result(len(queries), k)
        allowed_rows = None
        if allow_ids is not None:
            allowed = np.unique(as_ids(allow_ids, allow_negative=True))
            allowed_rows = np.searchsorted(ids, allowed)
            allowed_rows = allowed_rows[(allowed_rows < n) & (ids[np.minimum(allowed_rows, n - 1)] == allowed)]
            if len(allowed_rows) == 0:
                return empty_result(len(queries), k)
            if len(allowed_rows) <= EXACT_SUBSET_MAX or len(allowed_rows) <= EXACT_SUBSET_FRACTION * n:
                return exact_search(queries, ids[allowed_rows], vectors[allowed_rows], k)
        candidates = n if allowed_rows is None else len(allowed_rows)
        if index is None or k >= candidates // 2:
            rows = np.arange(n) if allowed_rows is None else allowed_rows
            return exact_search(queries, ids[rows], vectors[rows], k)
        allowed_mask = None
        if allowed_rows is not None:
            allowed_mask = np.zeros(n, bool)
            allowed_mask[allowed_rows] = True
        pending = np.flatnonzero(~indexed if allowed_mask is None else (~indexed & allowed_mask))
        parts = [exact_search(queries, ids[pending], vectors[pending], k)]
        parts.append(self._search_index(queries, k, index, items, ids, vectors, allowed_mask, candidates / n))
        return merge_results(parts, k)

    def _search_index(self, queries, k, index, items, ids, vectors, allowed_mask, fraction):
        """Annoy candidates (live, allowed items), re-ranked by exact distance."""
        live_fraction = max(1e-3, float((items >= 0).mean())) if len(items) else 1.0
        # Ask for enough items that about k survive the stale and filtered ones.
        want = min(len(items), math.ceil(k / (live_fraction * fraction)) + 8)
        search_k = SEARCH_K_PER_RESULT * want
        distances, found = empty_result(len(queries), want)
        for row, query in enumerate(queries):
            got = np.asarray(index.get_nns_by_vector(query, want, search_k=search_k), np.int64)
            got_ids = items[got] if len(got) else got
            got_ids = got_ids[got_ids >= 0]
            got_rows = np.searchsorted(ids, got_ids)
            if allowed_mask is not None:
                got_rows = got_rows[allowed_mask[got_rows]]
            d = np.sqrt(np.maximum(((vectors[got_rows] - query) ** 2).sum(1), 0))
            found[row, : len(got_rows)], distances[row, : len(got_rows)] = ids[got_rows], d
        return distances, found

    # --- writing ------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = add_args(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        keep = last_occurrence(ids)
        ids, vectors = ids[keep], vectors[keep]  # sorted by id, unique
        with self._write_lock:
            self._check_open()
            old_keep = ~isin_sorted(self._ids, ids)
            items = self._items.copy()
            items[isin_sorted(items, ids)] = -1  # replaced vectors: their index items are stale
            merged_ids = np.concatenate([self._ids[old_keep], ids])
            order = np.argsort(merged_ids, kind="stable")
            merged_vectors = np.concatenate([self._vectors[old_keep], vectors])[order]
            indexed = np.concatenate([self._indexed[old_keep], np.zeros(len(ids), bool)])[order]
            with self._lock:
                self._ids, self._vectors, self._indexed, self._items = merged_ids[order], merged_vectors, indexed, items
                self._dirty = True

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(as_ids(ids, allow_negative=True))
        with self._write_lock:
            self._check_open()
            gone = isin_sorted(self._ids, ids)
            if not gone.any():
                return 0
            items = self._items.copy()
            items[isin_sorted(items, ids)] = -1
            with self._lock:
                self._ids, self._vectors = self._ids[~gone], self._vectors[~gone]
                self._indexed, self._items = self._indexed[~gone], items
                self._dirty = True
            return int(gone.sum())

    def _stale_count(self) -> int:
        return int((~self._indexed).sum()) + int((self._items < 0).sum())

    def _rebuild_threshold(self) -> int:
        return max(REBUILD_MIN, int(REBUILD_FRACTION * len(self._ids)))

    def _rebuild(self, target: Path | None = None) -> None:
        """Build an Annoy index over all vectors (into ``target`` when given, then memory-mapped from it)."""
        index = annoy.AnnoyIndex(self.dim, "euclidean")
        vectors = self._vectors
        for item, vector in enumerate(vectors):
            index.add_item(item, vector)
        index.set_seed(len(vectors))
        index.build(self.n_trees, n_jobs=1)
        if target is not None:
            tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
            index.save(str(tmp))
            _fsync_file(tmp)
            os.replace(tmp, target)
            index.unload()
            index.load(str(target))  # memory-mapped: pages are shared and loaded on demand
        with self._lock:
            self._index, self._items = index, self._ids.copy()
            self._indexed = np.ones(len(self._ids), bool)
            self._index_file = None if target is None else target.name
            self._dirty = True

    def save(self) -> None:
        with self._write_lock:
            self._check_open()
            if not self._dirty:
                return
            generation = self._generation + 1
            if len(self._ids) and (self._stale_count() > self._rebuild_threshold()
                                   or (self._index is not None and self._index_file is None)):
                self._rebuild(self.folder / f"{self.name}.i{generation}.annoy")
            files = {kind: f"{self.name}.g{generation}.{kind}.npy" for kind in ("ids", "vectors", "items")}
            for kind, array in (("ids", self._ids), ("vectors", self._vectors), ("items", self._items)):
                _atomic_save_npy(self.folder / files[kind], array)
            manifest = {"format": FORMAT_VERSION, "dim": self.dim, "count": len(self._ids), "n_trees": self.n_trees,
                        "generation": generation, "index": self._index_file, **files}
            _atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2) + "\n")
            self._generation, self._dirty = generation, False
            self._delete_unreferenced({self.manifest_path.name, *files.values(), *(
                [self._index_file] if self._index_file else [])})

    def _delete_unreferenced(self, keep: set[str]) -> None:
        for path in self.folder.glob(f"{self.name}.*"):
            if path.name not in keep and (path.suffix in (".npy", ".annoy") or ".tmp-" in path.name):
                try:
                    path.unlink()
                except OSError:
                    pass

    def close(self) -> None:
        with self._write_lock, self._lock:
            self._closed = True
            if self._index is not None:
                self._index.unload()
            self._index = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"vector store {self.manifest_path} is closed")

    # --- loading ------------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            manifest = json.loads(self.manifest_path.read_text())
            if manifest.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown format {manifest.get('format')!r}")
            ids = np.load(self.folder / manifest["ids"])
            vectors = np.load(self.folder / manifest["vectors"])
            items = np.load(self.folder / manifest["items"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(_DAMAGED.format(path=self.manifest_path, reason=str(exc)[:120])) from exc
        if int(manifest["dim"]) != self.dim:
            raise StoreDimensionError(
                f"vector store {self.manifest_path} holds {manifest['dim']}-dimensional vectors but {self.dim} "
                "are expected (the analysis changed?); run `audiosim verify --repair` to rebuild it")
        if ids.dtype != np.int64 or vectors.shape != (len(ids), self.dim) or len(ids) != manifest["count"]:
            raise StoreError(_DAMAGED.format(path=self.manifest_path, reason="files disagree"))
        index = None
        if manifest.get("index"):
            index = annoy.AnnoyIndex(self.dim, "euclidean")
            try:
                index.load(str(self.folder / manifest["index"]))
            except OSError:
                index = None  # lost: everything counts as pending, and the index is rebuilt
            if index is not None and index.get_n_items() != len(items):
                index = None
        if index is None:
            items = np.empty(0, np.int64)
        self._ids, self._vectors, self._items, self._index = ids, vectors.astype(np.float32), items, index
        self._index_file = manifest.get("index") if index is not None else None
        self._indexed = isin_sorted(ids, np.sort(items[items >= 0]))
        self._generation = int(manifest["generation"])


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if os.name == "posix":
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
