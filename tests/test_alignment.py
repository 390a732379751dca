"""Frame alignment: the fast offset search equals its definition, and finds a copy where it was cut from."""

from __future__ import annotations

import numpy as np

from audiosim.alignment import LEVEL_RANGE_DB, LEVEL_SCALE_DB, Query, Target, best_offset, square_distances


def _by_definition(span: np.ndarray, query: np.ndarray) -> np.ndarray:
    n_off = len(span) - len(query) + 1
    return np.stack([np.square(span[o:o + len(query)] - query).sum(axis=1) for o in range(n_off)])


def _cost_by_definition(query: np.ndarray, weights: np.ndarray, target: np.ndarray, offset: int) -> float:
    """The alignment cost of ``query`` placed at ``offset`` in ``target``, written out frame by frame."""
    inside = [j for j in range(len(query)) if 0 <= offset + j < len(target)]
    q, t, w = query[inside].astype(np.float64), target[[offset + j for j in inside]].astype(np.float64), weights[inside]
    timbre = np.square(q[:, :-1] - t[:, :-1]).sum(axis=1)
    level_q = np.maximum(query[:, -1] - query[:, -1].max(), -LEVEL_RANGE_DB)[inside]
    level_t = np.maximum(t[:, -1] - t[:, -1].max(), -LEVEL_RANGE_DB)
    gap = level_q - level_t
    gain = (gap * w).sum() / w.sum()
    return float(((timbre + np.square((gap - gain) / LEVEL_SCALE_DB)) * w).sum() / w.sum())


def _features(rng: np.random.Generator, n: int) -> np.ndarray:
    f = (rng.normal(size=(n, 20)) * 3).astype(np.float32)
    f[:, -1] = rng.uniform(-60, 0, n)
    return f


def test_square_distances_equal_the_frame_by_frame_sum():
    rng = np.random.default_rng(4)
    for _ in range(50):
        nq, extra = int(rng.integers(1, 80)), int(rng.integers(0, 60))
        span = (rng.normal(size=(nq + extra, 19)) * 4).astype(np.float32).astype(np.float64)
        query = _features(rng, nq)
        fast = square_distances(span, np.einsum("ij,ij->i", span, span), Query(query, np.ones(nq, np.float32)))
        slow = _by_definition(span, query[:, :-1].astype(np.float64))
        assert fast.shape == slow.shape
        np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-3)


def test_the_best_offset_is_the_least_cost_by_definition_also_over_the_edges():
    rng = np.random.default_rng(6)
    for _ in range(60):
        nq, nt = int(rng.integers(2, 60)), int(rng.integers(2, 120))
        query, target = _features(rng, nq), _features(rng, nt)
        weights = np.power(10.0, (query[:, -1] - query[:, -1].max()) / 10.0).astype(np.float32)
        guess, radius = int(rng.integers(-nq, nt + nq)), int(rng.integers(1, 25))
        offset, cost = best_offset(Query(query, weights), Target(target, nq), guess, radius)
        # Offsets where at least half of the query overlaps the target, within the radius.
        pad = nq // 2
        offsets = range(max(-pad, guess - radius), min(nt - max(1, pad), guess + radius) + 1)
        if not offsets:
            assert cost == np.inf
            continue
        costs = {o: _cost_by_definition(query, weights, target, o) for o in offsets}
        assert np.isclose(cost, costs[offset], rtol=1e-4, atol=1e-4)
        assert cost <= min(costs.values()) * (1 + 1e-4) + 1e-4


def test_an_excerpt_is_placed_at_its_frame_even_at_another_level_and_over_the_edge():
    rng = np.random.default_rng(5)
    target = (rng.normal(size=(600, 20)) * 3).astype(np.float32)
    target[:, -1] = rng.uniform(-60, 0, 600)
    weights = np.ones(120, np.float32)
    for at in (0, 37, 300, 480):
        query = target[at:at + 120].copy()
        query[:, -1] -= 9.0  # 9 dB quieter
        offset, cost = best_offset(Query(query, weights), Target(target, 120), at + 11, radius=25)
        assert offset == at and cost < 1e-6
    # Hanging over the end: the half that overlaps still places it.
    query = np.concatenate([target[540:], target[:60]])
    offset, _ = best_offset(Query(query, weights), Target(target, 120), 530, radius=25)
    assert offset == 540
