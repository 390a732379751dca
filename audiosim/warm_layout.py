"""Warm starts: a new layout that begins from the map on screen, so points move instead of jumping.

Why UMAP's own ``fit(init=previous)`` is not enough (issue 14): before optimising, UMAP rescales any
initial layout *per axis* into a 10 x 10 box. A map wider than it is tall is squashed on one axis and
stretched on the other, the optimisation then runs 120-500 epochs at full learning rate from that
distorted start, and a Procrustes alignment (rotation + uniform scale) cannot undo a non-uniform stretch.
The "warm" map ended as far from the previous one as an unrelated cold layout.

Here the layout is steady by construction:

* the previous coordinates are the starting point *as they are* (no rescaling): the previous map is a UMAP
  layout already, in UMAP's own units;
* fewer epochs (:data:`WARM_EPOCHS`) and a gentler first step (:data:`WARM_LEARNING_RATE`): a layout that is
  nearly there needs polishing, not a new search;
* when only the result set changed (same parameters: a filter added or dropped points), points whose
  neighbourhood is (nearly) unchanged are *anchored*: they do not move at all, and only the others are
  laid out around them (:func:`anchored_rows`).

UMAP is imported lazily, as in :mod:`audiosim.projection`.
"""

from __future__ import annotations

import numpy as np

WARM_EPOCHS = 50
"""Epochs of a warm start (at most; fewer if the user fixed fewer). UMAP's cold default is 500 below 10k
points: a layout that is nearly there needs a fraction of that (bench/map_steadiness.py)."""
WARM_LEARNING_RATE = 0.05
"""First step of a warm start (UMAP's cold default is 1.0): large steps would shake a good layout apart."""
ANCHOR_OVERLAP = 0.8
"""A point is anchored when at least this share of its previous neighbours are still its neighbours (a
filter that drops 10 % of the points typically takes one or two of fifteen neighbours away)."""

_warm_class = None


def anchored_rows(previous_neighbour_ids: np.ndarray, previous_rows: np.ndarray, here_rows: np.ndarray,
                  neighbour_ids: np.ndarray) -> np.ndarray:
    """Rows of the new map ``[shape=(n,), bool]`` whose neighbourhood survived the change.

    ``previous_neighbour_ids`` ``[shape=(n_prev, k_prev)]`` and ``neighbour_ids`` ``[shape=(n, k)]`` hold
    the ids of each point's neighbours (itself first, -1 for none); ``previous_rows`` / ``here_rows`` pair
    the rows holding the same id. Points new to the map are never anchored.
    """
    n = len(neighbour_ids)
    anchored = np.zeros(n, bool)
    if len(here_rows) == 0:
        return anchored
    k = min(previous_neighbour_ids.shape[1], neighbour_ids.shape[1])
    before = previous_neighbour_ids[previous_rows, 1:k]
    now = neighbour_ids[here_rows, 1:k]
    for row, old, new in zip(here_rows, before, now):
        old = old[old >= 0]
        if len(old) == 0:
            continue
        kept = np.isin(old, new, assume_unique=True).sum()
        anchored[row] = kept >= ANCHOR_OVERLAP * len(old)
    return anchored


def warm_umap(anchored: np.ndarray | None, **umap_kwargs):
    """A ``umap.UMAP`` whose layout step starts from ``init`` unscaled and keeps ``anchored`` rows fixed.

    Everything else (the fuzzy graph from our kNN, ``a``/``b`` from ``min_dist``, ``transform`` for points
    added later) is UMAP's own.
    """
    model = _warm_umap_class()(**umap_kwargs)
    model.anchored = anchored
    return model


def _warm_umap_class():
    global _warm_class
    if _warm_class is None:
        import umap

        class WarmUMAP(umap.UMAP):
            anchored: np.ndarray | None = None

            def _fit_embed_data(self, X, n_epochs, init, random_state, **kwargs):  # noqa: N803 - UMAP's name
                return _optimise_from(self, init, n_epochs, random_state), {}

        _warm_class = WarmUMAP
    return _warm_class


def _optimise_from(model, init, n_epochs: int, random_state) -> np.ndarray:
    """UMAP's epoch loop (as in ``umap.umap_.simplicial_set_embedding``) without the per-axis rescale of
    ``init``, and with anchored points held still."""
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import INT32_MAX, INT32_MIN, make_epochs_per_sample

    graph = model.graph_.tocoo()
    graph.sum_duplicates()
    # UMAP drops edges too weak to be sampled even once in n_epochs; so do we.
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    epochs_per_sample = make_epochs_per_sample(graph.data, n_epochs)
    head, tail = graph.row, graph.col
    embedding = np.array(init, dtype=np.float32, order="C")
    rng_state = random_state.randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    negative_sample_rate = float(model.negative_sample_rate)
    move_other = True
    anchored = model.anchored
    if anchored is not None and anchored.any():
        # Only edges leaving a free point move anything, and they move only that point. UMAP moves both
        # ends of each edge; to keep its balance of attraction and repulsion, each free edge is listed
        # twice and each listing draws half the negative samples.
        free = ~anchored[head]
        head = np.repeat(head[free], 2)
        tail = np.repeat(tail[free], 2)
        epochs_per_sample = np.repeat(epochs_per_sample[free], 2)
        negative_sample_rate /= 2.0
        move_other = False
    if len(head) == 0:
        return embedding
    return optimize_layout_euclidean(
        embedding, embedding, head, tail, n_epochs, graph.shape[1], epochs_per_sample, model._a, model._b,
        rng_state, model.repulsion_strength, model._initial_alpha, negative_sample_rate,
        parallel=model.random_state is None, verbose=False, densmap=False, densmap_kwds={},
        tqdm_kwds=model.tqdm_kwds, move_other=move_other,
    )
