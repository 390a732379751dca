"""Maps of a result set: its vectors → UMAP → ``[x, y]`` per asset or segment. Never written anywhere.

A *result set* (:class:`ResultSet`, in :mod:`audiosim.result_sets`) is what the user asked to see: the
assets matching a filter, the hits of a query, a lasso selection, or the whole library (sampled above
`DEFAULT_MAX_POINTS`), at the level of files (one vector per asset) or segments. :func:`compute_map` lays it out:

1. the vectors come from the vector store (``store.get``), never recomputed;
2. a PCA layout is reported at once as a partial result (the first picture, in milliseconds);
3. the neighbour graph comes from the *store's* search, restricted to the result set, so the map and a
   query agree about who is whose neighbour (other metrics: exact search on the fetched vectors, or
   pynndescent for large sets). It is cached (:class:`KnnCache`) per result set + metric, so changing
   ``min_dist`` re-runs only the layout;
4. UMAP starts from the previous layout when there is one (warm start, :mod:`audiosim.warm_layout`: the
   previous coordinates unscaled, fewer epochs, a gentler first step; points whose neighbourhood survived
   a change of the result set are held still), and the result is rotated onto it (Procrustes), so points
   move instead of jumping. Points *added* to a mapped result set are placed by the fitted model's
   ``transform`` instead of a refit.

A seeded map is the same bit for bit whatever the thread count (serial layout, BLAS on one thread); on
another CPU or BLAS build the last bits of the spectral start may differ, and UMAP's epochs amplify
them: the same picture (same groups, same neighbours), not the same digits.

Coordinates live in memory only; nothing here writes to the library.
UMAP, numba and pynndescent are imported lazily (seconds of import + JIT): :func:`warm_up` pays that in a
background thread while the user does something else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosim.errors import AudiosimError
from audiosim.result_sets import (  # noqa: F401 - part of this module's API
    DEFAULT_MAX_POINTS,
    LEVELS,
    METRICS,
    NUMERIC_FIELDS,
    ProjectionError,
    ResultSet,
    build_result_set,
    describe_points,
)
from audiosim.tasks import NullState, TaskState
from audiosim.warm_layout import (  # noqa: F401 - part of this module's API
    ANCHOR_OVERLAP,
    WARM_EPOCHS,
    WARM_LEARNING_RATE,
    anchored_rows,
    warm_umap,
)

if TYPE_CHECKING:
    from audiosim.library.db import Library

MIN_UMAP_POINTS = 5
"""Below this many points UMAP has no neighbourhoods to speak of; PCA places them."""
TRANSFORM_MAX_ADDED = 0.2
"""Points added to a mapped result set are placed with ``transform`` (no refit) while they are at most
this fraction of the points the model was fitted on; beyond that the layout would no longer describe them."""
_SMALL_EXACT = 4096  # below this, kNN for non-Euclidean metrics is computed exactly
EPOCH_EDGE_BUDGET = 2_000_000  # cold layout: about this many points x epochs (see cold_epochs)
_umap_prepared = False
_prepare_lock = threading.Lock()


def cold_epochs(n: int) -> int:
    """Epochs of a cold layout: UMAP's 500 up to 4,000 points, then fewer as the set grows (each epoch
    moves every point ~n_neighbors times, so a big set settles in fewer), never under 100: 10k points
    200 epochs (UMAP: 500), 20k+ 100 (UMAP: 200). The layout is the longest part of a first map."""
    return int(min(500, max(100, round(EPOCH_EDGE_BUDGET / max(1, n), -1))))


class MapCancelled(AudiosimError):
    """The map was superseded (``state.cancelled``) before it was finished."""


# -- parameters and result sets ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MapParams:
    """What the user chose. ``seed=None`` lets UMAP use all cores but is not reproducible."""

    level: str = "file"
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "euclidean"
    seed: int | None = 42
    n_epochs: int | None = None  # None: `cold_epochs` of the number of points

    def validate(self) -> MapParams:
        if self.level not in LEVELS:
            raise ProjectionError(f"unknown level {self.level!r}: use 'file' or 'segment'")
        if self.metric not in METRICS:
            raise ProjectionError(f"unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        if not 2 <= int(self.n_neighbors) <= 200:
            raise ProjectionError(f"n_neighbors must be between 2 and 200, got {self.n_neighbors}")
        if not 0.0 <= float(self.min_dist) <= 1.0:
            raise ProjectionError(f"min_dist must be between 0 and 1, got {self.min_dist}")
        if self.n_epochs is not None and self.n_epochs < 1:
            raise ProjectionError(f"n_epochs must be at least 1, got {self.n_epochs}")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# -- maps -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class MapResult:
    """Coordinates ``[shape=(n, 2), float32]`` in the row order of ``result_set``.

    ``kind`` says how they were made: ``"umap"`` (cold), ``"warm"`` (from the previous layout),
    ``"transform"`` (added points placed by the previous model), ``"pca"`` (the placeholder, or a set too
    small for UMAP), ``"empty"``.
    """

    result_set: ResultSet
    params: MapParams
    coords: np.ndarray
    kind: str
    notices: tuple[str, ...] = ()
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    n_neighbors_used: int | None = None
    # The fitted model, its training ids and the similarity that takes its coordinates to ``coords``
    # (kept in memory so added points can be placed by transform).
    model: Any = dataclasses.field(default=None, repr=False)
    fit_ids: np.ndarray | None = dataclasses.field(default=None, repr=False)
    to_display: tuple[np.ndarray, float, np.ndarray] | None = dataclasses.field(default=None, repr=False)
    # Ids of each point's neighbours (itself first, -1 for none): what a later warm start compares to
    # find the points whose neighbourhood survived.
    neighbour_ids: np.ndarray | None = dataclasses.field(default=None, repr=False)
    n_anchored: int = 0  # points a warm start held where they were

    def __len__(self) -> int:
        return len(self.coords)

    def coords_of(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = np.asarray(list(ids), np.int64)
        rows = self.result_set.rows_of(ids)
        return {int(self.result_set.ids[r]): self.coords[r] for r in rows}

    def to_json(self) -> dict:
        rs = self.result_set
        seg = rs.level == "segment"
        points = [
            {"asset_id": int(a), "segment_id": int(i) if seg else None,
             "start": round(float(t0), 3) if seg else None, "end": round(float(t1), 3) if seg else None,
             "x": round(float(x), 5), "y": round(float(y), 5)}
            for i, a, t0, t1, (x, y) in zip(rs.ids, rs.asset_ids, rs.starts, rs.ends, self.coords)
        ]
        params = {**self.params.to_json(), "n_neighbors_used": self.n_neighbors_used}
        return {"params": params, "kind": self.kind, "result_set": rs.description, "count": len(points),
                "notices": list(rs.notices) + list(self.notices), "points": points}


class KnnCache:
    """Neighbour graphs by (level, ids + vectors digest, metric); the largest k is kept and sliced.

    Thread-safe; holds ``max_entries`` graphs (a 50k-point graph of k=50 is ~30 MB). ``computed`` counts
    how many graphs were actually built (a ``min_dist`` change must not add one).
    """

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0
        self.hits = 0

    def get(self, key: tuple, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0].shape[1] < k:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0][:, :k].copy(), entry[1][:, :k].copy()

    def put(self, key: tuple, indices: np.ndarray, dists: np.ndarray) -> None:
        with self._lock:
            self.computed += 1
            old = self._entries.get(key)
            if old is None or old[0].shape[1] <= indices.shape[1]:
                self._entries[key] = (indices, dists)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def compute_map(library: Library, result_set: ResultSet, params: MapParams, *,
                previous: MapResult | None = None, state: TaskState | None = None,
                cache: KnnCache | None = None) -> MapResult:
    """Lay out ``result_set`` in 2-D; see the module docstring.

    ``previous`` (a map of an overlapping result set) makes a warm start, or — same parameters, a few points
    added — a ``transform`` of the new points only. ``state`` receives the PCA placeholder as a partial
    result, epoch progress, and is polled for cancellation (:class:`MapCancelled`).
    """
    state = state or NullState()
    params.validate()
    if params.level != result_set.level:
        raise ProjectionError(f"result set is at {result_set.level} level, parameters ask for {params.level}")
    cache = cache if cache is not None else KnnCache(max_entries=1)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    n = len(result_set)
    if n == 0:
        return MapResult(result_set, params, np.zeros((0, 2), np.float32), "empty",
                         ("the result set is empty: nothing to map",), timings, 0)
    if (previous is not None and previous.result_set.key == result_set.key and previous.params == params
            and previous.kind != "pca"):
        return previous
    state.set_status("reading vectors")
    store = library.store("files" if result_set.level == "file" else "segments")
    vectors = np.ascontiguousarray(store.get(result_set.ids), dtype=np.float32)
    timings["vectors"] = time.perf_counter() - t0
    _check(state)

    placeholder = _pca_layout(vectors)
    prev_rows, here_rows = _shared_rows(previous, result_set)
    if len(here_rows) >= 3:
        placeholder = _align_all(placeholder, here_rows, previous.coords[prev_rows])[0]
    timings["pca"] = time.perf_counter() - t0
    if n < MIN_UMAP_POINTS:
        return MapResult(result_set, params, placeholder, "pca",
                         (f"only {n} point{'s' if n != 1 else ''}: too few for UMAP, placed by PCA",),
                         timings, 0)
    state.set_partial_result(MapResult(result_set, params, placeholder, "pca", (), dict(timings), 0))

    k = min(params.n_neighbors, n - 1)
    notices: list[str] = []
    if k < params.n_neighbors:
        notices.append(f"n_neighbors lowered to {k}: the result set has only {n} points")

    added = _transform_candidates(previous, result_set, params)
    if added is not None:
        state.set_status(f"placing {len(added)} added points")
        coords = _place_added(previous, result_set, vectors, added, state)
        timings["total"] = time.perf_counter() - t0
        return MapResult(result_set, params, coords, "transform", tuple(notices), timings, k,
                         previous.model, previous.fit_ids, previous.to_display)

    state.set_status("finding neighbours")
    digest = hashlib.blake2b(result_set.ids.tobytes() + vectors.tobytes(), digest_size=16).hexdigest()
    key = (result_set.level, digest, params.metric)
    knn = cache.get(key, k)
    if knn is None:
        knn = _knn_graph(store, result_set.ids, vectors, params.metric, k, params.seed, state)
        cache.put(key, *knn)
    timings["knn"] = time.perf_counter() - t0
    _check(state)

    neighbour_ids = np.where(knn[0] >= 0, result_set.ids[np.maximum(knn[0], 0)], -1)
    warm = len(here_rows) >= max(3, MIN_UMAP_POINTS)
    anchored = None
    if warm:
        init = _warm_init(placeholder, knn[0], here_rows, previous.coords[prev_rows])
        if previous.params == params and previous.neighbour_ids is not None:
            # Same parameters, another set of points: who kept their neighbours keeps their place.
            anchored = anchored_rows(previous.neighbour_ids, prev_rows, here_rows, neighbour_ids)
    else:
        init = "spectral"
    state.set_status("laying out (UMAP)")
    model = _fit_umap(vectors, knn, params, k, init, warm, anchored, store, result_set.ids, state)
    embedding = np.asarray(model.embedding_, np.float64)
    timings["umap"] = time.perf_counter() - t0
    n_anchored = int(anchored.sum()) if anchored is not None else 0
    if n_anchored >= 3:
        # The layout started in the previous map's frame and its anchors did not move: it is aligned.
        to_display = (np.eye(2), 1.0, np.zeros(2))
        coords = embedding
    elif warm:
        coords, to_display = _align_all(embedding, here_rows, previous.coords[prev_rows])
    else:
        to_display = (np.eye(2), 1.0, -embedding.mean(axis=0))
        coords = embedding + to_display[2]
    timings["total"] = time.perf_counter() - t0
    return MapResult(result_set, params, coords.astype(np.float32), "warm" if warm else "umap",
                     tuple(notices), timings, k, model, result_set.ids.copy(), to_display,
                     neighbour_ids, n_anchored)


def _check(state: TaskState) -> None:
    if state.cancelled:
        raise MapCancelled("map cancelled")


# -- neighbours -------------------------------------------------------------------------------------------
def _knn_graph(store, ids: np.ndarray, vectors: np.ndarray, metric: str, k: int, seed: int | None,
               state: TaskState | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``[shape=(n, k), int32]`` (self first) and distances ``[float32]`` within the set."""
    state = state or NullState()
    n = len(ids)
    if metric == "euclidean":
        # The store builds the graph (Faiss: one batch, IVF for large sets); progress and cancellation
        # between its chunks.
        def progress(done: int, total: int) -> None:
            _check(state)
            state.set_progress(done, total)

        _check(state)
        dists, found = store.neighbour_graph(ids, min(n, k + 1), vectors=vectors, progress=progress)
        rows = np.searchsorted(ids, np.maximum(found, 0))
        rows = np.where(found >= 0, np.minimum(rows, n - 1), -1)
    elif metric in ("cosine", "correlation"):
        unit = _unit(vectors, centre=metric == "correlation")
        dists, rows = _exact_knn(unit, unit, min(n, k + 1))
        dists = (dists * dists) / 2.0  # |a-b|^2 = 2 - 2 cos for unit vectors
    elif n <= _SMALL_EXACT:
        from sklearn.metrics import pairwise_distances

        d = pairwise_distances(vectors, metric=metric)
        rows = np.argsort(d, axis=1, kind="stable")[:, : min(n, k + 1)]
        dists = np.take_along_axis(d, rows, axis=1)
    else:
        from pynndescent import NNDescent

        index = NNDescent(vectors, metric=metric, n_neighbors=k + 1, random_state=seed, low_memory=True)
        rows, dists = index.neighbor_graph
    return _self_first(np.asarray(rows, np.int64), np.asarray(dists, np.float32), k)


def _self_first(rows: np.ndarray, dists: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Put each point itself in column 0 (distance 0), drop other copies of it, keep ``k`` columns."""
    n = len(rows)
    me = np.arange(n)[:, None]
    others = rows != me
    # Stable sort that moves "not me" after "me" keeps the distance order of the others.
    order = np.argsort(others, axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, axis=1)
    dists = np.take_along_axis(dists, order, axis=1)
    has_self = rows[:, 0] == np.arange(n)
    if not has_self.all():  # self missing (ties with duplicates): shift right and insert it
        miss = ~has_self
        rows[miss, 1:] = rows[miss, :-1]
        dists[miss, 1:] = dists[miss, :-1]
        rows[miss, 0] = np.flatnonzero(miss)
    dists[:, 0] = 0.0
    rows, dists = rows[:, :k], dists[:, :k]
    bad = rows < 0
    if bad.any():  # fewer than k candidates: UMAP reads -1 as "no neighbour"
        dists[bad] = np.inf
    return np.ascontiguousarray(rows, np.int32), np.ascontiguousarray(dists, np.float32)


def _unit(vectors: np.ndarray, *, centre: bool) -> np.ndarray:
    v = vectors - vectors.mean(axis=1, keepdims=True) if centre else vectors
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), np.float32)


def _exact_knn(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    d2, rows = faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(base, np.float32), k)
    return np.sqrt(np.maximum(d2, 0.0)), rows


class _SetIndex:
    """What UMAP's ``transform`` asks of a search index (``query``), answered within the fitted set.

    Euclidean: the vector store itself (restricted to the fitted ids), so transform agrees with search.
    """

    _angular_trees = False

    def __init__(self, store, ids: np.ndarray, vectors: np.ndarray, metric: str) -> None:
        self.store, self.ids, self.metric = store, ids, metric
        self.vectors = vectors if metric not in ("cosine", "correlation") else _unit(
            vectors, centre=metric == "correlation")

    def query(self, queries: np.ndarray, k: int, epsilon: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, np.float32)
        k = min(k, len(self.ids))
        if self.metric == "euclidean":
            dists, found = self.store.search(queries, k, allow_ids=self.ids)
            rows = np.searchsorted(self.ids, np.maximum(found, 0))
            rows = np.where(found >= 0, np.minimum(rows, len(self.ids) - 1), -1)
        elif self.metric in ("cosine", "correlation"):
            dists, rows = _exact_knn(_unit(queries, centre=self.metric == "correlation"), self.vectors, k)
            dists = dists * dists / 2.0
        else:
            from sklearn.metrics import pairwise_distances

            d = pairwise_distances(queries, self.vectors, metric=self.metric)
            rows = np.argsort(d, axis=1, kind="stable")[:, :k]
            dists = np.take_along_axis(d, rows, axis=1)
        return np.asarray(rows, np.int32), np.asarray(dists, np.float32)


# -- layout -----------------------------------------------------------------------------------------------
def _pca_layout(vectors: np.ndarray) -> np.ndarray:
    """First two principal components, scaled to a spread like UMAP's (placeholder and tiny sets)."""
    from threadpoolctl import threadpool_limits

    n = len(vectors)
    if n == 1:
        return np.zeros((1, 2), np.float32)
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    # One BLAS thread: these products are small, and a multi-threaded BLAS on a busy machine turns a
    # millisecond into a tenth of a second (the placeholder must be instant).
    with threadpool_limits(1, user_api="blas"):
        cov = centred.T @ centred / max(1, n - 1)
        _, vecs = np.linalg.eigh(cov)
        coords = centred @ vecs[:, ::-1][:, :2]
    # Fix the sign of each axis so the same data always gives the same picture.
    coords *= np.where(np.sum(coords ** 3, axis=0) < 0, -1.0, 1.0)
    spread = float(np.sqrt(np.mean(np.sum(coords ** 2, axis=1))))
    if spread > 0:
        coords *= 5.0 / spread
    return coords.astype(np.float32)


def _shared_rows(previous: MapResult | None, rs: ResultSet) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the previous map and of ``rs`` holding the same ids."""
    if previous is None or previous.result_set.level != rs.level or len(previous) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    common, prev_rows, here_rows = np.intersect1d(previous.result_set.ids, rs.ids, assume_unique=True,
                                                  return_indices=True)
    return prev_rows.astype(np.int64), here_rows.astype(np.int64)


def procrustes(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Rotation (or reflection) ``R``, scale ``s`` and shift ``t`` with ``s * source @ R + t ≈ target``."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    u, sv, vt = np.linalg.svd(a.T @ b)
    rot = u @ vt
    norm = float(np.sum(a * a))
    scale = float(sv.sum() / norm) if norm > 0 else 1.0
    return rot, scale, mu_t - scale * mu_s @ rot


def _align_all(coords: np.ndarray, rows: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, tuple]:
    rot, scale, shift = procrustes(np.asarray(coords[rows], np.float64), np.asarray(target, np.float64))
    return (scale * np.asarray(coords, np.float64) @ rot + shift).astype(np.float32), (rot, scale, shift)


def _warm_init(placeholder: np.ndarray, knn_rows: np.ndarray, here_rows: np.ndarray,
               previous_coords: np.ndarray) -> np.ndarray:
    """Previous positions for known points; new points at the mean of their placed neighbours."""
    n = len(placeholder)
    init = np.array(placeholder, np.float64)
    known = np.zeros(n, bool)
    init[here_rows] = previous_coords
    known[here_rows] = True
    for _ in range(3):  # new points next to placed neighbours, then neighbours of those
        todo = np.flatnonzero(~known)
        if len(todo) == 0:
            break
        nb = knn_rows[todo, 1:]
        ok = (nb >= 0) & known[np.maximum(nb, 0)]
        counts = ok.sum(axis=1)
        sums = np.einsum("ij,ijk->ik", ok.astype(np.float64), init[np.maximum(nb, 0)])
        placed = counts > 0
        init[todo[placed]] = sums[placed] / counts[placed, None]
        known[todo[placed]] = True
    return init.astype(np.float32)


def _transform_candidates(previous: MapResult | None, rs: ResultSet, params: MapParams) -> np.ndarray | None:
    """Ids added to the previous map's result set, when placing them by transform beats a refit."""
    if previous is None or previous.model is None or previous.params != params:
        return None
    if previous.result_set.level != rs.level:
        return None
    if not np.isin(previous.result_set.ids, rs.ids).all():
        return None  # points were removed: the user wants the smaller set laid out anew
    added = np.setdiff1d(rs.ids, previous.result_set.ids, assume_unique=True)
    if len(added) == 0 or len(added) > TRANSFORM_MAX_ADDED * len(previous.fit_ids):
        return None
    return added


def _place_added(previous: MapResult, rs: ResultSet, vectors: np.ndarray, added: np.ndarray,
                 state: TaskState) -> np.ndarray:
    coords = np.zeros((len(rs), 2), np.float32)
    prev_rows, here_rows = _shared_rows(previous, rs)
    coords[here_rows] = previous.coords[prev_rows]
    new_rows = rs.rows_of(added)
    model = previous.model
    _prepare_umap()
    with _progress(model, state):
        placed = np.asarray(model.transform(vectors[new_rows]), np.float64)
    rot, scale, shift = previous.to_display
    coords[new_rows] = (scale * placed @ rot + shift).astype(np.float32)
    return coords


def _prepare_umap() -> None:
    """Once per process, before UMAP compiles anything: its warnings that are not news, and its epoch
    kernels compiled to release the GIL."""
    global _umap_prepared
    with _prepare_lock:  # the start-up warm-up and a first map may both get here
        if _umap_prepared:
            return
        _release_gil_in_epochs()
        # Expected with our own kNN graph and search index; not news for a user.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"n_jobs value .* overridden", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*n_neighbors is larger than the dataset", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Graph is not fully connected", category=UserWarning)
        _umap_prepared = True


def _release_gil_in_epochs() -> None:
    """UMAP's per-epoch layout kernels, compiled with ``nogil``: as UMAP compiles them they hold the GIL for
    a whole epoch, and the window's thread, which needs the GIL back after each Qt call, then waits an
    epoch per call (measured: 175-243 ms event-loop stalls while a 4,584-point map recomputed). The
    kernels only touch their own arrays; the numbers are the same."""
    import numba
    import umap.layouts as layouts

    epoch = layouts._optimize_layout_euclidean_single_epoch
    layouts._nb_optimize_layout_euclidean_single_epoch = numba.njit(epoch, fastmath=True, parallel=False,
                                                                     nogil=True)
    layouts._nb_optimize_layout_euclidean_single_epoch_parallel = numba.njit(epoch, fastmath=True, parallel=True,
                                                                              nogil=True)


class _NoLock:
    """tqdm's write lock, made harmless: tqdm takes it around each redraw but releases it without
    ``finally``, so the exception that stops a superseded layout would leave it held for ever and the next
    map (or any tqdm bar in the process) would deadlock. Our bars write to no terminal; nothing to guard."""

    def acquire(self, *args, **kwargs) -> bool:
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *exc) -> None:
        pass


def _use_lockless_tqdm() -> None:
    import tqdm
    import tqdm.auto

    for cls in {tqdm.tqdm, tqdm.auto.tqdm}:
        cls.set_lock(_NoLock())


class _ProgressFile:
    """UMAP drives a tqdm bar over its epochs; this is the bar's "file". Each redraw reports progress and
    is where a superseded layout stops (an exception out of the epoch loop; see :class:`_NoLock`)."""

    _numbers = re.compile(r"(\d+)/(\d+)")

    def __init__(self, state: TaskState) -> None:
        self.state = state

    def write(self, text: str) -> int:
        if self.state.cancelled:
            raise MapCancelled("map cancelled")
        found = self._numbers.findall(text)
        if found:
            done, total = found[-1]
            self.state.set_progress(int(done), int(total))
        return len(text)

    def flush(self) -> None:
        pass


class _progress:  # noqa: N801 - used as a context manager
    def __init__(self, model, state: TaskState) -> None:
        self.model, self.state = model, state

    def __enter__(self) -> None:
        _use_lockless_tqdm()
        self.model.tqdm_kwds = {"disable": False, "file": _ProgressFile(self.state), "mininterval": 0.05,
                                "bar_format": "{n}/{total}", "ascii": True}

    def __exit__(self, *exc) -> None:
        self.model.tqdm_kwds = {"disable": True}


def _fit_umap(vectors: np.ndarray, knn: tuple[np.ndarray, np.ndarray], params: MapParams, k: int, init,
              warm: bool, anchored: np.ndarray | None, store, ids: np.ndarray, state: TaskState):
    import umap
    from threadpoolctl import threadpool_limits

    _prepare_umap()
    index = _SetIndex(store, ids, vectors, params.metric)
    common = dict(
        n_neighbors=k, min_dist=params.min_dist, metric=params.metric, n_components=2,
        random_state=params.seed, init=init,
        precomputed_knn=(knn[0].copy(), knn[1].copy(), index), verbose=False, low_memory=True,
        n_jobs=1 if params.seed is not None else -1,
    )
    if warm:
        epochs = params.n_epochs or cold_epochs(len(vectors))
        model = warm_umap(anchored, n_epochs=min(WARM_EPOCHS, epochs), learning_rate=WARM_LEARNING_RATE,
                          **common)
    else:
        model = umap.UMAP(n_epochs=params.n_epochs or cold_epochs(len(vectors)), learning_rate=1.0, **common)
    # A seeded map is the same map whatever the thread count: the layout runs serially (n_jobs=1) and BLAS
    # (the spectral start's eigensolver) on one thread, whose sums do not depend on how work is split.
    limit = 1 if params.seed is not None else None
    with _progress(model, state), threadpool_limits(limit, user_api="blas"):
        model.fit(vectors)
    _check(state)
    return model


# -- JIT warm-up ------------------------------------------------------------------------------------------
_warm_lock = threading.Lock()  # held by warm_up for the whole compile
_warm_seconds: float | None = None
_warm_thread: threading.Thread | None = None
_warm_thread_lock = threading.Lock()  # not _warm_lock: the map window starting up would wait out the compile


def start_warm_up() -> None:
    """:func:`warm_up` in a background thread, once per process, so the first real map does not wait
    ~15-25 s for the JIT; the filter grammar is built there too. Cheap to call again.

    Starts nothing but Qt-free work, so any thread may call it (the app calls it from its start-up
    warm-up thread)."""
    global _warm_thread
    with _warm_thread_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_quiet_warm_up, name="audiosim-umap-warm-up", daemon=True)
            _warm_thread.start()


def _quiet_warm_up() -> None:
    try:
        from audiosim.library.filters import compile_filter

        compile_filter("duration > 0")  # builds the filter grammar once
        warm_up()
    except Exception:  # noqa: BLE001 - an optimisation; a real failure shows up on the first map
        pass


def warm_up(*, parallel: bool = False) -> float:
    """Import UMAP and compile its numba kernels on a tiny problem; seconds spent (0 after the first call).

    Safe to call from a background thread at start-up, and more than once. ``parallel`` also compiles the
    multi-threaded layout used when ``seed`` is None (another ~7 s).
    """
    global _warm_seconds
    with _warm_lock:
        if _warm_seconds is not None:
            return 0.0
        t0 = time.perf_counter()
        import umap

        _prepare_umap()
        rng = np.random.default_rng(0)
        x = rng.normal(size=(60, 8)).astype(np.float32)
        dists, rows = _exact_knn(x, x, 6)
        knn = _self_first(rows.astype(np.int64), dists.astype(np.float32), 6)

        class _Index:
            _angular_trees = False

            def query(self, q, k, epsilon=0.1):
                d, r = _exact_knn(q, x, k)
                return r.astype(np.int32), d.astype(np.float32)

        runs = [(0, "spectral"), (0, x[:, :2].copy())] + ([(None, x[:, :2].copy())] if parallel else [])
        for seed, init in runs:
            model = umap.UMAP(n_neighbors=6, n_epochs=12, random_state=seed, init=init, low_memory=True,
                              precomputed_knn=(knn[0].copy(), knn[1].copy(), _Index()),
                              n_jobs=1 if seed is not None else -1)
            model.fit(x)
        model.transform(x[:3] + 0.01)
        _warm_seconds = time.perf_counter() - t0
        return _warm_seconds


def pairwise_purity(coords: np.ndarray, labels: Sequence, k: int = 5) -> float:
    """Share of each point's ``k`` nearest map neighbours that carry its label (a map-quality measure)."""
    labels = np.asarray(labels)
    d = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=2)
    np.fill_diagonal(d, math.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))
