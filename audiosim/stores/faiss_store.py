"""The default vector store: Faiss, exact below a size threshold and IVF-Flat above it.

Files in the store folder:

``<name>.faiss``
    The Faiss index, the only source of truth for the vectors: an ``IndexIDMap2`` over an ``IndexFlatL2``
    (exact mode) or an ``IndexIVFFlat`` with a hash-table direct map (ANN mode; ``get`` and ``remove``
    work by id). Its ``nprobe`` is saved inside it.
``<name>.json``
    A sidecar with what Faiss does not record (how many vectors the IVF was trained on, the recall measured
    then). It is written after the index; if the two disagree, the index wins and the rest is estimated.

Both are written to ``<file>.tmp-<pid>``, fsynced and renamed over the old file, so a crash leaves either
the old or the new store, never a damaged one.

The IVF's ``nprobe`` is not a guess: when the index is built, ``nprobe`` is raised until the recall@50
of ~200 queries (vectors held out of the k-means training set, their own match not counted) reaches
`TARGET_RECALL` against exact search. Aiming above what we promise (0.95) leaves room for the data that is
added before the next retraining, which happens when the store has grown `RETRAIN_GROWTH`-fold.

``allow_ids`` (a filter from the database): up to `EXACT_SUBSET_MAX` ids, or up to 10% of the store, are
searched exactly by fetching just those vectors -- exact even in ANN mode. Larger filters go through Faiss
with an ``IDSelectorBatch``; the IVF then probes 1/fraction more lists, so a filter does not starve it.

Locking: ``_write_lock`` makes add/remove/save/close one-at-a-time (one writer by contract, enforced
anyway); ``_lock`` (an RLock) is held by readers and by the short moments a writer mutates the index.
Faiss indexes are safe for concurrent read-only use, so the slow parts of a writer -- saving, exporting,
assigning new vectors to IVF lists and rebuilding into a *new* index -- run without ``_lock`` and never
block a search.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from audiosim.errors import StoreDimensionError, StoreError
from audiosim.stores.base import (
    add_args,
    SortedIdsMixin,
    isin_sorted,
    as_ids,
    empty_result,
    last_occurrence,
    search_args,
    UnknownIdError,
    VectorStore,
)

FORMAT_VERSION = 1
TARGET_RECALL = 0.97  # measured at build time; what we promise is >= 0.95
RECALL_K = 50
TUNING_QUERIES = 200
RETRAIN_GROWTH = 4  # retrain the IVF when the store has grown this many times since training
LISTS_PER_SQRT_N = 4  # nlist ~ 4 * sqrt(N)
TRAIN_POINTS_PER_LIST = 40  # k-means sample; Faiss warns below 39 per list, cost grows with it
KMEANS_ITERATIONS = 10
EXACT_SUBSET_MAX = 50_000  # allow_ids this small (or <= 10% of the store) are searched exactly
EXACT_SUBSET_FRACTION = 0.1
GRAPH_BLOCKED_MIN = 20_000  # a map's neighbour graph of this many points is built block by block
GRAPH_CHUNK = 8192  # rows of the neighbour graph per batch (progress, cancellation)
PARALLEL_MIN_DISTANCES = 200_000  # below this many distance computations one thread is faster

_DAMAGED = "vector store file {path} is damaged ({reason}); run `audiosim verify --repair` to rebuild it"


@dataclasses.dataclass(frozen=True)
class AnnParams:
    """How the IVF index was built and tuned."""

    nlist: int
    nprobe: int
    trained_count: int  # vectors in the store when it was trained
    build_recall: float  # recall@50 measured with this nprobe at build time (nan if unknown)


class FaissStore(SortedIdsMixin, VectorStore):
    """Vectors in a Faiss index in ``<path>/<name>.faiss``; see the module docstring.

    Parameters
    ----------
    path : Path
        Folder of the store (created if missing).
    name : str
        File stem, e.g. ``"segments"``.
    dim : int
        Vector dimension; opening a store saved with another dimension is a `StoreError`.
    ann_threshold : int
        From this many vectors on, search an IVF index (approximate, recall@50 >= 0.95) instead of all
        vectors. The store switches back to exact search below half of it.
    """

    def __init__(self, path: Path, name: str, dim: int, *, ann_threshold: int = 100_000) -> None:
        if int(dim) < 1:
            raise StoreError(f"vector dimension must be positive, got {dim}")
        if int(ann_threshold) < 1:
            raise StoreError(f"ann_threshold must be positive, got {ann_threshold}")
        self.dim = int(dim)
        self.ann_threshold = int(ann_threshold)
        self.folder = Path(path)
        self.name = name
        self.index_path = self.folder / f"{name}.faiss"
        self.meta_path = self.folder / f"{name}.json"
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the vector store folder {self.folder}: {exc}") from exc
        if self.index_path.exists():
            self._index, self._ann = self._load()
            self._ids = np.sort(_export_ids(self._index, self._ann))
            self._dirty = False
        else:
            self._index, self._ann = _build_flat(self.dim, _NO_IDS, np.empty((0, self.dim), np.float32)), None
            self._ids = _NO_IDS
            self._dirty = True  # the first save creates the file even when empty
        self._closed = False

    # --- reading ------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"flat"`` (exact) or ``"ivf"`` (approximate)."""
        return "flat" if self._ann is None else "ivf"

    @property
    def ann_params(self) -> AnnParams | None:
        """The IVF parameters, or None in exact mode."""
        return self._ann

    @property
    def description(self) -> str:
        with self._lock:
            n, ann = len(self._ids), self._ann
        if ann is None:
            return f"faiss flat ({n} vectors)"
        recall = (
            "" if math.isnan(ann.build_recall) else f", recall@{RECALL_K} {ann.build_recall:.2f} at build"
        )
        return f"faiss ivf nlist={ann.nlist} nprobe={ann.nprobe} ({n} vectors{recall})"

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, allow_negative=True)
        with self._lock:
            self._check_open()
            present = isin_sorted(ids, self._ids)
            if not present.all():
                missing = _unique_sorted(ids[~present])
                shown = ", ".join(map(str, missing[:5].tolist())) + (", ..." if len(missing) > 5 else "")
                raise UnknownIdError(f"{len(missing)} id(s) not in the vector store: {shown}", ids=missing)
            return self._reconstruct(ids)

    def search(
        self, queries: np.ndarray, k: int, *, allow_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, k = search_args(queries, k, self.dim)
        m = len(queries)
        with self._lock:
            self._check_open()
            n = len(self._ids)
            if k == 0 or m == 0 or n == 0:
                return empty_result(m, k)
            selector, fraction = None, 1.0
            if allow_ids is not None:
                allowed = _unique_sorted(as_ids(allow_ids, allow_negative=True))
                allowed = allowed[isin_sorted(allowed, self._ids)]
                if len(allowed) == 0:
                    return empty_result(m, k)
                if len(allowed) <= EXACT_SUBSET_MAX or len(allowed) <= EXACT_SUBSET_FRACTION * n:
                    return self._search_subset(queries, k, allowed)
                if len(allowed) < n:
                    selector, fraction = faiss.IDSelectorBatch(allowed), len(allowed) / n
            params, scanned = self._search_params(selector, fraction, k)
            with _omp_threads(_threads_for(m, scanned)):
                distances, labels = self._index.search(queries, k, params=params)
        return _euclidean(distances, labels)

    def neighbour_graph(
        self, ids: np.ndarray, k: int, *, vectors: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batch over the set itself, on every core: exact (``faiss.knn``) below `GRAPH_BLOCKED_MIN` points; above,
        *blocked* exact search: the set is split by k-means into ~sqrt(n)/4 blocks and the points of each
        block are compared (one BLAS product) with the points of its ``p`` nearest blocks, ``p`` measured
        on 200 points for recall@k >= `TARGET_RECALL` against exact search (an exact graph of 50k points
        is ~1e11 multiply-adds; blocked, a few times less, and BLAS-fast where an IVF search is not)."""
        ids = as_ids(ids)
        if vectors is None:
            with self._lock:
                self._check_open()
                vectors = self._reconstruct(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(ids)
        k = min(int(k), n)
        if n == 0 or k == 0:
            return empty_result(n, k)
        with _omp_threads(_max_threads()):
            if n >= GRAPH_BLOCKED_MIN:
                squared, rows = _blocked_graph(vectors, k, progress)
            else:
                parts = []
                for i in range(0, n, GRAPH_CHUNK):
                    parts.append(faiss.knn(vectors[i:i + GRAPH_CHUNK], vectors, k))
                    if progress is not None:
                        progress(min(n, i + GRAPH_CHUNK), n)
                squared = np.concatenate([d for d, _ in parts])
                rows = np.concatenate([r for _, r in parts])
        return _euclidean(squared, np.where(rows >= 0, ids[np.maximum(rows, 0)], -1))

    def _search_params(self, selector: object, fraction: float, k: int = RECALL_K) -> tuple[object, int]:
        """Faiss search parameters and roughly how many vectors one query scans."""
        n = len(self._ids)
        if self._ann is None:
            return (None if selector is None else faiss.SearchParameters(sel=selector)), n
        # With a filter that keeps a fraction f of the store, probe ~1/f more lists so that about as many
        # allowed vectors are scanned as without a filter. nprobe was measured for k = RECALL_K: more
        # neighbours (a sequence query asks for ~4k per window) lie further out, in more lists.
        wider = max(1.0, k / RECALL_K)
        nprobe = min(self._ann.nlist, math.ceil(self._ann.nprobe * wider / fraction))
        if selector is None:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        return params, max(1, n * nprobe // self._ann.nlist)

    def _search_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search among ``allowed`` (sorted ids, all present): cheaper and better than a filter."""
        vectors = self._reconstruct(allowed)
        kk = min(k, len(allowed))
        with _omp_threads(_threads_for(len(queries), len(allowed))):
            distances, rows = faiss.knn(queries, vectors, kk)
        distances_k, ids_k = empty_result(len(queries), k)
        distances_k[:, :kk] = distances
        ids_k[:, :kk] = np.where(rows >= 0, allowed[np.maximum(rows, 0)], -1)
        return _euclidean(distances_k, ids_k)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(ids)

    # --- writing ------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = add_args(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        if len(_unique_sorted(ids)) < len(ids):
            keep = last_occurrence(ids)
            ids, vectors = ids[keep], np.ascontiguousarray(vectors[keep])
        with self._write_lock:
            self._check_open()
            present = isin_sorted(ids, self._ids)
            count_after = len(self._ids) + int((~present).sum())
            if not self._needs_rebuild(count_after):
                self._add_in_place(ids, vectors, present)
                return
            old_ids, old_vectors = _export(self._index, self._ann)
            keep = ~isin_sorted(old_ids, np.sort(ids))
            self._rebuild(np.concatenate([old_ids[keep], ids]), np.concatenate([old_vectors[keep], vectors]))

    def _add_in_place(self, ids: np.ndarray, vectors: np.ndarray, present: np.ndarray) -> None:
        with _omp_threads(_max_threads()):
            if self._ann is not None:
                # Assigning vectors to lists is the slow part of an IVF add; the quantizer is only read, so
                # do it before taking the lock that searches wait for.
                _, lists = self._index.quantizer.search(vectors, 1)
                lists = np.ascontiguousarray(lists.reshape(-1))
            with self._lock:
                if present.any():
                    self._index.remove_ids(self._selector(ids[present]))
                if self._ann is None:
                    self._index.add_with_ids(vectors, ids)
                else:
                    ptr = faiss.swig_ptr
                    self._index.add_core(len(ids), ptr(vectors), ptr(ids), ptr(lists))
                self._ids = _merge_sorted(self._ids, ids[~present])
                self._dirty = True

    def remove(self, ids: np.ndarray) -> int:
        ids = _unique_sorted(as_ids(ids, allow_negative=True))
        with self._write_lock:
            self._check_open()
            ids = ids[isin_sorted(ids, self._ids)]
            if len(ids) == 0:
                return 0
            if not self._needs_rebuild(len(self._ids) - len(ids)):
                with self._lock, _omp_threads(_max_threads()):
                    self._index.remove_ids(self._selector(ids))
                    self._ids = self._ids[~isin_sorted(self._ids, ids)]
                    self._dirty = True
                return len(ids)
            old_ids, old_vectors = _export(self._index, self._ann)
            keep = ~isin_sorted(old_ids, ids)
            self._rebuild(old_ids[keep], old_vectors[keep])
            return len(ids)

    def _needs_rebuild(self, count_after: int) -> bool:
        if self._ann is None:
            return count_after >= self.ann_threshold
        # Hysteresis: back to exact search only well below the threshold, so a store hovering around it
        # is not rebuilt on every batch.
        return (
            count_after < self.ann_threshold // 2 or count_after >= RETRAIN_GROWTH * self._ann.trained_count
        )

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Build a new index from all vectors (writer only) and swap it in; readers use the old one meanwhile."""
        with _omp_threads(_max_threads()):
            if len(ids) >= self.ann_threshold:
                index, ann = _build_ivf(self.dim, ids, vectors)
            else:
                index, ann = _build_flat(self.dim, ids, vectors), None
        sorted_ids = np.sort(ids)
        with self._lock:
            self._index, self._ann, self._ids, self._dirty = index, ann, sorted_ids, True

    def _selector(self, ids: np.ndarray) -> object:
        # The IVF's hash-table direct map removes by walking an IDSelectorArray; IndexIDMap2 tests every
        # stored id for membership, which wants the hashed IDSelectorBatch.
        if self._ann is None:
            return faiss.IDSelectorBatch(ids)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        selector = faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))
        selector.referenced_ids = ids  # IDSelectorArray does not copy the ids
        return selector

    def save(self) -> None:
        with self._write_lock:
            self._check_open()
            if not self._dirty and self.index_path.exists():
                return
            _remove_stale_temp_files(self.folder, (self.index_path.name, self.meta_path.name))
            index = self._index  # only this (writer) thread replaces or mutates it
            _atomic_write(
                self.index_path, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
            )
            meta = {
                "format": FORMAT_VERSION,
                "dim": self.dim,
                "kind": self.kind,
                "count": len(self._ids),
                "faiss_version": faiss.__version__,
            }
            if self._ann is not None:
                meta.update(dataclasses.asdict(self._ann), target_recall=TARGET_RECALL, recall_k=RECALL_K)
            text = json.dumps(meta, indent=2, allow_nan=True) + "\n"
            _atomic_write(self.meta_path, lambda f: f.write(text.encode()))
            self._dirty = False

    def close(self) -> None:
        with self._write_lock, self._lock:
            self._closed = True
            self._index = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"vector store {self.index_path} is closed")

    # --- loading ------------------------------------------------------------------------------------

    def _load(self) -> tuple[faiss.Index, AnnParams | None]:
        try:
            with open(self.index_path, "rb") as f:
                index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except (RuntimeError, MemoryError) as exc:  # truncation, garbage (or garbage sizes: bad_alloc)
            reason = str(exc).strip().splitlines()[-1].split("failed: ")[-1][:120]
            raise StoreError(_DAMAGED.format(path=self.index_path, reason=reason)) from exc
        except OSError as exc:
            raise StoreError(f"cannot read vector store file {self.index_path}: {exc}") from exc
        if index.d != self.dim:
            raise StoreDimensionError(
                f"vector store {self.index_path} holds {index.d}-dimensional vectors but {self.dim} are "
                "expected (the analysis changed?); run `audiosim verify --repair` to rebuild it"
            )
        if index.metric_type != faiss.METRIC_L2:
            raise StoreError(_DAMAGED.format(path=self.index_path, reason="not an L2 index"))
        if isinstance(index, faiss.IndexIDMap2) and isinstance(
            faiss.downcast_index(index.index), faiss.IndexFlat
        ):
            return index, None
        if isinstance(index, faiss.IndexIVFFlat) and index.direct_map.type == faiss.DirectMap.Hashtable:
            return index, self._ann_params_of(index)
        raise StoreError(_DAMAGED.format(path=self.index_path, reason=f"unexpected {type(index).__name__}"))

    def _ann_params_of(self, index: faiss.IndexIVFFlat) -> AnnParams:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        expected = {"kind": "ivf", "count": index.ntotal, "nlist": index.nlist, "nprobe": index.nprobe}
        if all(meta.get(key) == value for key, value in expected.items()):
            return AnnParams(
                index.nlist, index.nprobe, int(meta["trained_count"]), float(meta["build_recall"])
            )
        # Sidecar lost or older than the index: nlist was chosen as 4 * sqrt(trained_count).
        return AnnParams(index.nlist, index.nprobe, round((index.nlist / LISTS_PER_SQRT_N) ** 2), math.nan)


# --- building -------------------------------------------------------------------------------------

_NO_IDS = np.empty(0, dtype=np.int64)


def _build_flat(dim: int, ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    index = faiss.index_factory(dim, "IDMap2,Flat", faiss.METRIC_L2)
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def _build_ivf(dim: int, ids: np.ndarray, vectors: np.ndarray) -> tuple[faiss.Index, AnnParams]:
    """Train an IVF-Flat on a sample, add everything, and measure the smallest nprobe that meets the target.

    Deterministic for given inputs (seeded by the size), so rebuilding the same data gives the same index.
    """
    n = len(ids)
    nlist = int(np.clip(round(LISTS_PER_SQRT_N * math.sqrt(n)), 1, max(1, n // 32)))
    rng = np.random.default_rng(n)
    order = rng.permutation(n)
    n_queries = min(TUNING_QUERIES, n // 10)
    query_rows = np.sort(order[:n_queries])
    train_rows = np.sort(order[n_queries : n_queries + TRAIN_POINTS_PER_LIST * nlist])

    index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_L2)
    index.cp.niter = KMEANS_ITERATIONS
    index.cp.seed = 1234
    index.cp.min_points_per_centroid = 5  # small stores: fewer points per list is fine, don't warn
    index.train(vectors[train_rows])
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.add_with_ids(vectors, ids)
    if n_queries == 0:
        nprobe, recall = nlist, 1.0
    else:
        nprobe, recall = _tune_nprobe(index, ids, vectors, query_rows)
    index.nprobe = nprobe
    return index, AnnParams(nlist=nlist, nprobe=nprobe, trained_count=n, build_recall=recall)


def _tune_nprobe(
    index: faiss.IndexIVFFlat, ids: np.ndarray, vectors: np.ndarray, query_rows: np.ndarray
) -> tuple[int, float]:
    """Smallest nprobe whose recall@k for the stored vectors ``query_rows`` reaches `TARGET_RECALL`."""
    k = min(RECALL_K, len(vectors) - 1)
    queries, query_ids = vectors[query_rows], ids[query_rows]
    # Squared distance of each query's k-th true neighbour, not counting itself.
    true_distances, rows = faiss.knn(queries, vectors, k + 1)
    true_distances = np.where(ids[rows] == query_ids[:, None], np.inf, true_distances)
    threshold = np.sort(true_distances, axis=1)[:, k - 1]
    threshold = threshold * (1 + 1e-4) + 1e-6  # brute force and IVF round differently

    def recall(nprobe: int) -> float:
        distances, labels = index.search(queries, k + 1, params=faiss.SearchParametersIVF(nprobe=nprobe))
        # A result counts if it is as near as the k-th true neighbour (ties and duplicates are not misses);
        # the query's own vector does not count.
        hits = (labels >= 0) & (labels != query_ids[:, None]) & (distances <= threshold[:, None])
        return float(np.minimum(hits.sum(axis=1), k).mean() / k)

    # Double nprobe until the target is met, then bisect between the last miss and the first hit.
    low, high, results = 0, index.nlist, {}
    nprobe = 1
    while nprobe < index.nlist:
        results[nprobe] = recall(nprobe)
        if results[nprobe] >= TARGET_RECALL:
            high = nprobe
            break
        low, nprobe = nprobe, nprobe * 2
    while high - low > 1:
        mid = (low + high) // 2
        results[mid] = recall(mid)
        if results[mid] >= TARGET_RECALL:
            high = mid
        else:
            low = mid
    if high not in results:
        results[high] = recall(high)
    return high, results[high]


def _blocked_graph(
    vectors: np.ndarray, k: int, progress: Callable[[int, int], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and rows of each vector's ``k`` nearest among ``vectors``; see `neighbour_graph`."""
    n, dim = vectors.shape
    blocks = max(8, round(math.sqrt(n) / 4))
    kmeans = faiss.Kmeans(dim, blocks, niter=KMEANS_ITERATIONS, seed=1234, max_points_per_centroid=256)
    kmeans.train(vectors)
    _, assign = kmeans.index.search(vectors, 1)
    assign = assign[:, 0]
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(blocks + 1))
    members = [order[bounds[b]:bounds[b + 1]] for b in range(blocks)]
    _, nearest = faiss.knn(kmeans.centroids, kmeans.centroids, blocks)  # blocks by centroid distance

    def search(rows_of: list[np.ndarray], probe: int, out_d: np.ndarray, out_r: np.ndarray, where) -> None:
        for b, rows in enumerate(rows_of):
            if len(rows) == 0:
                continue
            candidates = np.concatenate([members[j] for j in nearest[b, :probe]])
            kk = min(k, len(candidates))
            d, r = faiss.knn(vectors[rows], vectors[candidates], kk)
            out_d[where(rows), :kk], out_r[where(rows), :kk] = d, candidates[r]

    # The smallest number of blocks probed that finds TARGET_RECALL of 200 points' true neighbours.
    rng = np.random.default_rng(n)
    sample = np.sort(rng.choice(n, min(TUNING_QUERIES, n), replace=False))
    true_d, _ = faiss.knn(vectors[sample], vectors, k)
    threshold = true_d[:, -1] * (1 + 1e-4) + 1e-6  # as near as the k-th true neighbour counts (ties)
    position = {int(i): j for j, i in enumerate(sample)}
    sample_rows = [sample[assign[sample] == b] for b in range(blocks)]
    probe = 1
    while probe < blocks:
        d = np.full((len(sample), k), np.inf, np.float32)
        r = np.full((len(sample), k), -1, np.int64)
        search(sample_rows, probe, d, r, lambda rows: [position[int(i)] for i in rows])
        if float(np.mean(np.minimum((d <= threshold[:, None]).sum(1), k) / k)) >= TARGET_RECALL:
            break
        probe = min(blocks, math.ceil(probe * 1.5))
    squared = np.full((n, k), np.inf, np.float32)
    rows = np.full((n, k), -1, np.int64)
    done, step = 0, max(1, blocks // 8)
    for b0 in range(0, blocks, step):
        part = [members[b] if b0 <= b < b0 + step else members[b][:0] for b in range(blocks)]
        search(part, probe, squared, rows, lambda rows_: rows_)
        done += sum(len(members[b]) for b in range(b0, min(blocks, b0 + step)))
        if progress is not None:
            progress(done, n)
    return squared, rows


# --- helpers ---------------------------------------------------------------------------------------


def _export(index: faiss.Index, ann: AnnParams | None) -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) of an index, in storage order."""
    if ann is None:
        ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
        flat = faiss.downcast_index(index.index)
        vectors = flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else np.empty((0, index.d), np.float32)
        return ids, vectors
    id_parts, vector_parts = [_NO_IDS], [np.empty((0, index.d), np.float32)]
    invlists = index.invlists
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        id_ptr = invlists.get_ids(list_no)
        id_parts.append(faiss.rev_swig_ptr(id_ptr, size).copy())
        invlists.release_ids(list_no, id_ptr)
        code_ptr = invlists.get_codes(list_no)
        codes = faiss.rev_swig_ptr(code_ptr, size * index.code_size).copy()
        invlists.release_codes(list_no, code_ptr)
        vector_parts.append(codes.view(np.float32).reshape(size, index.d))
    return np.concatenate(id_parts).astype(np.int64, copy=False), np.concatenate(vector_parts)


def _export_ids(index: faiss.Index, ann: AnnParams | None) -> np.ndarray:
    if ann is None:
        return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    invlists, parts = index.invlists, [_NO_IDS]
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size:
            id_ptr = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(id_ptr, size).copy())
            invlists.release_ids(list_no, id_ptr)
    return np.concatenate(parts).astype(np.int64, copy=False)


def _unique_sorted(ids: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting: numpy 2.x's hash-based unique is ~50x slower on a million int64 ids."""
    ids = np.sort(ids)
    if len(ids) < 2:
        return ids
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))]


def _merge_sorted(sorted_ids: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
    if len(new_ids) == 0:
        return sorted_ids
    new_ids = np.sort(new_ids)
    merged = np.concatenate([sorted_ids, new_ids])
    if len(sorted_ids) and new_ids[0] < sorted_ids[-1]:  # usual case (growing segment ids) skips this
        merged.sort(kind="stable")  # two sorted runs: timsort merges them in one pass
    return merged


def _euclidean(squared: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faiss results -> (Euclidean distances with inf padding, int64 ids with -1 padding)."""
    labels = labels.astype(np.int64, copy=False)
    distances = np.sqrt(np.maximum(squared, 0, dtype=np.float32))
    distances[labels < 0] = np.inf
    return distances.astype(np.float32, copy=False), labels


def _max_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on macOS / Windows
        return max(1, os.cpu_count() or 1)


def _threads_for(queries: int, scanned_per_query: int) -> int:
    """Faiss parallelises a search over its queries, so a single query (the GUI case) gains nothing from
    more threads and, on a busy machine, loses a lot waiting for them at OpenMP barriers."""
    if queries < 2 or queries * scanned_per_query < PARALLEL_MIN_DISTANCES:
        return 1
    return min(queries, _max_threads())


@contextlib.contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Run Faiss with ``n`` OpenMP threads. The setting belongs to the calling thread, so a GUI query
    thread and the writer thread each choose their own; the previous value is restored."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _temp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` via a temp file in the same folder, fsync it, rename it over ``path``, fsync the folder."""
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: Faiss failed to serialise
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"could not save {path}: {exc}") from exc
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX; Windows cannot open a folder and commits renames itself)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _remove_stale_temp_files(folder: Path, names: tuple[str, ...]) -> None:
    """Delete temp files left by a save that crashed (their process is gone). They never break opening a
    store, they only waste space."""
    if os.name != "posix":  # without a cheap "is this pid alive?" leave them alone
        return
    for name in names:
        for tmp in folder.glob(f"{name}.tmp-*"):
            pid = tmp.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            except OSError:  # alive but not ours (EPERM): leave it
                pass
